"""``orster4d-eval`` end to end on tiny procedural assets with tiny saved networks (CPU)."""
import json
import shutil

import pytest
import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.cli.eval import main
from orster4d.data import generate_scene
from orster4d.data.procedural_asset import write_procedural_asset
from orster4d.io.ply import read_ply, write_ply
from orster4d.evaluation.weights import ENV

from eval_helpers import make_weights_folder

SIZE, FRAMES = 32, 9
COMMON = ["--rasterizer-backend", "cpu", "--lpips-net", "alex", "--clip-views", "6", "--fvd-clip-frames", "9",
          "--device", "cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate_scene(root / "scene", "waver", seed=5, num_frames=FRAMES, width=SIZE, height=SIZE, num_views=4,
                   num_gaussians=300, radius=2.6, backend="cpu")
    traj = OrbitTrajectory(num_frames=FRAMES, width=SIZE, height=SIZE, radius=2.6)
    exact = write_procedural_asset(root / "exact", "waver", 5, num_gaussians=300, trajectory=traj,
                                   meta={"kind": "text", "prompt": "a waving creature"})
    blurred = root / "blurred"
    shutil.copytree(exact, blurred)
    (blurred / "condition.json").write_text(json.dumps({"kind": "image", "image": "front.png"}))
    shutil.copy(root / "scene" / "orbital" / "images" / "r_0000.png", blurred / "front.png")
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31, ())))
    for p in (blurred / "gaussians").glob("t_*.ply"):
        g = read_ply(p)
        write_ply(p, g["means"] + 0.03 * torch.randn(g["means"].shape, generator=gen), g["quats"],
                  g["log_scales"] + 0.3, g["logit_opacities"], g["sh"])
    weights = make_weights_folder(root / "weights")
    return root, exact, blurred, weights


def test_two_assets_one_table(world, tmp_path, monkeypatch, capsys, one_thread):
    root, exact, blurred, weights = world
    monkeypatch.setenv(ENV, str(weights))
    out = tmp_path / "out"
    rc = main([str(exact), str(blurred), "--reference", str(root / "scene"), "-o", str(out), "--timing",
               "--group-by", "kind", *COMMON])
    assert rc == 0
    res = json.loads((out / "eval.json").read_text())
    a, b = res["assets"]
    print(json.dumps([a["metrics"], b["metrics"]], indent=1))
    for r in (a, b):
        assert all(r["metrics"][k] is not None for k in ("clip_f", "clip_o", "ssim", "psnr", "lpips", "fvd")), r["absent"]
        assert {"clip", "render_reference", "psnr_ssim_lpips", "fvd"} <= set(r["timing_s"])
        assert r["details"]["fvd"]["clips"] == 4 + 0  # one 9-frame clip per multiview camera
        kinds = r["details"]["reference"]["by_kind"]
        assert kinds["novel_view"]["frames"] > 0 and kinds["novel_time"]["frames"] > 0
    assert a["metrics"]["psnr"] > 45 and a["metrics"]["psnr"] > b["metrics"]["psnr"] + 10
    assert a["metrics"]["ssim"] > b["metrics"]["ssim"]
    assert a["metrics"]["lpips"] < b["metrics"]["lpips"]
    assert abs(a["metrics"]["fvd"]) < 1e-6 and b["metrics"]["fvd"] > 100 * max(abs(a["metrics"]["fvd"]), 1e-7)
    assert "fvd_pooled" in res["summary"] and "load_weights" in res["timing_s"]
    assert set(res["groups"]) == {"text", "image"}
    md = (out / "eval.md").read_text()
    assert "### kind = image" in md and "| exact |" in md and "| blurred |" in md and "CLIP-O" in md


def test_missing_weights_fail_or_are_reported_absent(world, tmp_path, monkeypatch, capsys):
    root, exact, _, weights = world
    partial = tmp_path / "w"
    shutil.copytree(weights / "clip", partial / "clip")
    monkeypatch.setenv(ENV, str(partial))
    rc = main([str(exact), "--reference", str(root / "scene"), "-o", str(tmp_path / "o1"), *COMMON])
    err = capsys.readouterr().err
    assert rc == 2 and "LPIPS" in err and str(partial / "lpips" / "alexnet-owt-7be5be79.pth") in err
    assert not (tmp_path / "o1").exists()
    rc = main([str(exact), "--reference", str(root / "scene"), "-o", str(tmp_path / "o2"), "--skip-missing", *COMMON])
    assert rc == 0
    r = json.loads((tmp_path / "o2" / "eval.json").read_text())["assets"][0]
    assert r["metrics"]["lpips"] is None and r["metrics"]["fvd"] is None and r["metrics"]["psnr"] > 40
    assert "lpips" in r["absent"] and "i3d" in r["absent"]["fvd"].lower() and r["metrics"]["clip_f"] is not None
    assert "n/a" in (tmp_path / "o2" / "eval.md").read_text()


def test_bad_input_stops_before_rendering(world, tmp_path, monkeypatch, capsys):
    root, exact, _, weights = world
    monkeypatch.setenv(ENV, str(weights))
    with pytest.raises(SystemExit):
        main([str(exact), "--prompt", "x", "--image", "y.png", *COMMON])
    broken = tmp_path / "broken"
    shutil.copytree(exact, broken)
    (broken / "trajectory.json").unlink()
    assert main([str(broken), "-o", str(tmp_path / "o"), *COMMON]) == 2
    assert "missing trajectory.json" in capsys.readouterr().err
    static = tmp_path / "static"
    shutil.copytree(exact, static)
    for p in sorted((static / "gaussians").glob("t_*.ply"))[1:]:
        p.unlink()
    (static / "gaussians" / "times.json").write_text("[0.0]")
    assert main([str(static), "--reference", str(root / "scene"), "-o", str(tmp_path / "o"), *COMMON]) == 2
    assert "cannot be matched" in capsys.readouterr().err
    assert main([str(exact), "--reference", str(root / "scene"), str(root / "scene"), "-o", str(tmp_path / "o"),
                 *COMMON]) == 2
    assert "2 references for 1 assets" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nan_reference_frames_are_refused(world):
    from orster4d.data.dataset import load_dataset
    from orster4d.io.asset import read_asset
    from orster4d.evaluation.reference import ReferenceError, check_reference

    root, exact, _, _ = world
    ds = load_dataset(root / "scene" / "multiview")
    ds.images[5, 3, 4, 1] = float("nan")
    with pytest.raises(ReferenceError, match="r_0005.png contains NaN"):
        check_reference(ds, read_asset(exact), "ref")
