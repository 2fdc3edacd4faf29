"""The rasterizer's dispatcher ops: loading, fake kernels and autograd formulas.

The C++ CPU and CUDA kernels are registered with the PyTorch dispatcher as ``torch.ops.orster4d.*``
(schemas in ``csrc/include/orster4d/op_schemas.h``, contract in ``csrc/rasterize/README.md``); one
op name dispatches on the tensors' device. This module adds, once the libraries are loaded:

* a fake (meta) kernel for every op, which gives the output shapes and dtypes without running it,
  so that ``torch.compile`` can trace the ops; the intersection count of ``intersect_tiles`` is
  data dependent and becomes a dynamic size;
* autograd formulas (``torch.library.register_autograd``) for the three differentiable ops, each
  backed by its backward op:

  * ``project_fwd``   means, quats, scales -> radii, means2d, depths, conics (radii carry no gradient)
  * ``sh_fwd``        dirs, coeffs -> colors
  * ``rasterize_fwd`` means2d, conics, colors, opacities, depths, backgrounds -> render, render_depth,
    alpha, last_ids, transmittance (last_ids and transmittance carry no gradient: the transmittance
    ``T_final = 1 - alpha`` per pixel ``[B, C, H, W]`` is kept for the backward, which would lose
    its digits rebuilding it from alpha on nearly opaque pixels)

  ``intersect_tiles`` returns integer tensors only and is called on detached inputs.

The screen-space means stay an ordinary autograd intermediate between ``project_fwd`` and
``rasterize_fwd`` (``means2d.retain_grad()`` gives the gradient used for densification). All
tensors are in the flattened ``[B, ...]`` layout of the contract, float32 and contiguous.
"""
from __future__ import annotations

from typing import Optional

import torch

from orster4d.ops._extensions import kernel_loaders

TILE_SIZE = 16


def _grad(g: Optional[torch.Tensor], like: torch.Tensor, shape: Optional[tuple] = None) -> torch.Tensor:
    """An output gradient as the kernels want it: contiguous; when autograd gave none, zeros of
    ``shape`` (default: ``like``'s) with ``like``'s dtype and device."""
    if g is not None:
        return g.contiguous()
    return like.new_zeros(like.shape if shape is None else shape)


def _maybe(g: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """An optional output gradient (the kernels read None as zeros): contiguous or None."""
    return None if g is None else g.contiguous()


# ------------------------------------------------------------------------------------ fake kernels
def _fake_project_fwd(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d):
    B, N, C = means.shape[0], means.shape[1], viewmats.shape[1]
    return (means.new_empty((B, C, N), dtype=torch.int32), means.new_empty((B, C, N, 2)),
            means.new_empty((B, C, N)), means.new_empty((B, C, N, 3)))


def _fake_project_bwd(means, quats, scales, viewmats, Ks, width, height, eps2d, radii, conics, v_means2d, v_depths,
                      v_conics):
    return torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)


def _fake_sh_fwd(degree, dirs, coeffs, radii=None):
    return dirs.new_empty((*dirs.shape[:3], 3))


def _fake_sh_bwd(degree, dirs, coeffs, radii, v_colors):
    return torch.empty_like(coeffs), torch.empty_like(dirs)


def _fake_intersect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h, conics=None, opacities=None):
    n_isect = torch.library.get_ctx().new_dynamic_size()
    offsets = radii.new_empty((radii.shape[0] * radii.shape[1], tile_h, tile_w))
    return offsets, radii.new_empty((n_isect,))


def _fake_rasterize_fwd(means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size,
                        isect_offsets, flatten_ids):
    B, C = means2d.shape[0], means2d.shape[1]
    return (means2d.new_empty((B, C, height, width, 3)), means2d.new_empty((B, C, height, width, 1)),
            means2d.new_empty((B, C, height, width, 1)), means2d.new_empty((B, C, height, width), dtype=torch.int32),
            means2d.new_empty((B, C, height, width)))


def _fake_rasterize_bwd(means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size,
                        isect_offsets, flatten_ids, render, render_depth, transmittance, last_ids, v_render,
                        v_render_depth=None, v_alpha=None):
    v_bg = means2d.new_empty((0,)) if backgrounds is None else torch.empty_like(backgrounds)
    return (torch.empty_like(means2d), torch.empty_like(conics), torch.empty_like(colors),
            torch.empty_like(opacities), torch.empty_like(depths), v_bg)


# ------------------------------------------------------------------------------ autograd formulas
def _setup_project(ctx, inputs, output):
    means, quats, scales, viewmats, Ks, width, height, _near, _far, eps2d = inputs
    radii, _means2d, _depths, conics = output
    ctx.set_materialize_grads(False)  # _grad makes the zeros a kernel needs
    ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii, conics)
    ctx.meta = (width, height, eps2d)


def _backward_project(ctx, v_radii, v_means2d, v_depths, v_conics):
    means, quats, scales, viewmats, Ks, radii, conics = ctx.saved_tensors
    width, height, eps2d = ctx.meta
    v_means, v_quats, v_scales = torch.ops.orster4d.project_bwd(
        means, quats, scales, viewmats, Ks, width, height, eps2d, radii, conics,
        _grad(v_means2d, conics, (*conics.shape[:-1], 2)), _grad(v_depths, conics, conics.shape[:-1]),
        _grad(v_conics, conics))
    return v_means, v_quats, v_scales, None, None, None, None, None, None, None


def _setup_sh(ctx, inputs, output):
    degree, dirs, coeffs, radii = inputs
    ctx.save_for_backward(dirs, coeffs, radii)
    ctx.degree = degree


def _backward_sh(ctx, v_colors):
    dirs, coeffs, radii = ctx.saved_tensors
    v_coeffs, v_dirs = torch.ops.orster4d.sh_bwd(ctx.degree, dirs, coeffs, radii, _grad(v_colors, dirs))
    return None, v_dirs, v_coeffs, None


def _setup_rasterize(ctx, inputs, output):
    (means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size, offsets,
     flatten_ids) = inputs
    render, render_depth, _alpha, last_ids, transmittance = output
    ctx.mark_non_differentiable(last_ids, transmittance)
    ctx.set_materialize_grads(False)  # an unused depth or alpha output reaches the kernel as None
    ctx.save_for_backward(means2d, conics, colors, opacities, depths, backgrounds, offsets, flatten_ids, render,
                          render_depth, transmittance, last_ids)
    ctx.meta = (width, height, tile_size)


def _backward_rasterize(ctx, v_render, v_render_depth, v_alpha, v_last_ids, v_transmittance):
    (means2d, conics, colors, opacities, depths, backgrounds, offsets, flatten_ids, render, render_depth,
     transmittance, last_ids) = ctx.saved_tensors
    width, height, tile_size = ctx.meta
    v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg = torch.ops.orster4d.rasterize_bwd(
        means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size, offsets, flatten_ids,
        render, render_depth, transmittance, last_ids, _grad(v_render, render), _maybe(v_render_depth),
        _maybe(v_alpha))
    if backgrounds is None or not ctx.needs_input_grad[5]:
        v_bg = None
    return v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg, None, None, None, None, None


def _register_python_parts() -> None:
    """Fake kernels and autograd formulas; once, after the CPU library has defined the ops."""
    for name, fake in (("project_fwd", _fake_project_fwd), ("project_bwd", _fake_project_bwd),
                       ("sh_fwd", _fake_sh_fwd), ("sh_bwd", _fake_sh_bwd),
                       ("intersect_tiles", _fake_intersect_tiles), ("rasterize_fwd", _fake_rasterize_fwd),
                       ("rasterize_bwd", _fake_rasterize_bwd)):
        torch.library.register_fake(f"orster4d::{name}", fake)
    torch.library.register_autograd("orster4d::project_fwd", _backward_project, setup_context=_setup_project)
    torch.library.register_autograd("orster4d::sh_fwd", _backward_sh, setup_context=_setup_sh)
    torch.library.register_autograd("orster4d::rasterize_fwd", _backward_rasterize, setup_context=_setup_rasterize)


extension, ensure_loaded = kernel_loaders("rasterize", _register_python_parts)
