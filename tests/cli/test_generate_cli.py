"""``orster4d-generate`` on a tiny random pipeline (CPU): each condition kind end to end to a 4D
asset (tiny construct schedule) that the construct readers open, --video-only, --timing, and
every bad input stopping before any sampling."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from orster4d.cli.generate import main
from orster4d.generation.training.tiny_assets import make_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--steps", "2", "--construct-iters", "3", "3", "--construct-points", "200", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    make_tiny_pipeline(str(root / "pipe"), seed=int.from_bytes(os.urandom(2), "little"))
    make_tiny_pipeline(str(root / "text_only"), kinds=("text",), modes=("orbit",))
    return root


@pytest.fixture(scope="module")
def text_run(model):
    out = model / "text"
    assert main(["--prompt", "a striped red hopper hopping", "--model", str(model / "pipe"), "-o", str(out)]
                + QUICK) == 0
    return out


def _check_outputs(out, kind, with_asset=True):
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data.dataset import load_dataset
    from orster4d.io import read_ply
    from orster4d.recon.deformation import load_priors

    summary = json.loads((out / "generation.json").read_text())
    assert summary["condition"]["kind"] == kind
    video = load_dataset(out / "video")
    assert video.trajectory is not None and video.trajectory.num_frames == 8
    assert int(video.reference.sum()) == 8 and int((~video.reference).sum()) == 8  # orbit + reference view
    static = load_dataset(out / "static")
    assert static.trajectory == video.trajectory
    pri = load_priors(out / "priors.pt")
    assert pri["spatial"].dim() == 2 and pri["temporal"].shape[0] == 8
    assert set(summary["timings"]) >= {"sampling_s", "total_s"}
    if with_asset:
        asset = out / "asset"
        OrbitTrajectory.load(asset / "trajectory.json")
        times = json.loads((asset / "gaussians" / "times.json").read_text())
        assert len(times) == 8
        g = read_ply(asset / "gaussians" / "t_0007.ply")
        assert g["means"].shape[1] == 3 and g["means"].shape[0] > 0
        cfg = json.loads((asset / "config.json").read_text())
        assert cfg["construct"]["priors"].endswith("priors.pt")
        assert cfg["deformation"]["prior_dims"] == [pri["spatial"].shape[1], pri["temporal"].shape[1]]
        assert json.loads((asset / "metrics.json").read_text())["l_hex"] is True  # reference view drove L_hex
        assert summary["timings"]["construction_s"] > 0
    else:
        assert not (out / "asset").exists()


def test_text_condition_end_to_end(text_run):
    _check_outputs(text_run, "text")
    meta = json.loads((text_run / "video" / "transforms.json").read_text())
    assert meta["prompt"] == "a striped red hopper hopping" and meta["static"] == "../static"


def test_image_condition_end_to_end(model, text_run, tmp_path):
    png = tmp_path / "i0.png"
    frame = (np.asarray(Image.open(text_run / "video" / "images" / "r_0000.png"))).astype(np.uint8)
    Image.fromarray(frame).save(png)
    out = tmp_path / "img"
    assert main(["--image", str(png), "--model", str(model / "pipe"), "-o", str(out), "--seed", "1"] + QUICK) == 0
    _check_outputs(out, "image")


def test_static_video_condition_end_to_end(model, text_run, tmp_path, capsys):
    out = tmp_path / "s3d"
    assert main(["--static-video", str(text_run / "static"), "--model", str(model / "pipe"), "-o", str(out),
                 "--timing"] + QUICK) == 0
    _check_outputs(out, "static3d")
    printed = capsys.readouterr().out
    assert "timings (s):" in printed and "construction_s" in printed and str(out / "asset") in printed
    summary = json.loads((out / "generation.json").read_text())
    assert summary["produced"]["static"].startswith("given")
    from orster4d.data.dataset import load_dataset

    given = load_dataset(text_run / "static").images
    assert torch.allclose(load_dataset(out / "static").images, given, atol=1 / 255)  # V' is the given video


def test_video_only_and_seeds(model, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        assert main(["--prompt", "a ball bouncing", "--model", str(model / "pipe"), "-o", str(out), "--video-only",
                     "--seed", str(seed)] + QUICK) == 0
    _check_outputs(a, "text", with_asset=False)
    pa, pb, pc = (torch.load(o / "priors.pt") for o in (a, b, c))
    assert torch.equal(pa["spatial"], pb["spatial"]) and not torch.equal(pa["spatial"], pc["spatial"])
    # a model without the static / reference modes: no V', no reference view, said why
    d = tmp_path / "d"
    assert main(["--prompt", "a ball", "--model", str(model / "text_only"), "-o", str(d), "--video-only"] + QUICK) == 0
    s = json.loads((d / "generation.json").read_text())
    assert "not produced" in s["produced"]["static"] and "not produced" in s["produced"]["reference"]
    assert not (d / "static").exists()


def _fails(args, capsys, pattern):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert pattern in err, err
    return err


def test_bad_inputs_stop_before_sampling(model, text_run, tmp_path, capsys, monkeypatch):
    from orster4d.generation.pipeline import STD4DPipeline

    def no_sampling(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(STD4DPipeline, "__call__", no_sampling)
    pipe = str(model / "pipe")
    out = str(tmp_path / "o")
    _fails(["--prompt", "   ", "--model", pipe, "-o", out], capsys, "--prompt: the prompt is empty")
    _fails(["--prompt", "x", "--model", str(tmp_path / "none"), "-o", out], capsys, "pipeline folder not found")
    broken = tmp_path / "broken"
    shutil.copytree(pipe, broken)
    shutil.rmtree(broken / "vae")
    _fails(["--prompt", "x", "--model", str(broken), "-o", out], capsys, "component 'vae'")
    notimg = tmp_path / "not.png"
    notimg.write_text("hello")
    _fails(["--image", str(notimg), "--model", pipe, "-o", out], capsys, "not a readable image")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(small)
    _fails(["--image", str(small), "--model", pipe, "-o", out], capsys, "16x16 pixels; the model generates 32x32")
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(gray)
    _fails(["--image", str(gray), "--model", pipe, "-o", out], capsys, "1 channel(s) (mode L)")
    _fails(["--image", str(gray), "--model", str(model / "text_only"), "-o", out], capsys,
           "trained for the condition kinds ['text'] only")
    # a static video on another orbit, and one without a trajectory
    other = tmp_path / "other"
    shutil.copytree(text_run / "static", other)
    traj = json.loads((other / "trajectory.json").read_text())
    traj["elevation_deg"] = 30.0
    (other / "trajectory.json").write_text(json.dumps(traj))
    _fails(["--static-video", str(other), "--model", pipe, "-o", out], capsys,
           "trajectory elevation_deg=30.0 but the model was trained on elevation_deg=15.0")
    os.remove(other / "trajectory.json")
    _fails(["--static-video", str(other), "--model", pipe, "-o", out], capsys, "no trajectory.json")
    # an existing non-empty output folder
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    _fails(["--prompt", "x", "--model", pipe, "-o", str(full)], capsys, "pass --overwrite")
    assert (full / "keep.txt").read_text() == "mine"
    assert not os.path.exists(out)  # nothing was written by any failed run
