"""Training's logs (tiny stage-1 runs, CPU): ``curves.png`` and the TensorBoard tags in the stage
folder, and a resumed run whose TensorBoard events do not double back (``purge_step``)."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_workspace, tiny_overrides
from orster4d.generation.training.config import resolve_config
from orster4d.generation.training.outputs import StageFolder
from orster4d.generation.training.trainer import Trainer

pytest.importorskip("diffusers")
pytest.importorskip("tensorboard")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(str(tmp_path_factory.mktemp("ws")))


def _cfg(ws, out, steps, **extra):
    return resolve_config("tiny", 1, overrides=tiny_overrides(ws, out, steps=steps, **extra))


def _events(stage_dir):
    """``{tag: [(step, value), ...]}`` as TensorBoard shows them (earlier sessions purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(stage_dir, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _raw_steps(stage_dir, tag):
    """The steps of every ``tag`` event in the event files, purged or not, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    folder = os.path.join(stage_dir, "tensorboard")
    steps = []
    for name in sorted(os.listdir(folder)):
        for event in EventFileLoader(os.path.join(folder, name)).Load():
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


def _log(stage_dir):
    with open(os.path.join(stage_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def finished(ws, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    Trainer(_cfg(ws, out, 4, **{"train.ckpt_every": 2}), progress=False).train()
    return os.path.join(out, "stage1")


def test_curves_png_is_drawn_in_the_stage_folder(finished):
    path = os.path.join(finished, "curves.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(path).convert("L")).astype(float)
    assert img.shape[0] > 100 and img.std() > 5 and (img < 128).mean() > 0.005  # drawn, not blank
    assert not os.path.exists(path + ".tmp")
    assert {"curves.png", "tensorboard/", "log.jsonl"} <= StageFolder(finished).owned
    assert StageFolder(finished).foreign() == []


def test_tensorboard_tags_match_the_json_log(finished):
    ev = _events(finished)
    lines = _log(finished)
    terms = [k for k in lines[0] if k not in ("step", "loss", "lr", "step_time_s", "data_time_s", "samples_per_s")]
    assert terms == ["ldm"]  # stage 1's one loss term
    want = {"loss/total", "loss/ldm", "lr", "throughput/samples_per_s", "time/step_s", "time/data_s"}
    if torch.cuda.is_available():
        want.add("gpu/memory_allocated_mb")
    assert want <= set(ev), sorted(ev)
    assert not any(t.startswith("stage1/") for t in ev)  # the old per-stage tags are gone
    steps = [r["step"] for r in lines]
    assert steps == [1, 2, 3, 4]
    for tag, key in (("loss/total", "loss"), ("loss/ldm", "ldm"), ("lr", "lr"),
                     ("throughput/samples_per_s", "samples_per_s")):
        assert [s for s, _ in ev[tag]] == steps, tag
        assert [v for _, v in ev[tag]] == pytest.approx([r[key] for r in lines], rel=1e-6), tag


def test_resume_purges_the_events_past_the_checkpoint(ws, tmp_path, monkeypatch):
    """A run dies in step 6 (checkpoint 4 written, step 5 logged); the resumed run starts from
    checkpoint 4 and logs step 5 again. TensorBoard shows every step once."""
    out = str(tmp_path / "r")
    stage_dir = os.path.join(out, "stage1")
    tr = Trainer(_cfg(ws, out, 8, **{"train.ckpt_every": 2}), progress=False)
    orig = type(tr.stage).forward
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("simulated crash")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(type(tr.stage), "forward", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tr.train()
    monkeypatch.setattr(type(tr.stage), "forward", orig)
    before = _events(stage_dir)
    assert [s for s, _ in before["loss/total"]] == [1, 2, 3, 4, 5]  # step 5 is past the last checkpoint

    Trainer(_cfg(ws, out, 8, **{"train.ckpt_every": 2}), resume=True, progress=False).train()
    assert _raw_steps(stage_dir, "loss/total").count(5) == 2  # on disk: both sessions' step 5
    ev = _events(stage_dir)
    lines = _log(stage_dir)
    assert [r["step"] for r in lines] == list(range(1, 9))
    for tag in ("loss/total", "loss/ldm", "lr", "throughput/samples_per_s"):
        steps = [s for s, _ in ev[tag]]
        assert steps == list(range(1, 9)), (tag, steps)  # shown: no step twice, none missing
    assert [v for _, v in ev["loss/total"]] == pytest.approx([r["loss"] for r in lines], rel=1e-6)
    with open(os.path.join(stage_dir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_logged_times_cover_every_step_since_the_last_line(ws, tmp_path, monkeypatch):
    """With a log line every 3 steps, the two unlogged steps count: they are made slow (0.2 s),
    the logged one is not, so a per-step time read from the logged step alone would be far
    below the window's mean."""
    import time

    from orster4d.generation.training.stages import Stage1

    orig = Stage1.forward
    calls = {"n": 0}

    def paced(self, *a, **k):
        calls["n"] += 1
        if calls["n"] % 3:
            time.sleep(0.2)
        return orig(self, *a, **k)

    monkeypatch.setattr(Stage1, "forward", paced)
    out = str(tmp_path / "win")
    Trainer(_cfg(ws, out, 6, **{"train.log_every": 3}), progress=False).train()
    with open(os.path.join(out, "stage1", "log.jsonl")) as f:
        lines = [json.loads(ln) for ln in f]
    assert [r["step"] for r in lines] == [3, 6]
    for r in lines:
        assert r["step_time_s"] >= 0.4 / 3
        assert r["samples_per_s"] == pytest.approx(2 / r["step_time_s"])
