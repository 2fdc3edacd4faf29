"""Consistent4D and D-NeRF readers on small folders written here in those layouts."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from orster4d.cameras import camera_centers, viewmat_to_transform_matrix
from orster4d.data.consistent4d import is_consistent4d, load_consistent4d
from orster4d.data.dnerf import is_dnerf, load_dnerf


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _consistent4d(root, views=2, frames=10, size=12, gen=None):
    rgba = {}
    for k in range(views):
        for i in range(frames):
            a = (torch.rand(size, size, 4, generator=gen) * 255).to(torch.uint8).numpy()
            rgba[(k, i)] = a
            _png(root / f"eval_{k}" / f"{i}.png", a)
    return rgba


def test_consistent4d_layout(tmp_path, rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    obj = tmp_path / "obj"
    rgba = _consistent4d(obj, gen=gen)
    assert is_consistent4d(obj) and not is_consistent4d(tmp_path)
    with pytest.raises(ValueError, match="no cameras.json"):
        load_consistent4d(obj)
    (obj / "cameras.json").write_text(json.dumps({"azimuths_deg": [0, 90], "elevation_deg": 0, "radius": 2.0,
                                                  "fov_deg": 40}))
    ds = load_consistent4d(obj)
    assert ds.num_frames == 20 and ds.view_ids.tolist() == [0] * 10 + [1] * 10 and set(ds.splits) == {"test"}
    torch.testing.assert_close(ds.times[:10], torch.arange(10) / 9.0)
    a = rgba[(1, 3)].astype(np.float32) / 255  # composited on white
    want = a[..., :3] * a[..., 3:] + (1 - a[..., 3:])
    np.testing.assert_allclose(ds.images[13].numpy(), want, atol=1e-6)
    c = camera_centers(ds.viewmats[[0, 10]].double())
    torch.testing.assert_close(c, torch.tensor([[0.0, -2.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    (obj / "eval_1" / "9.png").unlink()
    with pytest.raises(ValueError, match="9 frames, but .*eval_0 has 10"):
        load_consistent4d(obj)


def test_dnerf_layout_and_downscale(tmp_path, rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    scene = tmp_path / "lego"
    c2w = viewmat_to_transform_matrix(torch.eye(4, dtype=torch.float64)[None].repeat(3, 1, 1))
    c2w[:, :3, 3] = torch.tensor([[0.0, -4.0, 0.5], [4.0, 0.0, 0.5], [0.0, 4.0, 0.5]], dtype=torch.float64)
    for split, idx in (("train", [0, 1]), ("test", [2])):
        frames = []
        for i in idx:
            _png(scene / split / f"r_{i:03d}.png", (torch.rand(8, 8, 4, generator=gen) * 255).to(torch.uint8).numpy())
            frames.append({"file_path": f"./{split}/r_{i:03d}", "time": i / 2, "transform_matrix": c2w[i].tolist()})
        (scene / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    assert is_dnerf(scene)
    full = load_dnerf(scene)
    assert full.splits == ["train", "train", "test"] and bool((full.view_ids < 0).all())
    half = load_dnerf(scene, downscale=2)
    assert (half.width, half.height) == (4, 4)
    torch.testing.assert_close(half.images[1], full.images[1].reshape(4, 2, 4, 2, 3).mean(dim=(1, 3)))
    torch.testing.assert_close(half.Ks[:, 0, 0], full.Ks[:, 0, 0] / 2)
    torch.testing.assert_close(half.Ks[:, :2, 2], full.Ks[:, :2, 2] / 2)
    with pytest.raises(ValueError, match="not divisible"):
        load_dnerf(scene, downscale=3)
    with pytest.raises(ValueError, match="not a D-NeRF scene"):
        load_dnerf(tmp_path)
