"""The rasterizer's dispatcher ops: loading and fake kernels.

The C++ CPU and CUDA kernels are registered with the PyTorch dispatcher as ``torch.ops.orster4d.*``
(schemas in ``csrc/include/orster4d/op_schemas.h``, contract in ``csrc/rasterize/README.md``); one
op name dispatches on the tensors' device. The three differentiable ops carry C++ autograd kernels
(``csrc/rasterize/cpu/autograd.cpp``, built into the CPU library), each backed by its backward op:

* ``project_fwd``   means, quats, scales -> radii, means2d, depths, conics (radii carry no gradient)
* ``sh_fwd``        dirs, coeffs -> colors
* ``rasterize_fwd`` means2d, conics, colors, opacities, depths, backgrounds -> render, render_depth,
  last_ids, transmittance (last_ids carries no gradient; the final transmittance ``T_final`` per
  pixel ``[B, C, H, W]`` does: the entry point's alpha is ``1 - T_final``, and the backward reads
  the stored ``T_final``, which keeps its digits on nearly opaque pixels where ``1 - alpha`` would
  not)

``intersect_tiles`` returns integer tensors only and is called on detached inputs; so is
``nonfinite_flags``, the entry point's one-launch finiteness test of all its inputs (host flags).
This module adds, once the libraries are loaded, a fake (meta) kernel for every op, which gives the
output shapes and dtypes without running it, so that ``torch.compile`` can trace the ops; the
intersection count of ``intersect_tiles`` is data dependent and becomes a dynamic size.

The screen-space means stay an ordinary autograd intermediate between ``project_fwd`` and
``rasterize_fwd`` (``means2d.retain_grad()`` gives the gradient used for densification). All
tensors are in the flattened ``[B, ...]`` layout of the contract, float32 and contiguous.
"""
from __future__ import annotations

import torch

from orster4d.ops._extensions import kernel_loaders

TILE_SIZE = 16


# ------------------------------------------------------------------------------------ fake kernels
def _fake_nonfinite_flags(tensors):
    return torch.empty((len(tensors),), dtype=torch.int32, device="cpu")  # host flags, whatever the device


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
            means2d.new_empty((B, C, height, width), dtype=torch.int32), means2d.new_empty((B, C, height, width)))


def _fake_rasterize_bwd(means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size,
                        isect_offsets, flatten_ids, render, render_depth, transmittance, last_ids, v_render,
                        v_render_depth=None, v_alpha=None):
    v_bg = means2d.new_empty((0,)) if backgrounds is None else torch.empty_like(backgrounds)
    return (torch.empty_like(means2d), torch.empty_like(conics), torch.empty_like(colors),
            torch.empty_like(opacities), torch.empty_like(depths), v_bg)


def _register_python_parts() -> None:
    """Fake kernels; once, after the CPU library has defined the ops (and their autograd kernels)."""
    for name, fake in (("nonfinite_flags", _fake_nonfinite_flags),
                       ("project_fwd", _fake_project_fwd), ("project_bwd", _fake_project_bwd),
                       ("sh_fwd", _fake_sh_fwd), ("sh_bwd", _fake_sh_bwd),
                       ("intersect_tiles", _fake_intersect_tiles), ("rasterize_fwd", _fake_rasterize_fwd),
                       ("rasterize_bwd", _fake_rasterize_bwd)):
        torch.library.register_fake(f"orster4d::{name}", fake)


extension, ensure_loaded = kernel_loaders("rasterize", _register_python_parts)
