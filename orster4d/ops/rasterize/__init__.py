"""Tile-based Gaussian rasterizer (3DGS EWA splatting) with CUDA, C++ CPU and PyTorch backends.

One entry point, :func:`rasterize_gaussians`, dispatches on the tensors' device: CUDA tensors
use the CUDA kernels, CPU tensors the C++ CPU kernels (both built just in time, sharing their
per-Gaussian and per-pixel math through ``csrc/include/orster4d/*.h``, and registered with the
PyTorch dispatcher as ``torch.ops.orster4d.*``, so that ``torch.compile`` traces through them);
``backend="reference"`` forces the dense PyTorch reference (:mod:`orster4d.ops.rasterize.reference`),
which also accepts float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from orster4d.ops.rasterize import reference
from orster4d.ops.rasterize._ops import TILE_SIZE, ensure_loaded
from orster4d.ops.rasterize._validate import check_inputs

__all__ = ["rasterize_gaussians", "RenderOutput", "reference"]


@dataclass
class RenderOutput:
    """What :func:`rasterize_gaussians` returns (``...`` = the inputs' leading batch dims).

    Attributes:
        rgb: ``[..., C, H, W, 3]`` composited colour plus ``T_final * background``.
        accumulated_depth: ``[..., C, H, W, 1]`` ``sum w_i z_i`` (world units times opacity).
        transmittance: ``[..., C, H, W, 1]`` final transmittance ``T_final`` (the share of the
            background that shows through); :attr:`alpha` is ``1 - transmittance``.
        radii: ``[..., C, N]`` int32 bounding-circle radius in pixels, 0 where culled.
        means2d: ``[..., C, N, 2]`` projected centres in pixels (0 where culled). An autograd
            intermediate: call ``means2d.retain_grad()`` before ``backward()`` to read the
            screen-space gradient (used by :class:`orster4d.recon.strategy.DensifyStats`).
    """

    rgb: torch.Tensor
    accumulated_depth: torch.Tensor
    transmittance: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor

    @property
    def alpha(self) -> torch.Tensor:
        """``[..., C, H, W, 1]`` accumulated opacity ``1 - T_final``. Computed on access (each access
        makes a new tensor), so a render whose loss never reads it stores no alpha image."""
        return 1.0 - self.transmittance

    @property
    def depth(self) -> torch.Tensor:
        """``[..., C, H, W, 1]`` expected camera-space depth (world units): ``accumulated_depth``
        divided by ``max(alpha, 1e-10)``. Computed on access, like :attr:`alpha`."""
        return self.accumulated_depth / torch.clamp(self.alpha, min=1e-10)


def _flat(x: torch.Tensor, batch: torch.Size, trailing: int) -> torch.Tensor:
    """Broadcast the leading dims of ``x`` to ``batch`` and flatten them: ``[B, *trailing dims]``."""
    tail = x.shape[x.dim() - trailing:]
    if x.shape[: x.dim() - trailing] != batch:
        x = x.expand(*batch, *tail)
    return x.reshape(math.prod(batch), *tail)


def rasterize_gaussians(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                        sh_degree: Optional[int] = None, near: float = 0.01, far: float = 1e10,
                        backgrounds: Optional[torch.Tensor] = None, eps2d: float = 0.3,
                        backend: Optional[str] = None) -> RenderOutput:
    """Render Gaussians into every camera, for every element of the leading batch, in one launch.

    Args:
        means: ``[..., N, 3]`` world-space centres.
        quats: ``[..., N, 4]`` rotations (w, x, y, z), normalised inside.
        scales: ``[..., N, 3]`` activated standard deviations (world units, > 0).
        opacities: ``[..., N]`` activated opacities in (0, 1).
        colors: ``[..., N, 3]`` RGB, or ``[..., N, K, 3]`` SH coefficients when ``sh_degree`` is given
            (``K >= (sh_degree + 1)^2``; the first ``(sh_degree + 1)^2`` are used). SH colours are
            ``max(SH(dir) + 0.5, 0)`` with ``dir`` the unit direction from the camera centre to the mean.
        viewmats: ``[..., C, 4, 4]`` world-to-camera matrices (OpenCV: +z forward, +y down).
        Ks: ``[..., C, 3, 3]`` pinhole intrinsics in pixels.
        width, height: image size in pixels (> 0).
        sh_degree: None (``colors`` are RGB) or 0..3.
        near, far: camera-z clipping planes (world units); Gaussians outside are culled.
        backgrounds: ``[..., C, 3]`` colour behind the Gaussians, or None (black).
        eps2d: low-pass filter added to the diagonal of every 2D covariance (px^2).
        backend: None (by device: "cuda" or "cpu"), "cpu", "cuda", or "reference" (dense PyTorch;
            also accepts float64).

    The leading dims ``...`` (e.g. T timestamps of a deforming scene, each with its own cameras) are
    shared by every input; inputs may omit them or have size 1 there and are broadcast (e.g.
    colours and opacities shared over time). All inputs are float32 on one device (float64 allowed
    with ``backend="reference"``).

    Returns:
        :class:`RenderOutput` with gradients flowing to means, quats, scales, opacities, colors and
        backgrounds (not to viewmats or Ks).
    """
    chk = check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, near, far,
                       backgrounds, eps2d, backend)
    batch, C, N = chk.batch, chk.C, chk.N
    m = _flat(means, batch, 2)
    q = _flat(quats, batch, 2)
    s = _flat(scales, batch, 2)
    o = _flat(opacities, batch, 1)
    vm = _flat(viewmats, batch, 3).detach()
    k = _flat(Ks, batch, 3).detach()
    bg = None if backgrounds is None else _flat(backgrounds, batch, 2)
    if sh_degree is None:
        col = _flat(colors, batch, 2)
    else:
        col = _flat(colors[..., : (sh_degree + 1) ** 2, :], batch, 3)
    B = m.shape[0]

    if chk.backend == "reference":
        radii, means2d, depths, conics = reference.project(m, q, s, vm, k, width, height, near, far, eps2d)
        means2d_out = means2d.reshape(*batch, C, N, 2)  # the user's handle sits on the path to the loss
        means2d = means2d_out.reshape(B, C, N, 2)
        if sh_degree is None:
            rgb_c = col.unsqueeze(1).expand(B, C, N, 3)
        else:
            dirs = m.unsqueeze(1) - reference.camera_centers(vm).unsqueeze(2)
            rgb_c = reference.sh_colors(sh_degree, dirs, col)
        render, render_depth, alpha = reference.composite(means2d, conics, rgb_c, o, depths, radii, width, height, bg)
        transmittance = 1.0 - alpha
        radii = chk.after_finite_check(radii)
    else:
        ensure_loaded(chk.backend)
        ops = torch.ops.orster4d
        m, q, s, o, col = (x.contiguous() for x in (m, q, s, o, col))
        vm, k = vm.contiguous(), k.contiguous()
        bg = None if bg is None else bg.contiguous()
        radii, means2d, depths, conics = ops.project_fwd(m, q, s, vm, k, width, height, float(near), float(far),
                                                         float(eps2d))
        means2d_out = means2d.reshape(*batch, C, N, 2)  # the user's handle sits on the path to the loss
        means2d = means2d_out.reshape(B, C, N, 2)
        if sh_degree is None:
            rgb_c = col.unsqueeze(1).expand(B, C, N, 3).contiguous()
        else:
            dirs = (m.unsqueeze(1) - reference.camera_centers(vm).unsqueeze(2)).contiguous()
            rgb_c = ops.sh_fwd(sh_degree, dirs, col, radii)
        tile_w, tile_h = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
        offsets, flatten_ids = ops.intersect_tiles(means2d.detach(), radii, depths.detach(), TILE_SIZE, tile_w,
                                                   tile_h, conics.detach(), o.detach())
        offsets = chk.after_finite_check(offsets, synchronised=B * C * N > 0)  # the intersection's sync: no wait
        render, render_depth, _, transmittance = ops.rasterize_fwd(means2d, conics, rgb_c, o, depths, bg, width,
                                                                   height, TILE_SIZE, offsets, flatten_ids)
    img = (*batch, C, height, width)
    return RenderOutput(
        rgb=render.reshape(*img, 3),
        accumulated_depth=render_depth.reshape(*img, 1),
        transmittance=transmittance.reshape(*img, 1),
        radii=radii.reshape(*batch, C, N),
        means2d=means2d_out,
    )
