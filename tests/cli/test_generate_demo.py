"""``orster4d-generate --demo`` on a demo model folder written by ``write_demo_model`` from a tiny
random pipeline (CPU): the folder's layout and float16 weights (loaded as float32), the run with the
model's CPU schedule (explicit flags win), and the error paths."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from orster4d.cli.generate import main
from orster4d.generation.demo import (ENV_VAR, DemoModelError, default_demo_folder, load_demo_model, weight_files,
                                      write_demo_model)
from orster4d.generation.pipeline import load_pipeline
from orster4d.generation.training.tiny_assets import make_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULES = {"cpu": {"steps": 2, "guidance": 2.0, "construct_iters": [3, 2], "construct_points": 200},
             "cuda": {"steps": 25, "guidance": 3.0, "construct_iters": [6000, 3000]}}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_tiny_pipeline(str(root / "pipe"), seed=int.from_bytes(os.urandom(2), "little"))
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    truth = (rng.uniform(size=(32, 8 * 32, 3)) * 255).astype(np.uint8)
    write_demo_model(root / "pipe", root / "model", image, "hopper_0123", "a striped red hopper hopping", SCHEDULES,
                     truth=truth, max_file_bytes=4 * 2 ** 20)
    return root


def test_written_folder_has_float16_weights_that_load_as_float32(demo_root):
    model = demo_root / "model"
    meta = json.loads((model / "demo.json").read_text())
    assert meta["object"] == "hopper_0123" and meta["image"] == "condition.png" and meta["truth"] == "truth.png"
    assert meta["schedules"] == SCHEDULES
    assert Image.open(model / "condition.png").size == (32, 32)
    files = weight_files(model / "pipeline")
    assert {f.split("/")[0] for f in files} == {"vae", "unet", "conditioner", "clip_encoder"}
    assert max(files.values()) < 4 * 2 ** 20
    for f in files:
        with safe_open(str(model / "pipeline" / f), "pt") as st:
            assert {st.get_slice(k).get_dtype() for k in st.keys()} == {"F16"}, f
    pipe = load_pipeline(str(model / "pipeline"))
    src = load_pipeline(str(demo_root / "pipe"))
    for name in ("vae", "unet", "conditioner", "clip_encoder"):
        got, want = getattr(pipe, name).state_dict(), getattr(src, name).state_dict()
        assert {v.dtype for v in got.values() if v.is_floating_point()} == {torch.float32}, name
        for k, v in want.items():
            if v.is_floating_point():
                assert torch.equal(got[k], v.half().float()), (name, k)  # the float16 rounding, nothing else
    assert {p.dtype for p in load_pipeline(str(model / "pipeline"), dtype=torch.bfloat16).unet.parameters()} == \
        {torch.bfloat16}


def test_load_pipeline_casts_weights_kept_in_their_saved_dtype(demo_root, monkeypatch):
    """Some diffusers loading paths (low_cpu_mem_usage with accelerate) keep the saved float16."""
    from orster4d.generation.pipeline import STD4DPipeline

    loader = STD4DPipeline.from_pretrained.__func__
    monkeypatch.setattr(STD4DPipeline, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loader(cls, *a, **k).to(torch.float16)))
    pipe = load_pipeline(str(demo_root / "model" / "pipeline"))
    for name in ("vae", "unet", "conditioner", "clip_encoder"):
        assert {p.dtype for p in getattr(pipe, name).parameters()} == {torch.float32}, name


def test_demo_runs_the_cpu_schedule_to_an_asset(demo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(demo_root / "model"))
    out = tmp_path / "out"
    assert main(["--demo", "-o", str(out), "--no-progress", "--guidance", "1.5"]) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "generation.json").read_text())
    assert s["condition"]["kind"] == "image" and s["demo"]["object"] == "hopper_0123"
    assert s["steps"] == 2 and s["guidance"] == 1.5  # the CPU schedule, and the explicit flag wins
    assert s["dtype"] == "torch.float32" and s["device"] == "cpu"
    asset = out / "asset"
    cfg = json.loads((asset / "config.json").read_text())["construct"]
    assert (cfg["coarse_iters"], cfg["fine_iters"], cfg["init_points"]) == (3, 2, 200)
    assert len(json.loads((asset / "gaussians" / "times.json").read_text())) == 8
    assert (out / "video" / "transforms.json").is_file() and (out / "priors.pt").is_file()
    assert (out / "demo" / "condition.png").read_bytes() == (demo_root / "model" / "condition.png").read_bytes()
    assert (out / "demo" / "truth.png").is_file()
    for phase in ("sampling_orbit_s", "sampling_static_s", "sampling_reference_s", "construction_s", "total_s"):
        assert phase in printed, printed


def test_missing_folder_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    assert main(["--demo", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{ENV_VAR}={tmp_path / 'nowhere'}" in err and "write_demo_model" in err, err
    monkeypatch.delenv(ENV_VAR)
    if not default_demo_folder().is_dir():
        with pytest.raises(DemoModelError, match=f"{ENV_VAR} is unset"):
            load_demo_model()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--image", "x.png"], "not allowed with argument"),
    (["--prompt", "a ball"], "not allowed with argument"),
    (["--model", "pipe"], "argument --model: not allowed with --demo"),
])
def test_demo_refuses_a_condition_or_model(extra, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--demo", "-o", "o"] + extra)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_without_demo_model_and_output_are_required(capsys):
    with pytest.raises(SystemExit):
        main(["--prompt", "a ball"])
    assert "required: --model, -o/--output" in capsys.readouterr().err


def test_malformed_demo_folders_are_named(demo_root, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(demo_root / "model", bad)
    meta = json.loads((bad / "demo.json").read_text())
    (bad / "demo.json").write_text(json.dumps({**meta, "schedules": {"cpu": {"steps": 0, "guidance": 1,
                                                                             "construct_iters": [1, 0]},
                                                                     "cuda": SCHEDULES["cuda"]}}))
    with pytest.raises(DemoModelError, match=r"schedules\.cpu\.steps: expected an integer >= 1, got 0"):
        load_demo_model(bad)
    (bad / "demo.json").write_text(json.dumps({**meta, "schedules": {"cpu": SCHEDULES["cpu"]}}))
    with pytest.raises(DemoModelError, match=r"one schedule for each device type \['cpu', 'cuda'\]"):
        load_demo_model(bad)
    (bad / "demo.json").write_text(json.dumps(meta))
    os.remove(bad / "condition.png")
    with pytest.raises(DemoModelError, match="'image' names 'condition.png'"):
        load_demo_model(bad)


def test_writer_shards_large_components_and_refuses_larger_tensors(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    make_tiny_pipeline(str(tmp_path / "s3d"), kinds=("static3d",))  # no CLIP: no tensor over 1 MiB
    out = write_demo_model(tmp_path / "s3d", tmp_path / "m", image, "obj", "an object", SCHEDULES,
                           max_file_bytes=2 ** 20)
    files = weight_files(out / "pipeline")
    assert sum(f.startswith("unet/") for f in files) > 1 and max(files.values()) < 2 ** 20  # the UNet is sharded
    a, b = load_pipeline(str(out / "pipeline")).unet.state_dict(), load_pipeline(str(tmp_path / "s3d")).unet.state_dict()
    assert all(torch.equal(a[k], v.half().float()) for k, v in b.items())
    # the tiny CLIP's token embedding alone is over 1 MiB in float16
    make_tiny_pipeline(str(tmp_path / "full"))
    with pytest.raises(DemoModelError, match=r"clip_encoder/.*\(\d+ bytes\)"):
        write_demo_model(tmp_path / "full", tmp_path / "m2", image, "obj", "an object", SCHEDULES,
                         max_file_bytes=2 ** 20)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(DemoModelError, match="image: 16x16 pixels; the model generates 32x32"):
        write_demo_model(tmp_path / "s3d", tmp_path / "m3", np.zeros((16, 16, 3), np.uint8), "obj", "an object",
                         SCHEDULES)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_demo_model(tmp_path / "s3d", out, image, "obj", "an object", SCHEDULES)


def test_the_shipped_demo_model_is_complete_and_samples():
    """models/std4d-small: demo.json checks out, every weight file is under 16 MiB, float16 on disk,
    and the pipeline loads as float32 and makes a finite video of the model's size from the image."""
    from orster4d.generation.demo import MAX_FILE_BYTES

    folder = default_demo_folder()
    demo = load_demo_model(folder)
    sizes = weight_files(folder / "pipeline")
    assert sizes and max(sizes.values()) < MAX_FILE_BYTES
    with safe_open(str(folder / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    pipe = load_pipeline(str(folder / "pipeline"))
    assert all(p.dtype == torch.float32 for p in pipe.unet.parameters())
    image = torch.from_numpy(np.asarray(Image.open(demo.image).convert("RGB")).copy()).float() / 255
    pipe.set_progress_bar_config(disable=True)
    video = pipe(image=image, num_inference_steps=2, guidance_scale=1.0,
                 generator=torch.Generator().manual_seed(0)).video
    t = pipe.trajectory
    assert tuple(video.shape) == (t.num_frames, t.height, t.width, 3) and torch.isfinite(video).all()
