"""Procedural 4D data: determinism, motion, rendering, transforms.json and D-NeRF round trips."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from orster4d.cameras import OrbitTrajectory, intrinsics_from_fov, viewmat_to_transform_matrix
from orster4d.data import (FAMILIES, DynamicDataset, load_dataset, make_object, render_multiview, render_orbital,
                           write_dataset)

RB = "reference"  # rasterizer backend for these tiny renders


def test_families_are_deterministic_and_move():
    assert len(FAMILIES) >= 8
    seed = int(torch.randint(0, 10_000, ()).item())
    t = torch.rand(5)
    paths = {}
    for fam in FAMILIES:
        a = make_object(fam, seed, 200).gaussians(t)
        b = make_object(fam, seed, 200).gaussians(t)
        for k in a:
            assert torch.equal(a[k], b[k]), (fam, k)
        c = make_object(fam, seed + 1, 200).gaussians(t)
        assert not torch.equal(a["colors"], c["colors"]), fam
        g = make_object(fam, seed, 200).gaussians(torch.linspace(0, 1, 9))
        assert g["means"].shape[0] == 9 and g["means"].shape[2] == 3
        assert torch.isfinite(g["means"]).all() and (g["scales"] > 0).all()
        assert g["means"].abs().max() < 1.6, fam  # fits the default orbit's view
        # it moves: some Gaussian travels a noticeable distance over the clip
        assert (g["means"] - g["means"][:1]).norm(dim=-1).max() > 0.05, fam
        paths[fam] = g["means"] - g["means"].mean(1, keepdim=True)
    # distinct motions: the normalised displacement signals of the families differ
    sig = {f: (p - p[:1]).norm(dim=-1).mean(-1) for f, p in paths.items()}
    for i, f in enumerate(FAMILIES):
        for h in FAMILIES[i + 1:]:
            assert not torch.allclose(sig[f], sig[h], atol=1e-3), (f, h)
    with pytest.raises(ValueError, match="family"):
        make_object("dragon", 0)


def test_motions_are_sampled_finely_enough_to_hold_out_times():
    """At 16 frames a held-out time lies between two fitted times two frames apart: each motion must
    be slow enough that halfway between them the object is near the average of the two poses
    (aliased motions, several cycles per clip, are not)."""
    seed = int(torch.randint(0, 10_000, ()).item())
    t = torch.linspace(0, 1, 31)  # the 16 clip frames and the midpoints between them
    for fam in FAMILIES:
        m = make_object(fam, seed, 300).gaussians(t)["means"]
        mid, lerp = m[2:-2:4], 0.5 * (m[0:-4:4] + m[4::4])  # frame i+1 vs the mean of frames i, i+2
        err = (mid - lerp).norm(dim=-1).max()
        assert err < 0.35, (fam, seed, float(err))  # the object spans about 2 units


def _tiny_orbital(T=4, size=16, n=120, family="waver", seed=3):
    tr = OrbitTrajectory(num_frames=T, width=size, height=size, radius=2.6)
    return render_orbital(make_object(family, seed, n), tr, backend=RB), tr


def test_rendering_is_deterministic_and_shows_the_object():
    a, tr = _tiny_orbital()
    b, _ = _tiny_orbital()
    assert torch.equal(a.images, b.images)
    assert a.num_frames == 2 * tr.num_frames and int(a.reference.sum()) == tr.num_frames
    cover = a.alphas.mean((1, 2, 3))
    assert bool((cover > 0.02).all()) and bool((cover < 0.9).all())
    # the reference video is fixed in space: its camera is frame 0's for every time
    torch.testing.assert_close(a.viewmats[a.reference], a.viewmats[:1].expand(tr.num_frames, 4, 4))
    # and the object moves in it
    ref = a.images[a.reference]
    assert (ref[1:] - ref[:1]).abs().max() > 0.05


def test_multiview_split_holds_out_views_and_times():
    tr = OrbitTrajectory(num_frames=8, width=12, height=12)
    ds = render_multiview(make_object("ball", 1, 80), tr, num_views=4, test_views=(2,), test_every_time=4, backend=RB)
    assert ds.num_frames == 32
    test = torch.tensor([s == "test" for s in ds.splits])
    view_held = ds.view_ids == 2
    time_idx = (ds.times * 7).round().long()
    time_held = time_idx % 4 == 2
    assert torch.equal(test, view_held | time_held)
    assert bool(ds.reference[ds.view_ids == 0].all()) and not bool(ds.reference[ds.view_ids != 0].any())


def test_transforms_json_round_trip(tmp_path):
    ds, tr = _tiny_orbital(T=5, size=12)
    write_dataset(tmp_path / "orbital", ds)
    back = load_dataset(tmp_path / "orbital")
    assert back.num_frames == ds.num_frames and back.trajectory == tr
    torch.testing.assert_close(back.images, ds.images, atol=2.5 / 255, rtol=0)
    torch.testing.assert_close(back.alphas, ds.alphas, atol=0.6 / 255, rtol=0)
    torch.testing.assert_close(back.viewmats, ds.viewmats, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.Ks, ds.Ks)
    torch.testing.assert_close(back.times, ds.times)
    assert torch.equal(back.reference, ds.reference) and torch.equal(back.view_ids, ds.view_ids)
    assert back.splits == ds.splits


def _write_dnerf(root, size=10, n_train=3, n_test=2):
    """A D-NeRF-style folder: transforms_{train,test}.json, RGBA PNGs, file paths without extension."""
    fov = 0.69
    frames_all = {}
    gen = torch.Generator().manual_seed(int(torch.randint(0, 1000, ()).item()))
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True)
        frames = []
        for i in range(n):
            rgba = (torch.rand(size, size, 4, generator=gen) * 255).to(torch.uint8).numpy()
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{i:03d}.png")
            c2w = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
            if torch.det(c2w) < 0:
                c2w[:, 0] *= -1
            m = torch.eye(4, dtype=torch.float64)
            m[:3, :3] = c2w
            m[:3, 3] = torch.randn(3, generator=gen, dtype=torch.float64) * 4
            frames.append({"file_path": f"./{split}/r_{i:03d}", "rotation": 0.1, "time": i / max(n - 1, 1),
                           "transform_matrix": m.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
        frames_all[split] = frames
    return frames_all, fov


def test_dnerf_layout_reads_into_the_same_type(tmp_path):
    frames, fov = _write_dnerf(tmp_path)
    ds = load_dataset(tmp_path, background=(1.0, 1.0, 1.0))
    assert isinstance(ds, DynamicDataset)
    assert ds.splits == ["train"] * 3 + ["test"] * 2
    fr = frames["train"] + frames["test"]
    torch.testing.assert_close(viewmat_to_transform_matrix(ds.viewmats.double()),
                               torch.tensor([f["transform_matrix"] for f in fr], dtype=torch.float64), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(ds.times, torch.tensor([f["time"] for f in fr], dtype=torch.float32))
    torch.testing.assert_close(ds.Ks[0], intrinsics_from_fov(float(np.degrees(fov)), 10, 10))
    rgba = torch.from_numpy(np.array(Image.open(tmp_path / "train" / "r_000.png"))).float() / 255
    want = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    torch.testing.assert_close(ds.images[0], want)
    assert ds.split("test").num_frames == 2


def test_loader_rejects_bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_dataset(empty)
    ds, _ = _tiny_orbital(T=3, size=8, n=60)
    # missing frame
    write_dataset(tmp_path / "missing", ds)
    (tmp_path / "missing" / "images" / "r_0002.png").unlink()
    with pytest.raises(ValueError, match=r"r_0002\.png.*missing"):
        load_dataset(tmp_path / "missing")
    # unreadable frame
    write_dataset(tmp_path / "broken", ds)
    (tmp_path / "broken" / "images" / "r_0001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"r_0001\.png.*cannot read"):
        load_dataset(tmp_path / "broken")
    # mismatched resolution
    write_dataset(tmp_path / "res", ds)
    Image.new("RGB", (9, 8)).save(tmp_path / "res" / "images" / "r_0003.png")
    with pytest.raises(ValueError, match=r"r_0003\.png.*resolution"):
        load_dataset(tmp_path / "res")
    # trajectory that does not match the frame count
    write_dataset(tmp_path / "traj", ds)
    t = json.loads((tmp_path / "traj" / "trajectory.json").read_text())
    t["num_frames"] = 5
    (tmp_path / "traj" / "trajectory.json").write_text(json.dumps(t))
    with pytest.raises(ValueError, match=r"trajectory\.json.*num_frames=5.*3"):
        load_dataset(tmp_path / "traj")
    # a frame without time
    write_dataset(tmp_path / "notime", ds)
    meta = json.loads((tmp_path / "notime" / "transforms.json").read_text())
    del meta["frames"][0]["time"]
    (tmp_path / "notime" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms\.json.*time"):
        load_dataset(tmp_path / "notime")


def test_orbital_frames_with_trajectory_only(tmp_path):
    tr = OrbitTrajectory(num_frames=3, width=8, height=6)
    tr.save(tmp_path / "trajectory.json")
    for i in range(3):
        Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(tmp_path / f"frame_{i:02d}.png")
    ds = load_dataset(tmp_path)
    assert ds.num_frames == 3 and ds.trajectory == tr
    torch.testing.assert_close(ds.viewmats, tr.viewmats())
    torch.testing.assert_close(ds.times, tr.times())
    (tmp_path / "frame_02.png").unlink()
    with pytest.raises(ValueError, match="num_frames=3.*2 image"):
        load_dataset(tmp_path)
