"""Run logs shared by 4D construction and training: ``log.jsonl``, TensorBoard events, ``curves.png``.

- ``log.jsonl``: one JSON object per logging step. :func:`cut_jsonl` drops the lines past the
  step a resumed run starts from (it writes those lines again).
- ``tensorboard/``: TensorBoard event files, opened by :func:`open_tensorboard`. TensorBoard
  needs the ``tensorboard`` package (a dependency); when it cannot be imported the run says so
  once and keeps the JSON log. A resumed run opens the writer with ``purge_step``: TensorBoard
  then hides the earlier sessions' events from that step on, so curves do not double back.
- ``curves.png``: :func:`write_curves` draws logged numbers against the step with Pillow (a
  dependency), one panel per quantity.

:class:`RunLog` is construct's log (its scalar tags: ``loss/total``, ``loss/<term>`` (``l1``,
``lpips``, ``dep``, ``hex``, ``curv``: those that are on), ``psnr/train``, ``gaussians/count``,
``lr/<group>`` (``means``; ``grid`` and ``mlp`` in the fine phase); images: ``preview`` (render
| ground truth of the first training frame, every ``preview_every`` steps)). Training writes its
own tags (see :mod:`orster4d.generation.training.trainer`) with the functions here.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

__all__ = ["RunLog", "open_tensorboard", "cut_jsonl", "write_curves", "TB_FOLDER", "JSONL", "CURVES"]

TB_FOLDER = "tensorboard"
JSONL = "log.jsonl"
CURVES = "curves.png"
_NOT_LOSS = ("loss", "psnr", "n", "it", "lr", "phase")


def open_tensorboard(folder: os.PathLike, purge_step: Optional[int] = None,
                     log: Callable[[str], None] = print):
    """A ``torch.utils.tensorboard.SummaryWriter`` writing into ``folder`` (created), or None when
    the ``tensorboard`` package cannot be imported (said once through ``log``).

    ``purge_step``: the first step a resumed run logs; events of that step and later written by
    earlier sessions are hidden from TensorBoard (None: a fresh run, nothing hidden)."""
    if purge_step is not None and (isinstance(purge_step, bool) or int(purge_step) != purge_step
                                   or purge_step < 0):
        raise ValueError(f"purge_step: expected None or a step >= 0, got {purge_step!r}")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # the tensorboard package is missing
        log(f"TensorBoard logs off ({e}); the JSON log is still written (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=None if purge_step is None else int(purge_step))


def cut_jsonl(path: os.PathLike, key: str, last: int) -> int:
    """Drops the lines of the JSON-lines file ``path`` whose ``key`` (the step) is above ``last``;
    returns how many were dropped. Nothing is written when none are (or the file is missing);
    else the kept lines go to ``<path>.tmp``, which then replaces ``path``."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)[key] <= last]
    if len(kept) == len(lines):
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)
    return len(lines) - len(kept)


class RunLog:
    """Writes one construction's JSON lines and TensorBoard events into the folder ``out``.

    ``resumed_at``: the iteration a resumed run continues from; the lines of ``log.jsonl`` past it
    are dropped and the TensorBoard events past it hidden (the run logs those iterations again)."""

    def __init__(self, out: Path, tensorboard: bool = True, log: Callable[[str], None] = print,
                 resumed_at: Optional[int] = None):
        if resumed_at is not None and (isinstance(resumed_at, bool) or int(resumed_at) != resumed_at
                                       or resumed_at < 0):
            raise ValueError(f"resumed_at: expected None or an iteration >= 0, got {resumed_at!r}")
        self.out = Path(out)
        self.writer = None
        if resumed_at is not None:
            cut_jsonl(self.out / JSONL, "it", resumed_at)
        (self.out / JSONL).touch()  # both files exist from the start (the manifest lists them)
        if tensorboard:
            self.writer = open_tensorboard(self.out / TB_FOLDER, None if resumed_at is None else resumed_at + 1, log)

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
_TITLES = {"loss": "loss", "psnr": "train PSNR (dB)"}
_CELL = (440, 320)  # pixels per panel, with its margins
_MARGIN = (60, 30, 20, 40)  # left (y tick labels), top (title), right, bottom (x tick labels)
_COLOURS = [(200, 40, 40), (30, 80, 200), (30, 140, 60), (150, 60, 170), (210, 120, 20), (20, 140, 150)]


def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= min((m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n), default=10)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _panel(draw, font, box, pts, title, log_y, split, split_label, colour):
    """One panel: the points ``pts`` (``(x, y)``, finite, ``y > 0`` when ``log_y``) in ``box``."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 14), title + (" (log scale)" if log_y else ""), fill=(0, 0, 0), font=font)
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
    if split is not None and lo_x < split < hi_x:
        draw.line([(px(split), y0), (px(split), y1)], fill=(160, 160, 160))
        draw.text((px(split) + 3, y0 + 3), split_label, fill=(120, 120, 120), font=font)
    if len(pts) == 1:
        draw.ellipse([px(pts[0][0]) - 2, py(f(pts[0][1])) - 2, px(pts[0][0]) + 2, py(f(pts[0][1])) + 2], fill=colour)
    else:
        draw.line([(px(x), py(f(y))) for x, y in pts], fill=colour, width=2)


def write_curves(history: Sequence[Dict], path: os.PathLike, split: Optional[float] = None, *,
                 keys: Sequence[str] = ("loss", "psnr"), x: str = "it", x_label: str = "iteration",
                 linear: Sequence[str] = ("psnr",), split_label: str = "fine") -> Path:
    """Draws ``history`` (the logged steps: dicts holding ``x`` and some of ``keys``) into a PNG
    at ``path``: one panel per key (three to a row), its values against ``x``.

    A panel's y axis is logarithmic when every value drawn is positive, unless the key is in
    ``linear`` (PSNR in dB); missing and non-finite values are left out. ``split`` (a step)
    is marked in every panel with ``split_label`` (construct: the start of the fine phase).
    The file is written as PNG whatever its suffix (callers may write ``*.tmp`` and rename).
    Returns ``path``."""
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys: expected a non-empty sequence of logged names, got {keys!r}")
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    (cw, ch), (ml, mt, mr, mb) = _CELL, _MARGIN
    img = Image.new("RGB", (cols * cw, rows * ch + 20), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i, key in enumerate(keys):
        pts = [(float(h[x]), float(h[key])) for h in history
               if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        log_y = key not in linear and bool(pts) and all(y > 0 for _, y in pts)
        c, r = i % cols, i // cols
        box = (c * cw + ml, r * ch + mt, (c + 1) * cw - mr, (r + 1) * ch - mb)
        _panel(draw, font, box, pts, _TITLES.get(key, key), log_y, split, split_label,
               _COLOURS[i % len(_COLOURS)])
    draw.text((img.width // 2 - 3 * len(x_label), img.height - 18), x_label, fill=(0, 0, 0), font=font)
    img.save(path, format="PNG")
    return Path(path)
