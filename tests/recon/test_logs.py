"""Construct's logs without a training run: JSON lines, TensorBoard off when the package is
missing, and the curves PNG drawn from the logged numbers."""
import json
import sys

import numpy as np
import torch
from PIL import Image

from orster4d.recon.logs import JSONL, RunLog, write_curves


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
