"""Gaussians deformed to given times, and rendered: one batched rasterizer call for all times."""
from __future__ import annotations

from typing import Optional

import torch

from orster4d.ops.rasterize import rasterize_gaussians
from orster4d.recon.deformation import DeformationField
from orster4d.recon.gaussians import GaussianModel

__all__ = ["deform", "render", "render_frames"]


def deform(gauss: GaussianModel, field: Optional[DeformationField], times: torch.Tensor):
    """Gaussians at ``times [T]`` (in [0, 1]): ``means [T, N, 3]``, ``quats [T, N, 4]``,
    ``log_scales [T, N, 3]`` (canonical when ``field`` is None, broadcast over T)."""
    T = times.shape[0]
    if field is None:
        return (gauss.means.expand(T, -1, -1), gauss.quats.expand(T, -1, -1), gauss.log_scales.expand(T, -1, -1))
    dp, dq, ds = field(gauss.means, times)
    return gauss.means + dp, gauss.quats + dq, gauss.log_scales + ds


def render(gauss: GaussianModel, field: Optional[DeformationField], times: torch.Tensor, viewmats: torch.Tensor,
           Ks: torch.Tensor, width: int, height: int, background, backend=None):
    """Renders the Gaussians deformed to ``times [T]`` from ``viewmats [T, C, 4, 4]`` with
    intrinsics ``Ks [T, C, 3, 3]`` (px) in one call; returns the rasterizer's ``RenderOutput``
    (``rgb [T, C, H, W, 3]``...). ``background``: 3 numbers in [0, 1], best a ``[3]`` tensor on the
    device already (a list is copied there on every call)."""
    means, quats, log_scales = deform(gauss, field, times)
    T, C = viewmats.shape[:2]
    bg = torch.as_tensor(background, dtype=torch.float32, device=means.device).expand(T, C, 3)
    return rasterize_gaussians(means, quats, log_scales.exp(), gauss.opacities, gauss.sh, viewmats, Ks, width,
                               height, sh_degree=gauss.active_sh_degree, backgrounds=bg, backend=backend)


@torch.no_grad()
def render_frames(gauss, field, times, viewmats, Ks, width, height, background, backend=None, chunk: int = 16):
    """``[F, H, W, 3]`` renders of F frames, frame ``f`` at ``times[f]`` from ``viewmats [F, 4, 4]``,
    ``Ks [F, 3, 3]``; ``chunk`` frames per rasterizer call."""
    outs = []
    for s in range(0, times.shape[0], chunk):
        sl = slice(s, s + chunk)
        out = render(gauss, field, times[sl], viewmats[sl, None], Ks[sl, None], width, height, background, backend)
        outs.append(out.rgb[:, 0].clamp(0, 1))
    return torch.cat(outs, 0)
