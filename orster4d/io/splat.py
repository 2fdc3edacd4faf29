"""The ``.splat`` format (antimatter15's web viewer): one static set of Gaussians, 32 bytes each.

Each record, little-endian, no header::

    float32 x, y, z            position (world units)
    float32 sx, sy, sz         standard deviations (activated, world units)
    uint8   r, g, b, a         colour and opacity, each round(255 * value) clipped to [0, 255]
    uint8   qw, qx, qy, qz     unit quaternion, each round(128 * q + 128) clipped to [0, 255]

The colour is the SH degree-0 colour (view-dependent terms are dropped). Records are ordered by
decreasing ``opacity * sx * sy * sz`` (the order that viewer's progressive loader expects; the
order does not change the image).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

RECORD_BYTES = 32
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == RECORD_BYTES


def _check(name: str, x, n: int, tail: tuple) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != (n,) + tail:
        raise ValueError(f"{name} must have shape {[n, *tail]}, got {list(x.shape)}")
    a = x.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


def write_splat(path: Union[str, Path], means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                opacities: torch.Tensor, colors: torch.Tensor) -> int:
    """Writes one timestamp's Gaussians as ``.splat``; returns the number of records.

    Args:
        means: ``[N, 3]`` world positions.
        quats: ``[N, 4]`` rotations (w, x, y, z; normalised here).
        scales: ``[N, 3]`` activated standard deviations (world units, > 0).
        opacities: ``[N]`` activated opacities in [0, 1].
        colors: ``[N, 3]`` RGB in [0, 1] (clipped).
    """
    if not isinstance(means, torch.Tensor) or means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [N, 3], got {list(getattr(means, 'shape', []))}")
    n = means.shape[0]
    m = _check("means", means, n, (3,))
    q = _check("quats", quats, n, (4,))
    s = _check("scales", scales, n, (3,))
    o = _check("opacities", opacities, n, ())
    c = _check("colors", colors, n, (3,))
    if (s <= 0).any():
        raise ValueError("scales must be > 0 (activated standard deviations, not log-scales)")
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    if (qn < 1e-12).any():
        raise ValueError("quats has zero-length rows")
    q = q / qn
    order = np.argsort(-(o * s.prod(axis=1)), kind="stable")
    rec = np.zeros(n, SPLAT_DTYPE)
    rec["position"] = m[order]
    rec["scale"] = s[order]
    rgba = np.concatenate([c, o[:, None]], axis=1)[order]
    rec["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)
    rec["rot"] = np.clip(np.round(q[order] * 128.0 + 128.0), 0, 255).astype(np.uint8)
    Path(path).write_bytes(rec.tobytes())
    return n
