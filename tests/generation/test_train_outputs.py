"""Nothing a user has is lost: real `orster4d-train` processes, real signals, checksums of every
file before and after.

- an existing stage folder is refused without --resume / --overwrite, and left as it was;
- Ctrl-C (a real SIGINT, landing at a random moment of a step) then --resume reproduces an
  uninterrupted run bit for bit (per-step losses and final weights);
- --overwrite removes only what the trainer wrote and refuses, naming them, when foreign files
  are present;
- a bad frame anywhere in the data is refused before any model is built or folder created;
- fault injection: SIGKILL at random moments of checkpoint writing, 20 times; every time the next
  --resume starts from the last whole checkpoint or the one being written, `final` is the old or
  the new one (whole), and the end result equals an uninterrupted run's.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import make_workspace, tiny_overrides
from orster4d.generation.training.config import resolve_config
from orster4d.generation.training.outputs import DELAY_ENV, StageFolder, verify_checkpoint

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(str(tmp_path_factory.mktemp("ws")))


def tree(root):
    """``{relative path: sha256}`` of every file (and ``-> target`` of every link) under ``root``."""
    out = {}
    for d, dirs, names in os.walk(root):
        for n in names + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            else:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def train_args(ws, out, steps, *flags, **extra):
    sets = sum((["--set", o] for o in tiny_overrides(ws, out, steps=steps, **extra)), [])
    return [sys.executable, "-m", "orster4d.cli.train", "--stage", "1", "--no-progress", *flags, *sets]


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **extra)


def run(ws, out, steps, *flags, **extra):
    return subprocess.run(train_args(ws, out, steps, *flags, **extra), env=env(), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def finished(ws, tmp_path_factory):
    """A finished stage-1 run (3 steps) made by a real process; its stderr."""
    out = str(tmp_path_factory.mktemp("done"))
    res = run(ws, out, 3)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, res.stderr


def log_records(out):
    with open(os.path.join(out, "stage1", "log.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if not k.endswith("_time_s") and k != "samples_per_s"} for r in recs]


def test_existing_stage_folder_is_refused_and_left_alone(ws, finished, tmp_path):
    out, _ = finished
    before = tree(out)
    res = run(ws, out, 3)
    assert res.returncode == 2
    assert "--resume" in res.stderr and "--overwrite" in res.stderr
    assert tree(out) == before
    final = os.path.join(out, "stage1", "final")
    assert os.path.islink(final) and verify_checkpoint(final, checksums=True) is None


def test_notices_and_diffusers_warnings_said_once(finished):
    _, err = finished
    assert "starts from random weights" in err  # stage 1 without model.backbone_dir
    assert err.count("accelerate") <= 1
    assert "should be kept in float32" not in err


def test_resume_after_real_sigint_is_bit_exact(ws, tmp_path):
    """SIGINT lands at a random moment inside a step; the resumed run equals an uninterrupted one."""
    steps = 10
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ref = run(ws, a, steps, **{"train.ckpt_every": 4})
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = subprocess.Popen(train_args(ws, b, steps, **{"train.ckpt_every": 4}), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = os.path.join(b, "stage1", "log.jsonl")
    deadline = time.time() + 200
    while time.time() < deadline:
        if os.path.isfile(log) and len(open(log).read().splitlines()) >= 2:
            break
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.05))  # somewhere in step 3's forward/backward
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=200)
    assert proc.returncode == 130, err[-2000:]
    interrupted_at = len(log_records(b))
    assert 2 <= interrupted_at < steps, "the signal must land mid-run"
    ck = os.path.join(b, "stage1", f"checkpoint-{interrupted_at:06d}")
    assert verify_checkpoint(ck, checksums=True) is None
    res = run(ws, b, steps, "--resume", **{"train.ckpt_every": 4})
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"from {ck}" in res.stderr
    assert res.stderr.count("accelerate") <= 1 and "should be kept in float32" not in res.stderr
    assert log_records(b) == log_records(a)  # every step's losses, bit for bit
    fa, fb = tree(os.path.join(a, "stage1", "final")), tree(os.path.join(b, "stage1", "final"))
    for name in ("model/unet/diffusion_pytorch_model.safetensors", "ema.safetensors", "optimizer.pt"):
        assert fa[name] == fb[name], name


def test_overwrite_removes_only_what_the_trainer_wrote(ws, tmp_path):
    out = str(tmp_path / "o")
    assert run(ws, out, 2).returncode == 0
    stage = os.path.join(out, "stage1")
    with open(os.path.join(stage, "notes.txt"), "w") as f:
        f.write("my notes")
    os.makedirs(os.path.join(stage, "photos"))
    with open(os.path.join(stage, "photos", "a.jpg"), "wb") as f:
        f.write(os.urandom(64))
    with open(os.path.join(stage, "checkpoint-000002", "mine.txt"), "w") as f:
        f.write("added inside a checkpoint")
    with open(os.path.join(out, "readme.txt"), "w") as f:
        f.write("beside the stage folders")
    before = tree(out)
    res = run(ws, out, 3, "--overwrite")
    assert res.returncode == 2
    for name in ("notes.txt", "photos", os.path.join("checkpoint-000002", "mine.txt")):
        assert name in res.stderr, name
    assert tree(out) == before  # refused: nothing deleted
    for p in ("notes.txt", "photos/a.jpg", "checkpoint-000002/mine.txt"):
        os.remove(os.path.join(stage, p))
    os.rmdir(os.path.join(stage, "photos"))
    res = run(ws, out, 3, "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    after = tree(out)
    assert after["readme.txt"] == before["readme.txt"]
    assert [r["step"] for r in log_records(out)] == [1, 2, 3]  # the new run's log, not appended
    assert not any(k.startswith("stage1/checkpoint-000002/") for k in after)  # the old run is gone
    assert StageFolder(stage).foreign() == []


def test_bad_frame_is_refused_before_any_work(ws, tmp_path):
    import shutil

    data = str(tmp_path / "data")
    shutil.copytree(ws["data"], data)
    frame = os.path.join(data, "video1", "images", "r_0005.png")
    with open(frame, "wb") as f:
        f.write(b"not a png")
    out = str(tmp_path / "never")
    res = run(ws, out, 2, **{"data.root": data})
    assert res.returncode == 2
    assert "r_0005.png" in res.stderr
    assert not os.path.exists(out)
    assert "starts from random weights" not in res.stderr  # refused before the model was built


def test_stage4_text_needs_prompts(ws, tmp_path):
    from orster4d.generation.training.data import OrbitalVideoDataset, write_video_folder
    from orster4d.generation.training.trainer import Trainer

    data = str(tmp_path / "np")
    write_video_folder(os.path.join(data, "v"), np.random.rand(8, 32, 32, 3).astype(np.float32))
    with pytest.raises(ValueError, match="prompt"):
        OrbitalVideoDataset(data, 8, 32).require_prompts()
    cfg = resolve_config("tiny", 4, overrides=tiny_overrides(ws, str(tmp_path / "o"), **{"data.root": data}))
    with pytest.raises(ValueError, match="no 'prompt'.*cond.kind=text"):
        Trainer(cfg, progress=False)


def test_dataset_frames_checked_completely(ws, tmp_path):
    import shutil

    from orster4d.generation.training.data import OrbitalVideoDataset

    for case in ("missing", "size", "time"):
        data = str(tmp_path / case)
        shutil.copytree(ws["data"], data)
        meta_path = os.path.join(data, "video0", "transforms.json")
        meta = json.load(open(meta_path))
        if case == "missing":
            os.remove(os.path.join(data, "video0", meta["frames"][6]["file_path"]))
            want = "r_0006.png: frame file is missing"
        elif case == "size":
            from PIL import Image
            Image.new("RGB", (16, 16)).save(os.path.join(data, "video0", meta["frames"][7]["file_path"]))
            want = "resolution 16x16"
        else:
            meta["frames"][4]["time"] = meta["frames"][3]["time"]
            json.dump(meta, open(meta_path, "w"))
            want = "equal times"
        with pytest.raises(ValueError, match=want):
            OrbitalVideoDataset(data, 8, 32)


# -- fault injection ---------------------------------------------------------------------------
def _child(ws, out, steps_more, resume, wfd):
    """Runs in a forked process: train stage 1 and report on ``wfd``: ``R step`` (resumed from),
    ``W step`` / ``D step`` around every checkpoint write, ``E`` at the end."""
    from orster4d.generation.training.trainer import Trainer

    torch.set_num_threads(1)
    say = lambda text: os.write(wfd, (text + "\n").encode())  # noqa: E731
    step = 0
    if resume:
        ck, _ = StageFolder(os.path.join(out, "stage1")).latest_whole_checkpoint()
        step = json.load(open(os.path.join(ck, "state.json")))["step"]
    cfg = resolve_config("tiny", 1, overrides=tiny_overrides(
        ws, out, steps=step + steps_more, **{"train.ckpt_every": 1, "train.keep_checkpoints": 2}))
    tr = Trainer(cfg, resume=resume, progress=False)
    say(f"R {tr.step}")
    save = tr.save_checkpoint

    def reporting(final=False, rng=None):
        say(f"W {tr.step}")
        path = save(final=final, rng=rng)
        say(f"D {tr.step}")
        return path

    tr.save_checkpoint = reporting
    tr.train()
    say("E")


def _spawn(ws, out, steps_more, resume, delay=None):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if delay:
                os.environ[DELAY_ENV] = str(delay)
            _child(ws, out, steps_more, resume, w)
        except BaseException:  # noqa: B902 - report anything, then leave
            import traceback
            traceback.print_exc()
            code = 3
        os._exit(code)
    os.close(w)
    return pid, os.fdopen(r)


def _final_state(stage):
    final = os.path.join(stage, "final")
    if not os.path.lexists(final):
        return None
    assert os.path.isdir(final), "final is a dangling link"
    return tree(final)


@pytest.mark.slow
def test_sigkill_during_checkpoint_writing_never_loses_a_checkpoint(ws, tmp_path):
    kills, delay = 20, 0.02
    out = str(tmp_path / "k")
    stage = os.path.join(out, "stage1")
    pid, pipe = _spawn(ws, out, 2, resume=False)
    assert pipe.read().split()[-1] == "E" and os.waitpid(pid, 0)[1] == 0
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    inside = 0
    prev = None  # (last D step, step being written when killed)
    for _ in range(kills):
        old_final = _final_state(stage)
        pid, pipe = _spawn(ws, out, 2, resume=True, delay=delay)
        target = rng.randrange(2)  # the periodic checkpoint or the final one
        lines, writes = [], 0
        while True:
            line = pipe.readline()
            assert line, f"child ended early: {lines}"
            lines.append(line.split())
            if lines[-1][0] == "W":
                writes += 1
                if writes == target + 1:
                    break
        time.sleep(rng.uniform(0.0, 12 * delay))  # a checkpoint write takes about 10 pauses
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lines += [ln.split() for ln in pipe.read().splitlines()]
        pipe.close()
        resumed = int(lines[0][1])
        if prev is not None:
            assert resumed in prev, (resumed, prev)
        w_steps = [int(x[1]) for x in lines if x[0] == "W"]
        d_steps = [int(x[1]) for x in lines if x[0] == "D"]
        inside += len(d_steps) < len(w_steps)
        prev = (d_steps[-1] if d_steps else resumed, w_steps[-1])
        new_final = _final_state(stage)
        assert new_final is not None, "final is missing"
        if new_final != old_final:  # the new one: whole, and newer
            assert verify_checkpoint(os.path.join(stage, "final"), checksums=True) is None
        for _, path in StageFolder(stage).checkpoints():
            assert verify_checkpoint(path, checksums=True) is None, path
    print(f"\nSIGKILLs: {kills}, of which {inside} landed inside a checkpoint write")
    assert inside >= kills // 2
    pid, pipe = _spawn(ws, out, 2, resume=True)
    lines = pipe.read().split("\n")
    assert os.waitpid(pid, 0)[1] == 0 and "E" in lines
    total = json.load(open(os.path.join(stage, "final", "state.json")))["step"]
    ref = str(tmp_path / "ref")
    pid, pipe = _spawn(ws, ref, total, resume=False)
    pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    a, b = _final_state(stage), _final_state(os.path.join(ref, "stage1"))
    for name in ("model/unet/diffusion_pytorch_model.safetensors", "ema.safetensors", "optimizer.pt"):
        assert a[name] == b[name], name
    assert log_records(out) == log_records(ref)


def test_video_folders_round_trip_through_the_dataset_reader_and_writer(tmp_path, rng_seed):
    from orster4d.data.dataset import load_dataset
    from orster4d.generation.training.data import OrbitalVideoDataset, write_video_folder

    video = np.random.rand(5, 16, 16, 3).astype(np.float32)
    static = np.random.rand(5, 16, 16, 3).astype(np.float32)
    write_video_folder(str(tmp_path / "v"), video, prompt=f"a toy {rng_seed}", static=static)
    ds = load_dataset(str(tmp_path / "v"))
    assert ds.metadata == {"prompt": f"a toy {rng_seed}", "static": "static"}
    assert ds.trajectory is not None and ds.trajectory.num_frames == 5
    item = OrbitalVideoDataset(str(tmp_path / "v"), 5, 16)[0]
    assert item["prompt"] == f"a toy {rng_seed}"
    torch.testing.assert_close(item["video"], torch.from_numpy(video), atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(item["static_video"], torch.from_numpy(static), atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(item["times"], torch.linspace(0, 1, 5))
