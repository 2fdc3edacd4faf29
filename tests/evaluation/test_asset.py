"""The asset reader: renders match the procedural truth at stored times, interpolation between
them, and bad folders stop with a message naming the file."""
import json
import shutil

import pytest
import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.evaluation.asset import gaussians_at, render_asset
from orster4d.data.procedural_asset import write_procedural_asset
from orster4d.io.asset import AssetError, read_asset
from orster4d.io.ply import read_ply, write_ply

RB = "cpu"


@pytest.fixture(scope="module")
def asset_dir(tmp_path_factory):
    traj = OrbitTrajectory(num_frames=5, width=24, height=24, radius=2.6)
    return write_procedural_asset(tmp_path_factory.mktemp("asset") / "hopper", "hopper", 3, num_gaussians=200,
                                  trajectory=traj, meta={"kind": "text", "prompt": "a hopper"})


def test_render_at_stored_times_matches_the_procedural_object(asset_dir):
    from orster4d.data.procedural import make_object
    from orster4d.data.render import render_object
    from orster4d.metrics import psnr

    a = read_asset(asset_dir)
    assert a.num_frames == 5 and a.sh_degree == 0 and a.meta["prompt"] == "a hopper"
    tr = a.trajectory
    vm, K = tr.viewmats()[:, None], tr.Ks()[:, None]
    ours = render_asset(a, a.times, vm, K, tr.width, tr.height, backend=RB)
    truth = render_object(make_object("hopper", 3, 200), a.times, vm, K, tr.width, tr.height, backend=RB)["rgb"]
    assert ours.shape == (5, 1, 24, 24, 3)
    assert float(psnr(ours, truth).min()) > 50


def test_interpolation_between_stored_times(asset_dir):
    a = read_asset(asset_dir)
    mid = (a.times[1] + a.times[2]) / 2
    m, q, s = gaussians_at(a, torch.stack([a.times[1], mid, a.times[2]]))
    torch.testing.assert_close(m[0], a.means[1])
    torch.testing.assert_close(m[1], (a.means[1] + a.means[2]) / 2)
    torch.testing.assert_close(s[1], (a.log_scales[1] + a.log_scales[2]) / 2)
    torch.testing.assert_close(m[2], a.means[2])


def test_times_outside_the_span_are_refused(asset_dir, tmp_path):
    one = tmp_path / "static"
    shutil.copytree(asset_dir, one)
    for p in sorted((one / "gaussians").glob("t_*.ply"))[1:]:
        p.unlink()
    (one / "gaussians" / "times.json").write_text("[0.0]")
    a = read_asset(one)
    a.check_times(torch.zeros(3), "ok")
    with pytest.raises(AssetError, match="cannot be matched"):
        a.check_times(torch.linspace(0, 1, 4), "reference x")


def _broken(asset_dir, tmp_path, name):
    d = tmp_path / name
    shutil.copytree(asset_dir, d)
    return d


def test_bad_asset_folders(asset_dir, tmp_path):
    d = _broken(asset_dir, tmp_path, "no_gauss")
    shutil.rmtree(d / "gaussians")
    with pytest.raises(AssetError, match="no per-timestamp Gaussians"):
        read_asset(d)
    d = _broken(asset_dir, tmp_path, "no_traj")
    (d / "trajectory.json").unlink()
    with pytest.raises(AssetError, match="missing trajectory.json"):
        read_asset(d)
    d = _broken(asset_dir, tmp_path, "nan")
    p = d / "gaussians" / "t_0002.ply"
    g = read_ply(p)
    g["means"][7, 1] = float("nan")
    write_ply(p, g["means"], g["quats"], g["log_scales"], g["logit_opacities"], g["sh"])
    with pytest.raises(AssetError, match="t_0002.ply: property means contains NaN"):
        read_asset(d)
    d = _broken(asset_dir, tmp_path, "times")
    (d / "gaussians" / "times.json").write_text(json.dumps([0.0, 0.5]))
    with pytest.raises(AssetError, match="2 times for 5 PLY"):
        read_asset(d)
    with pytest.raises(AssetError, match="asset folder not found"):
        read_asset(tmp_path / "nowhere")
