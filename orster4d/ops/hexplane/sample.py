"""Fused HexPlane sampling: public entry points and input checks.

The fused kernels (``csrc/hexplane``: C++/OpenMP on CPU, CUDA on GPU) read the packed
channel-last layout of :class:`~orster4d.ops.hexplane.layout.HexPlaneLayout`; they share their
math through ``csrc/include/orster4d/hexplane_math.h`` and are the dispatcher op
``torch.ops.orster4d.hexplane_fwd`` (autograd kernel in ``csrc/hexplane/cpu/autograd.cpp``, fake
kernel in :mod:`orster4d.ops.hexplane._ops`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from orster4d.build import backend_for
from orster4d.ops.hexplane._ops import ensure_loaded
from orster4d.ops.hexplane.layout import HexPlaneLayout
from orster4d.ops.hexplane.reference import hexplane_sample_reference

__all__ = ["BACKENDS", "hexplane_sample", "hexplane_sample_packed"]

BACKENDS = ("fused", "grid_sample")
_DTYPES = (torch.float32, torch.float64)


def _check_points(points, dtype: torch.dtype, device: torch.device) -> None:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor [N, 4], got {type(points).__name__}")
    if points.dim() != 2 or points.shape[1] != 4:
        raise ValueError(f"points must be [N, 4] (x, y, z, t in [-1, 1]), got shape {tuple(points.shape)}")
    if points.dtype != dtype:
        raise TypeError(f"points must have the planes' dtype {dtype}, got {points.dtype}")
    if points.device != device:
        raise ValueError(f"points are on {points.device} but the planes are on {device}; put both on one device")


def _check_planes(planes: Sequence[torch.Tensor]) -> HexPlaneLayout:
    layout = HexPlaneLayout.from_planes(planes)
    dtype, device = planes[0].dtype, planes[0].device
    for i, pl in enumerate(planes):
        if pl.dtype != dtype:
            raise TypeError(f"planes[{i}] has dtype {pl.dtype}, planes[0] has {dtype}; all planes need one dtype")
        if pl.device != device:
            raise ValueError(f"planes[{i}] is on {pl.device}, planes[0] on {device}; all planes need one device")
    return layout


def _fused(points: torch.Tensor, packed: torch.Tensor, layout: HexPlaneLayout) -> torch.Tensor:
    """The fused kernel on checked inputs: ``[N, C * L]``."""
    ensure_loaded(backend_for(points.device))
    return torch.ops.orster4d.hexplane_fwd(points.contiguous(), packed.contiguous(), layout.meta())


def hexplane_sample_packed(points: torch.Tensor, packed: torch.Tensor, layout: HexPlaneLayout) -> torch.Tensor:
    """Fused HexPlane features from the packed channel-last planes.

    Args:
        points: ``[N, 4]`` (x, y, z, t) in [-1, 1] (outside values are clamped to the border);
            float32 or float64, same dtype and device as ``packed``.
        packed: ``[layout.rows, C]`` channel-last planes (see :class:`HexPlaneLayout`).
        layout: the resolutions and channel count of ``packed``.

    Returns:
        ``[N, C * L]`` features; differentiable with respect to ``points`` and ``packed``.
    """
    if not isinstance(layout, HexPlaneLayout):
        raise TypeError(f"layout must be a HexPlaneLayout, got {type(layout).__name__}")
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor [rows, C], got {type(packed).__name__}")
    if packed.dim() != 2 or tuple(packed.shape) != (layout.rows, layout.channels):
        raise ValueError(f"packed must be [{layout.rows}, {layout.channels}] for this layout, got {tuple(packed.shape)}")
    if packed.dtype not in _DTYPES:
        raise TypeError(f"the fused kernel supports float32 and float64 planes, got {packed.dtype}")
    _check_points(points, packed.dtype, packed.device)
    return _fused(points, packed, layout)


def hexplane_sample(points: torch.Tensor, planes: Sequence[torch.Tensor], backend: str = "fused") -> torch.Tensor:
    """Multi-resolution HexPlane features of 4D points.

    For each level: bilinear samples (align_corners=True, border clamping) of the six planes
    xy, xz, yz, xt, yt, zt, multiplied elementwise; the levels are concatenated.

    Args:
        points: ``[N, 4]`` (x, y, z, t), each in [-1, 1]; same dtype and device as the planes.
        planes: ``6 * L`` tensors ``[C, H, W]``, level-major, ``[xy, xz, yz, xt, yt, zt]`` per level;
            the plane of axis pair (a, b) is ``[C, res[b], res[a]]`` (4DGS ``grid_sample`` layout).
        backend: ``"fused"`` (C++/CUDA kernel for the tensors' device; the planes are packed
            channel-last on every call, see :class:`~orster4d.recon.hexplane_field.HexPlaneField` to keep them
            packed) or ``"grid_sample"`` (the reference composition of ``grid_sample`` calls).

    Returns:
        ``[N, C * L]``, differentiable with respect to ``points`` and every plane.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    layout = _check_planes(planes)
    _check_points(points, planes[0].dtype, planes[0].device)
    if backend == "grid_sample":
        return hexplane_sample_reference(points, planes)
    if planes[0].dtype not in _DTYPES:
        raise TypeError(f"the fused kernel supports float32 and float64 planes, got {planes[0].dtype}")
    return _fused(points, layout.pack(planes), layout)
