"""The reproduction's figures, drawn with Pillow (no matplotlib needed).

- :func:`scarcity_curve`: image-to-4D PSNR of the generated videos against the number of 4D
  training objects, ours vs the single-channel baseline, with the 95% interval over seeds as
  error bars where a point has more than one seed;
- :func:`strips_figure`: generated vs true orbital videos of a few held-out objects, from the
  strips ``orster4d-reproduce`` writes (``<strips>/<row>/seed<s>/<object>_<kind>.png``: the
  generated frames in the top half, the true frames in the bottom half, frames side by side).

Both return a ``PIL.Image`` (RGB); ``python -m benchmarks.report docs`` writes them under
``docs/figures/``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from orster4d.logs import _ticks

SERIES = {"ours": (200, 40, 40), "single-channel (Diffusion4D-like)": (30, 80, 200)}
CURVE_SIZE = (640, 420)  # pixels
_MARGIN = (70, 40, 20, 70)  # left, top, right, bottom
STRIP_ROWS = (("ours", "ours"), ("single_channel_diffusion4d_like", "single-channel"))  # strips folder, label


def scarcity_points(result: dict, condition: str = "image", metric: str = "psnr") -> Dict[str, List[Tuple]]:
    """``{series: [(n 4D objects, mean, half-width or None, seeds)]}`` of the scarcity rows of
    ``result`` (a ``reproduction.json`` dict) that were run, sorted by n; rows without that score
    are left out."""
    out: Dict[str, List[Tuple]] = {name: [] for name in SERIES}
    for r in result["rows"]:
        if r.get("table") != 4 or r.get("status") != "done" or r.get("scarce4d") is None:
            continue
        series = r["name"].split(" @ ")[0]
        ci = ((r.get("summary") or {}).get(condition) or {}).get(metric) or {}
        if series in out and ci.get("mean") is not None:
            out[series].append((int(r["scarce4d"]), float(ci["mean"]), ci.get("half_width"), len(r["seeds"])))
    return {k: sorted(v) for k, v in out.items()}


def scarcity_curve(result: dict, size: Tuple[int, int] = CURVE_SIZE):
    """The scarcity curve of ``result`` as an RGB image of ``size`` (width, height) pixels: x the
    4D-set size (objects), y the image-to-4D PSNR (dB) of the generated videos, one line per
    series, error bars of the 95% interval where there is one; "no scarcity rows run" when none."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    if w < 200 or h < 150:
        raise ValueError(f"size: expected at least 200 x 150 pixels, got {size}")
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    ml, mt, mr, mb = _MARGIN
    x0, y0, x1, y1 = ml, mt, w - mr, h - mb
    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
    draw.text((x0, 12), f"Scarcity curve (preset {result.get('preset')}): image-to-4D PSNR of generated videos",
              fill=(0, 0, 0), font=font)
    draw.text(((x0 + x1) // 2 - 80, h - 30), "4D training objects (n)", fill=(0, 0, 0), font=font)
    draw.text((6, y0 - 14), "PSNR (dB)", fill=(0, 0, 0), font=font)
    pts = scarcity_points(result)
    allp = [p for v in pts.values() for p in v]
    if not allp:
        draw.text((x0 + 20, (y0 + y1) // 2), "no scarcity rows run", fill=(0, 0, 0), font=font)
        return img
    xs = [p[0] for p in allp]
    lows = [p[1] - (p[2] or 0.0) for p in allp]
    highs = [p[1] + (p[2] or 0.0) for p in allp]
    lo_x, hi_x = min(xs), max(xs)
    lo_y, hi_y = min(lows), max(highs)
    pad_x = 0.05 * (hi_x - lo_x) if hi_x > lo_x else 1.0
    pad_y = 0.1 * (hi_y - lo_y) if hi_y - lo_y > 1e-9 else 0.5
    lo_x, hi_x, lo_y, hi_y = lo_x - pad_x, hi_x + pad_x, lo_y - pad_y, hi_y + pad_y
    px = lambda x: x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0)  # noqa: E731
    py = lambda y: y1 - (y - lo_y) / (hi_y - lo_y) * (y1 - y0)  # noqa: E731
    ticks = _ticks(lo_y, hi_y)
    decimals = max(0, -math.floor(math.log10(ticks[1] - ticks[0]))) if len(ticks) > 1 else 2
    for t in ticks:
        draw.line([(x0, py(t)), (x1, py(t))], fill=(225, 225, 225))
        label = f"{t:.{decimals}f}"
        draw.text((x0 - 6 * len(label) - 6, py(t) - 6), label, fill=(0, 0, 0), font=font)
    for n in sorted(set(xs)):
        draw.line([(px(n), y1), (px(n), y1 + 4)], fill=(0, 0, 0))
        draw.text((px(n) - 3 * len(str(n)), y1 + 8), str(n), fill=(0, 0, 0), font=font)
    for i, (series, colour) in enumerate(SERIES.items()):
        line = [(px(n), py(m)) for n, m, _, _ in pts[series]]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for n, m, hw, seeds in pts[series]:
            if hw is not None and seeds > 1 and math.isfinite(hw):
                x, top, bot = px(n), py(m + hw), py(m - hw)
                draw.line([(x, top), (x, bot)], fill=colour, width=1)
                draw.line([(x - 4, top), (x + 4, top)], fill=colour)
                draw.line([(x - 4, bot), (x + 4, bot)], fill=colour)
            draw.ellipse((px(n) - 3, py(m) - 3, px(n) + 3, py(m) + 3), fill=colour)
        lx = x0 + 90 + 110 * i  # the legend, on the line of the y label, above the axes
        draw.line([(lx, y0 - 8), (lx + 20, y0 - 8)], fill=colour, width=2)
        draw.text((lx + 26, y0 - 14), series, fill=(0, 0, 0), font=font)
    draw.text((x0, h - 16), "error bars: 95% interval over seeds (points with one seed have none)",
              fill=(110, 110, 110), font=font)
    return img


def _strip_halves(path: Path):
    """``(generated, true)`` halves of one strip PNG (RGB images)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    if im.height % 2:
        raise ValueError(f"{path}: a strip holds two rows of frames (an even height), got {im.height} pixels")
    half = im.height // 2
    return im.crop((0, 0, im.width, half)), im.crop((0, half, im.width, im.height))


def strips_figure(strips: Path, kind: str = "image", seed: int = 0, objects: Optional[Sequence[str]] = None,
                  max_objects: int = 3, scale: int = 2, label_width: int = 190):
    """Generated vs true orbital videos as one RGB image: per held-out object three rows, ours,
    single-channel and the true video (the bottom half of ours' strip), frames left to right,
    each frame enlarged ``scale`` times (nearest), a label column of ``label_width`` pixels.

    ``strips``: a folder laid out as ``<root>/strips`` of ``orster4d-reproduce``
    (``<row>/seed<seed>/<object>_<kind>.png``). ``objects``: held-out object names (default: the
    first ``max_objects`` that ours has). A missing strip is drawn as a grey row saying so."""
    from PIL import Image, ImageDraw, ImageFont

    strips = Path(strips)
    ours = strips / STRIP_ROWS[0][0] / f"seed{seed}"
    if not ours.is_dir():
        raise FileNotFoundError(f"--strips: {ours} not found (expected <strips>/<row>/seed<s>/<object>_<kind>.png)")
    if objects is None:
        found = sorted(p.name[:-len(f"_{kind}.png")] for p in ours.glob(f"*_{kind}.png"))
        if not found:
            raise FileNotFoundError(f"--strips: no *_{kind}.png strips in {ours}")
        objects = found[:max_objects]
    if not objects or scale < 1:
        raise ValueError(f"objects: expected at least one name and scale >= 1, got {objects!r}, {scale}")
    lines = []  # (label, image or None)
    for obj in objects:
        truth = None
        for folder, label in STRIP_ROWS:
            path = strips / folder / f"seed{seed}" / f"{obj}_{kind}.png"
            gen = None
            if path.is_file():
                gen, true = _strip_halves(path)
                truth = true if truth is None else truth
            lines.append((f"{obj}\n{label}", gen))
        lines.append((f"{obj}\ntruth", truth))
    known = [im for _, im in lines if im is not None]
    if not known:
        raise FileNotFoundError(f"--strips: none of {list(objects)} has a {kind} strip under {strips}")
    fw, fh = known[0].width * scale, known[0].height * scale
    gap = 6
    img = Image.new("RGB", (label_width + fw, len(lines) * (fh + 2) + (len(objects) - 1) * gap + 24), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    draw.text((4, 4), f"{kind}-to-4D, seed {seed}: generated (ours, single-channel) and true orbital frames",
              fill=(0, 0, 0), font=font)
    y = 24
    for i, (label, im) in enumerate(lines):
        draw.multiline_text((6, y + fh // 2 - 12), label, fill=(0, 0, 0), font=font)
        if im is None:
            draw.rectangle((label_width, y, label_width + fw - 1, y + fh - 1), fill=(200, 200, 200))
            draw.text((label_width + 10, y + fh // 2 - 6), "strip missing", fill=(0, 0, 0), font=font)
        else:
            img.paste(im.resize((im.width * scale, im.height * scale), Image.NEAREST), (label_width, y))
        y += fh + 2 + (gap if i % 3 == 2 else 0)
    return img
