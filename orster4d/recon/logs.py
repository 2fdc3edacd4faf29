"""Construct's logs: ``log.jsonl`` (one JSON object per logging step), TensorBoard event files
in ``tensorboard/`` and, at the end, ``curves.png`` (loss and PSNR against the iteration).

TensorBoard needs the ``tensorboard`` package (a dependency); when it cannot be imported the run
says so once and keeps the JSON log. Scalar tags: ``loss/total``, ``loss/<term>`` (``l1``,
``lpips``, ``dep``, ``hex``, ``curv``: those that are on), ``psnr/train``, ``gaussians/count``,
``lr/<group>`` (``means``; ``grid`` and ``mlp`` in the fine phase); images: ``preview`` (render
| ground truth of the first training frame, every ``preview_every`` steps).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

__all__ = ["RunLog", "write_curves", "TB_FOLDER", "JSONL", "CURVES"]

TB_FOLDER = "tensorboard"
JSONL = "log.jsonl"
CURVES = "curves.png"
_NOT_LOSS = ("loss", "psnr", "n", "it", "lr", "phase")


class RunLog:
    """Writes one run's JSON lines and TensorBoard events into the folder ``out``."""

    def __init__(self, out: Path, tensorboard: bool = True, log: Callable[[str], None] = print):
        self.out = Path(out)
        self.writer = None
        (self.out / JSONL).touch()  # both files exist from the start (the manifest lists them)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # the tensorboard package is missing
                log(f"TensorBoard logs off ({e}); the JSON log {self.out / JSONL} is still written "
                    f"(pip install tensorboard)")
            else:
                self.writer = SummaryWriter(log_dir=str(self.out / TB_FOLDER))

    def scalars(self, it: int, logs: Dict) -> None:
        """Appends ``logs`` (floats: ``loss``, ``psnr``, loss terms, ``n``, ``lr`` dict) at iteration ``it``."""
        with open(self.out / JSONL, "a") as f:
            f.write(json.dumps({"it": it, **logs}) + "\n")
        if self.writer is None:
            return
        w = self.writer
        w.add_scalar("loss/total", logs["loss"], it)
        for k, v in logs.items():
            if k not in _NOT_LOSS:
                w.add_scalar(f"loss/{k}", v, it)
        w.add_scalar("psnr/train", logs["psnr"], it)
        w.add_scalar("gaussians/count", logs["n"], it)
        for k, v in logs.get("lr", {}).items():
            w.add_scalar(f"lr/{k}", v, it)

    def image(self, it: int, render: torch.Tensor, target: torch.Tensor) -> None:
        """Adds ``render | target`` (``[H, W, 3]`` in [0, 1]) as the ``preview`` image at ``it``."""
        if self.writer is not None:
            pair = torch.cat([render, target], 1).clamp(0, 1).detach().cpu()
            self.writer.add_image("preview", pair, it, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------- curves.png (Pillow)
def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= min((m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n), default=10)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _panel(draw, font, box, xs, ys, title, log_y, x_split, colour):
    from PIL import ImageDraw  # noqa: F401 (draw is an ImageDraw.Draw)

    x0, y0, x1, y1 = box
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and (y > 0 or not log_y)]
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 14), title, fill=(0, 0, 0), font=font)
    if not pts:
        draw.text((x0 + 10, (y0 + y1) // 2), "no data", fill=(0, 0, 0), font=font)
        return
    f = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    lo_x, hi_x = min(p[0] for p in pts), max(p[0] for p in pts)
    lo_y, hi_y = min(f(p[1]) for p in pts), max(f(p[1]) for p in pts)
    if hi_x == lo_x:
        hi_x = lo_x + 1
    if hi_y - lo_y < 1e-9:
        lo_y, hi_y = lo_y - 0.5, hi_y + 0.5
    px = lambda x: x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0)  # noqa: E731
    py = lambda y: y1 - (y - lo_y) / (hi_y - lo_y) * (y1 - y0)  # noqa: E731
    for t in _ticks(lo_y, hi_y):
        draw.line([(x0, py(t)), (x1, py(t))], fill=(225, 225, 225))
        label = f"{10 ** t:.3g}" if log_y else f"{t:.3g}"
        draw.text((x0 - 6 * len(label) - 4, py(t) - 6), label, fill=(0, 0, 0), font=font)
    for t in _ticks(lo_x, hi_x):
        draw.text((px(t) - 8, y1 + 4), f"{t:.0f}", fill=(0, 0, 0), font=font)
    if x_split is not None and lo_x < x_split < hi_x:
        draw.line([(px(x_split), y0), (px(x_split), y1)], fill=(160, 160, 160))
        draw.text((px(x_split) + 3, y0 + 3), "fine", fill=(120, 120, 120), font=font)
    draw.line([(px(x), py(f(y))) for x, y in pts], fill=colour, width=2)


def write_curves(history: List[Dict], path: Path, coarse_iters: Optional[int] = None) -> Path:
    """Draws the loss (log scale) and training PSNR (dB) of ``history`` (the logged steps: ``it``,
    ``loss``, ``psnr``) against the iteration into a PNG at ``path``, with the start of the fine
    phase marked at ``coarse_iters``. Returns ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    W, H, m = 900, 360, 60
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [h["it"] for h in history]
    half = (W - 3 * m) // 2
    _panel(draw, font, (m, 30, m + half, H - 40), xs, [h.get("loss") for h in history], "loss", True,
           coarse_iters, (200, 40, 40))
    _panel(draw, font, (2 * m + half, 30, 2 * m + 2 * half, H - 40), xs, [h.get("psnr") for h in history],
           "train PSNR (dB)", False, coarse_iters, (30, 80, 200))
    draw.text((W // 2 - 30, H - 18), "iteration", fill=(0, 0, 0), font=font)
    img.save(path)
    return Path(path)
