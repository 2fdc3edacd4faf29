"""The 4D Gaussian Splatting HexPlane regularisers, vectorised over planes.

All three take the plane list of :mod:`orster4d.ops.hexplane.layout` (``6 * L`` tensors
``[C, H, W]``; time planes have time along H) and return a scalar tensor. Planes of one
kind and shape are stacked and reduced together (one set of kernels per shape group, not
per plane). Per plane the terms are means, summed over planes, as in 4DGS:

* ``plane_tv``: spatial planes (xy, xz, yz): ``2 * (mean(d_H^2) + mean(d_W^2))`` with
  ``d_H``, ``d_W`` the first differences along height and width (4DGS ``_plane_regulation``).
* ``time_smoothness``: time planes (xt, yt, zt): ``mean(d2_t^2)``, the squared second
  difference along t (K-Planes' time smoothness).
* ``time_l1``: time planes: ``mean(|1 - plane|)`` (4DGS ``_l1_regulation``).

A plane too small for a difference (H or W below 2, or below 3 along t) adds 0.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from orster4d.ops.hexplane.layout import SPATIAL_PLANES, TIME_PLANES, HexPlaneLayout

__all__ = ["plane_tv", "time_smoothness", "time_l1"]


def _grouped(planes: Sequence[torch.Tensor], kinds: tuple[int, ...], per_plane: Callable) -> torch.Tensor:
    """Sum of ``per_plane(stack)`` (a [P] vector of per-plane terms) over shape groups."""
    HexPlaneLayout.from_planes(planes)  # validates the list
    groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for i, pl in enumerate(planes):
        if i % 6 in kinds:
            groups.setdefault(tuple(pl.shape), []).append(pl)
    total = planes[0].new_zeros(())
    for members in groups.values():
        total = total + per_plane(torch.stack(members)).sum()
    return total


def _sq_mean(d: torch.Tensor) -> torch.Tensor:
    """Per-plane mean of d^2 over [C, H', W'] of a [P, C, H', W'] stack (0 when empty)."""
    if d.numel() == 0:
        return d.new_zeros(d.shape[0])
    return d.square().mean(dim=(1, 2, 3))


def plane_tv(planes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Total variation of the spatial planes (xy, xz, yz of every level); scalar."""

    def term(s: torch.Tensor) -> torch.Tensor:
        return 2 * (_sq_mean(s[:, :, 1:] - s[:, :, :-1]) + _sq_mean(s[:, :, :, 1:] - s[:, :, :, :-1]))

    return _grouped(planes, SPATIAL_PLANES, term)


def time_smoothness(planes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Squared second difference along t of the time planes (xt, yt, zt); scalar."""

    def term(s: torch.Tensor) -> torch.Tensor:
        return _sq_mean(s[:, :, 2:] - 2 * s[:, :, 1:-1] + s[:, :, :-2])

    return _grouped(planes, TIME_PLANES, term)


def time_l1(planes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean absolute deviation of the time planes from 1; scalar."""
    return _grouped(planes, TIME_PLANES, lambda s: (1 - s).abs().mean(dim=(1, 2, 3)))
