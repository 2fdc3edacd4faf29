"""Plain PyTorch reference: the composition of ``grid_sample`` calls (what 4DGS runs)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from orster4d.ops.hexplane.layout import PLANE_AXES

__all__ = ["hexplane_sample_reference"]


def hexplane_sample_reference(points: torch.Tensor, planes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multi-resolution HexPlane features by ``torch.nn.functional.grid_sample``.

    Args:
        points: ``[N, 4]`` (x, y, z, t), each in [-1, 1] (values outside are clamped to the border).
        planes: ``6 * L`` tensors ``[C, H, W]`` (see :mod:`orster4d.ops.hexplane.layout`).

    Returns:
        ``[N, C * L]``: per level the product of the six bilinear samples
        (align_corners=True, border padding), levels concatenated.
    """
    n = points.shape[0]
    feats = []
    for l in range(len(planes) // 6):
        f = None
        for p, (a, b) in enumerate(PLANE_AXES):
            plane = planes[6 * l + p]
            grid = points[:, [a, b]].reshape(1, 1, n, 2)
            s = F.grid_sample(plane.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)
            s = s.view(plane.shape[0], n).t()
            f = s if f is None else f * s
        feats.append(f)
    return torch.cat(feats, dim=-1)
