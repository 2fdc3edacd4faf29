"""The run logs of :mod:`orster4d.logs` without a training run: JSON lines (cut back on resume),
TensorBoard off when the package is missing and purged past the resumed iteration, and the curves
PNG drawn from the logged numbers."""
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from orster4d.logs import JSONL, RunLog, cut_jsonl, open_tensorboard, write_curves


def _history(gen, n=30):
    loss = (torch.rand(n, generator=gen) * 0.5 + 0.05).cumprod(0).clamp_min(1e-6) + 1e-3
    psnr = 10 + torch.rand(n, generator=gen).cumsum(0)
    return [{"it": 10 * (i + 1), "loss": float(loss[i]), "psnr": float(psnr[i]), "l1": float(loss[i]), "n": 100 + i}
            for i in range(n)]


def test_missing_tensorboard_is_said_once_and_the_json_log_goes_on(tmp_path, monkeypatch, rng_seed):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    said = []
    logger = RunLog(tmp_path, tensorboard=True, log=said.append)
    hist = _history(torch.Generator().manual_seed(rng_seed), 5)
    for h in hist:
        logger.scalars(h["it"], {**h, "lr": {"means": 1e-4}})
    logger.close()
    assert len(said) == 1 and "TensorBoard logs off" in said[0]
    assert logger.writer is None and not (tmp_path / "tensorboard").exists()
    lines = [json.loads(x) for x in (tmp_path / JSONL).read_text().splitlines()]
    assert [x["loss"] for x in lines] == [h["loss"] for h in hist] and lines[0]["lr"] == {"means": 1e-4}


def test_curves_png_draws_the_history(tmp_path, rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    a = np.asarray(Image.open(write_curves(_history(gen), tmp_path / "a.png", 150)).convert("L")).astype(float)
    b = np.asarray(Image.open(write_curves(_history(gen), tmp_path / "b.png", 150)).convert("L")).astype(float)
    empty = np.asarray(Image.open(write_curves([], tmp_path / "e.png")).convert("L")).astype(float)
    assert a.std() > 5 and (a < 128).mean() > 0.005
    assert np.abs(a - b).mean() > 0.1  # other numbers, other curves
    assert (a < 250).sum() > (empty < 250).sum()  # the curves add ink to the empty frame


def test_curves_png_has_one_panel_per_key_and_skips_bad_values(tmp_path, rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    hist = [{"step": h["it"], "loss": h["loss"], "ldm": h["l1"], "kl": -h["l1"]} for h in _history(gen)]
    hist[3]["ldm"] = float("nan")
    del hist[4]["kl"]
    one = np.asarray(Image.open(write_curves(hist, tmp_path / "one.png", keys=["loss"], x="step")))
    path = tmp_path / "curves.tmp"  # written as PNG whatever the suffix
    four = np.asarray(Image.open(write_curves(hist, path, keys=["loss", "ldm", "kl", "psnr"], x="step")))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert four.shape[1] == 3 * one.shape[1] and four.shape[0] > 1.8 * one.shape[0]  # 3 to a row, 2 rows
    for bad in ([], "loss"):
        with pytest.raises(ValueError, match="keys: expected a non-empty sequence"):
            write_curves(hist, tmp_path / "x.png", keys=bad)


def test_cut_jsonl_drops_only_the_lines_past_the_step(tmp_path):
    path = tmp_path / JSONL
    assert cut_jsonl(path, "step", 3) == 0 and not path.exists()  # nothing to cut
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 7)))
    before = path.read_text()
    assert cut_jsonl(path, "step", 6) == 0 and path.read_text() == before
    assert cut_jsonl(path, "step", 4) == 2
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert not (tmp_path / (JSONL + ".tmp")).exists()


def test_resumed_runlog_cuts_the_json_log_and_purges_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def session(its, resumed_at, value):
        logger = RunLog(tmp_path, tensorboard=True, log=lambda s: None, resumed_at=resumed_at)
        for it in its:
            logger.scalars(it, {"loss": value, "psnr": 20.0, "l1": value, "n": 5, "lr": {"means": 1e-4}})
        logger.close()

    session([10, 20, 30, 40], None, 1.0)  # a crash after the checkpoint of iteration 20
    session([30, 40, 50], 20, 2.0)
    assert [json.loads(x)["it"] for x in (tmp_path / JSONL).read_text().splitlines()] == [10, 20, 30, 40, 50]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss/total")] == [(10, 1.0), (20, 1.0), (30, 2.0), (40, 2.0),
                                                                       (50, 2.0)]
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="resumed_at: expected None or an iteration >= 0"):
            RunLog(tmp_path / "bad", resumed_at=bad)
    with pytest.raises(ValueError, match="purge_step: expected None or a step >= 0"):
        open_tensorboard(tmp_path / "bad", purge_step=-3)
    assert not (tmp_path / "bad").exists()
