"""The data-scarcity world: deterministic, disjoint, resumable, in the layout the trainer reads."""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from orster4d.data import world
from orster4d.data.procedural import FAMILIES, make_object

TINY_WORLD = dict(static3d=2, video=2, scarce4d=2, heldout=2, frames=4, size=16, gaussians=64, views=3)


def _checksums(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "w"
    spec = world.WorldSpec(seed=3, **TINY_WORLD)
    world.build_world(root, spec, progress=False)
    return root, spec


def test_seeds_are_disjoint_by_construction():
    seen = {}
    for ws in (0, 1, 7):
        for s in world.SETS:
            for k in list(range(50)) + [999_999]:
                seed = world.object_seed(ws, s, k)
                assert seed not in seen, (ws, s, k, seen.get(seed))
                seen[seed] = (ws, s, k)
    assert {world.object_family(k) for k in range(8)} == set(FAMILIES)
    with pytest.raises(ValueError, match="unknown set"):
        world.object_seed(0, "train", 0)


def test_same_seed_same_bytes_and_heldout_not_in_training(built, tmp_path):
    root, spec = built
    again = tmp_path / "again"
    world.build_world(again, world.WorldSpec(seed=3, **TINY_WORLD), progress=False)
    a, b = _checksums(root), _checksums(again)
    assert a == b and len(a) > 20
    other = tmp_path / "other"
    world.build_world(other, world.WorldSpec(seed=4, **TINY_WORLD), sets=["heldout"], progress=False)
    assert _checksums(other / "heldout") != _checksums(root / "heldout")
    meta = world.read_world(root)
    train = {(e["family"], e["seed"]) for s in world.TRAINING_SETS for e in meta["sets"][s]}
    held = {(e["family"], e["seed"]) for e in meta["sets"]["heldout"]}
    assert len(held) == spec.heldout and not (held & train)
    # the pixels differ too: no held-out orbital video equals a training one
    def first_image(folder):
        return (root / folder / "images" / "r_0000.png").read_bytes()
    held_px = {first_image(e["folder"]) for e in meta["sets"]["heldout"]}
    train_px = {first_image(e["folder"]) for s in ("static3d", "scarce4d") for e in meta["sets"][s]}
    assert not (held_px & train_px)


def test_layout_is_what_training_reads(built):
    from orster4d.generation.training.data import OrbitalVideoDataset, dataset_trajectory

    root, spec = built
    for s in world.TRAINING_SETS:
        ds = OrbitalVideoDataset(str(world.set_folder(root, s)), spec.frames, spec.size)
        assert len(ds) == spec.count(s)
        item = ds[0]
        assert item["video"].shape == (spec.frames, spec.size, spec.size, 3)
        assert item["prompt"].startswith("a ")
    d4 = OrbitalVideoDataset(str(world.set_folder(root, "scarce4d")), spec.frames, spec.size)
    d4.require_static()
    assert d4.has_reference and d4[0]["static_video"].shape == (spec.frames, spec.size, spec.size, 3)
    assert dataset_trajectory(str(world.set_folder(root, "scarce4d")))["trajectory"] == spec.trajectory().to_dict()
    # the static video is the object frozen: all its frames come from t = 0, so the first frame of
    # the static video equals the first orbital frame
    assert torch.allclose(d4[0]["static_video"][0], d4[0]["video"][0])
    vid = json.loads((root / "video" / "obj_00000" / "transforms.json").read_text())
    assert vid["camera"]["kind"] == "fixed" and not (root / "video" / "obj_00000" / "trajectory.json").exists()
    mats = {json.dumps(f["transform_matrix"]) for f in vid["frames"]}
    assert len(mats) == 1  # one camera for every frame
    st = OrbitalVideoDataset(str(world.set_folder(root, "static3d")), spec.frames, spec.size)[0]["video"]
    assert not torch.allclose(st[0], st[1])  # the camera orbits a static object
    mv = root / "heldout" / "obj_00000" / "multiview" / "transforms.json"
    frames = json.loads(mv.read_text())["frames"]
    assert len(frames) == spec.views * spec.frames and {f["split"] for f in frames} == {"train", "test"}


def test_rendered_frames_match_an_independent_render(built):
    """The fixed-camera video equals a render of the same object made here from the recorded camera."""
    from orster4d.cameras import intrinsics_from_fov, orbit_viewmats
    from orster4d.data.dataset import load_dataset
    from orster4d.data.render import render_object

    root, spec = built
    rec = json.loads((root / "video" / "obj_00001" / "object.json").read_text())
    obj = make_object(rec["family"], rec["seed"], spec.gaussians)
    cam = rec["camera"]
    vm = orbit_viewmats(torch.tensor([cam["azimuth_deg"]], dtype=torch.float64), cam["elevation_deg"], cam["radius"],
                        [0.0, 0.0, 0.0])
    K = intrinsics_from_fov(cam["fov_deg"], spec.size, spec.size)
    times = torch.linspace(0, 1, spec.frames)
    ref = torch.stack([render_object(obj, times[i:i + 1], vm[None], K[None, None], spec.size, spec.size)["rgb"][0, 0]
                       for i in range(spec.frames)])
    got = load_dataset(root / "video" / "obj_00001").images
    assert (got - ref).abs().max() < 3 / 255
    assert (ref[0] - ref[1]).abs().max() > 0.05  # the object moves (motions are periodic over the clip)


def test_resume_skips_complete_and_rewrites_interrupted(built, tmp_path):
    root, spec = built
    work = tmp_path / "w"
    world.build_world(work, spec, sets=["scarce4d"], progress=False)
    done = work / "scarce4d" / "obj_00000" / "object.json"
    mtime = done.stat().st_mtime_ns
    victim = work / "scarce4d" / "obj_00001"
    (victim / "object.json").unlink()  # as if the build stopped before finishing this object
    (victim / "images" / "r_0000.png").write_bytes(b"broken")
    tmp = work / "scarce4d" / "obj_00000.tmp"
    tmp.mkdir()
    world.build_world(work, spec, sets=["scarce4d"], progress=False)
    assert done.stat().st_mtime_ns == mtime
    assert not tmp.exists()
    assert _checksums(work / "scarce4d") == _checksums(root / "scarce4d")


def test_bad_specs_and_other_world_are_errors(built, tmp_path):
    root, spec = built
    for kw, msg in ((dict(frames=1), "--frames"), (dict(heldout=0), "--heldout"), (dict(size=4), "--size"),
                    (dict(scarce4d=-1), "--scarce4d"), (dict(seed=1.5), "seed")):
        with pytest.raises(ValueError, match=msg):
            world.WorldSpec(**{**TINY_WORLD, **kw})
    with pytest.raises(ValueError, match="another spec"):
        world.build_world(root, world.WorldSpec(seed=3, **{**TINY_WORLD, "scarce4d": 3}), progress=False)
    with pytest.raises(ValueError, match="not found"):
        world.read_world(tmp_path / "none")


def test_subset_is_a_prefix_and_cli(built, tmp_path, capsys):
    from orster4d.cli.data import main
    from orster4d.generation.training.data import find_video_folders

    root, spec = built
    sub = world.subset(root, "scarce4d", 1, tmp_path / "s1")
    assert [os.path.basename(f) for f in find_video_folders(str(sub))] == ["obj_00000"]
    with pytest.raises(ValueError, match="holds 2"):
        world.subset(root, "scarce4d", 3, tmp_path / "s3")
    assert main(["info", "--root", str(root)]) == 0
    assert '"scarce4d": 2' in capsys.readouterr().out
    assert main(["build", "--root", str(tmp_path / "c"), "--frames", "1"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written before the check
    args = ["build", "--root", str(tmp_path / "c"), "--seed", "3", "--static", "0", "--video", "0", "--scarce4d", "1",
            "--heldout", "1", "--frames", "4", "--size", "16", "--gaussians", "64", "--views", "3", "--no-progress"]
    assert main(args) == 0
    assert _checksums(tmp_path / "c" / "scarce4d") == {k: v for k, v in _checksums(root / "scarce4d").items()
                                                         if k.startswith("obj_00000")}
