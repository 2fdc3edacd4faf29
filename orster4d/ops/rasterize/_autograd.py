"""Autograd wrappers of the C++/CUDA rasterizer ops (contract: ``csrc/rasterize/README.md``).

Three Functions, so that the screen-space means are an ordinary autograd intermediate
(``means2d.retain_grad()`` gives the gradient used for densification):

* :class:`Project`   means, quats, scales -> radii, means2d, depths, conics
* :class:`SHColors`  dirs, coeffs -> colors
* :class:`Rasterize` means2d, conics, colors, opacities, depths, backgrounds -> render, render_depth, alpha

All tensors are flattened to the ``[B, ...]`` layout of the contract and are float32, contiguous.
"""
from __future__ import annotations

import math
from types import ModuleType

import torch

from orster4d.build import load_extension

TILE_SIZE = 16


def extension(backend: str) -> ModuleType:
    """The compiled ``orster4d_rasterize_<backend>`` module (built on first use)."""
    return load_extension("rasterize", backend)


def _c(x):
    return None if x is None else x.contiguous()


def _grad_or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g.contiguous()


class Project(torch.autograd.Function):
    """EWA projection (``project_fwd`` / ``project_bwd``); radii carry no gradient."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, near, far, eps2d, ext):
        radii, means2d, depths, conics = ext.project_fwd(
            means, quats, scales, viewmats, Ks, width, height, near, far, eps2d)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii, conics)
        ctx.meta = (width, height, eps2d, ext)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics

    @staticmethod
    def backward(ctx, v_radii, v_means2d, v_depths, v_conics):
        means, quats, scales, viewmats, Ks, radii, conics = ctx.saved_tensors
        width, height, eps2d, ext = ctx.meta
        v_means, v_quats, v_scales = ext.project_bwd(
            means, quats, scales, viewmats, Ks, width, height, eps2d, radii, conics,
            _grad_or_zeros(v_means2d, conics[..., :2]), _grad_or_zeros(v_depths, radii.float()),
            _grad_or_zeros(v_conics, conics))
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None, None


class SHColors(torch.autograd.Function):
    """``colors = max(SH(dirs / |dirs|) + 0.5, 0)`` (``sh_fwd`` / ``sh_bwd``)."""

    @staticmethod
    def forward(ctx, degree, dirs, coeffs, radii, ext):
        colors = ext.sh_fwd(degree, dirs, coeffs, radii)
        ctx.save_for_backward(dirs, coeffs, radii)
        ctx.meta = (degree, ext)
        return colors

    @staticmethod
    def backward(ctx, v_colors):
        dirs, coeffs, radii = ctx.saved_tensors
        degree, ext = ctx.meta
        v_coeffs, v_dirs = ext.sh_bwd(degree, dirs, coeffs, radii, v_colors.contiguous())
        return None, v_dirs, v_coeffs, None, None


class Rasterize(torch.autograd.Function):
    """Tile intersection + sort, then front-to-back compositing (``rasterize_fwd`` / ``rasterize_bwd``)."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, backgrounds, radii, width, height, ext,
                after_intersect=None):
        """``after_intersect``: an optional callable run once the tile intersection has returned, which
        synchronises with the device (it reads the intersection count); the entry point reads its
        input-finiteness flags there, so that reading them adds no wait of its own."""
        tile_w = math.ceil(width / TILE_SIZE)
        tile_h = math.ceil(height / TILE_SIZE)
        offsets, flatten_ids = ext.intersect_tiles(means2d, radii, depths, TILE_SIZE, tile_w, tile_h, conics,
                                                   opacities)
        if after_intersect is not None:
            after_intersect()
        render, render_depth, alpha, last_ids = ext.rasterize_fwd(
            means2d, conics, colors, opacities, depths, backgrounds, width, height, TILE_SIZE, offsets, flatten_ids)
        ctx.save_for_backward(means2d, conics, colors, opacities, depths, backgrounds, offsets, flatten_ids,
                              render, render_depth, alpha, last_ids)
        ctx.meta = (width, height, ext)
        return render, render_depth, alpha

    @staticmethod
    def backward(ctx, v_render, v_render_depth, v_alpha):
        (means2d, conics, colors, opacities, depths, backgrounds, offsets, flatten_ids, render, render_depth,
         alpha, last_ids) = ctx.saved_tensors
        width, height, ext = ctx.meta
        v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg = ext.rasterize_bwd(
            means2d, conics, colors, opacities, depths, backgrounds, width, height, TILE_SIZE, offsets, flatten_ids,
            render, render_depth, alpha, last_ids, _grad_or_zeros(v_render, render), _c(v_render_depth), _c(v_alpha))
        if backgrounds is None or not ctx.needs_input_grad[5]:
            v_bg = None
        return v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg, None, None, None, None, None
