"""Rendering a 4D asset (an :class:`~orster4d.io.asset.Asset`, read by :func:`~orster4d.io.asset.read_asset`)
from its per-timestamp Gaussians alone: the deformation field is not needed.

Between two stored timestamps the Gaussians are interpolated linearly (means, log-scales, logit
opacities, SH coefficients, and the quaternions after aligning their signs); a time outside the
stored span is an error (:meth:`~orster4d.io.asset.Asset.check_times`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from orster4d.io.asset import Asset

__all__ = ["gaussians_at", "render_asset"]


def _interpolate(asset: Asset, times: torch.Tensor, names: Sequence[str]) -> Tuple[torch.Tensor, ...]:
    """The stored tensors ``names`` (leading dim T) interpolated to ``times [F]``: each ``[F, ...]``."""
    t = torch.as_tensor(times, dtype=torch.float32).reshape(-1).cpu()
    asset.check_times(t, "the request")
    stored = [getattr(asset, n) for n in names]
    T = asset.num_frames
    if T == 1:
        return tuple(x.expand(t.shape[0], *x.shape[1:]) for x in stored)
    hi = torch.searchsorted(asset.times, t.clamp(float(asset.times[0]), float(asset.times[-1]))).clamp(1, T - 1)
    lo = hi - 1
    w = ((t - asset.times[lo]) / (asset.times[hi] - asset.times[lo])).clamp(0, 1)
    out = []
    for name, x in zip(names, stored):
        a, b = x[lo], x[hi]
        if name == "quats":
            b = torch.where((a * b).sum(-1, keepdim=True) < 0, -b, b)
        wx = w.reshape(-1, *([1] * (x.dim() - 1)))
        out.append(a + wx * (b - a))
    return tuple(out)


def gaussians_at(asset: Asset, times: torch.Tensor):
    """``means [F, N, 3], quats [F, N, 4], log_scales [F, N, 3]`` of ``asset`` at ``times [F]`` (interpolated)."""
    return _interpolate(asset, times, ("means", "quats", "log_scales"))


@torch.no_grad()
def render_asset(asset: Asset, times: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int,
                 height: int, background: Sequence[float] = (1.0, 1.0, 1.0), device=None,
                 backend: Optional[str] = None, chunk: int = 16) -> torch.Tensor:
    """Renders ``asset`` at ``times [F]`` from ``viewmats [F, C, 4, 4]`` (or ``[F, 4, 4]``) with ``Ks``
    of the same leading shape: ``[F, C, H, W, 3]`` (or ``[F, H, W, 3]``) in [0, 1], on ``device``
    (CPU by default), ``chunk`` times per rasterizer call."""
    from orster4d.ops.rasterize import rasterize_gaussians

    times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
    single = viewmats.dim() == 3
    vm = viewmats[:, None] if single else viewmats
    K = Ks[:, None] if single else Ks
    F_ = times.shape[0]
    if vm.shape[0] != F_ or vm.shape[-2:] != (4, 4) or K.shape[:2] != vm.shape[:2] or K.shape[-2:] != (3, 3):
        raise ValueError(f"viewmats [F={F_}, C, 4, 4] and Ks [F, C, 3, 3] expected, got "
                         f"{tuple(viewmats.shape)} and {tuple(Ks.shape)}")
    asset.check_times(times, "the request")
    device = torch.device(device) if device is not None else torch.device("cpu")
    names = ("means", "quats", "log_scales", "logit_opacities", "sh")
    outs = []
    for s in range(0, F_, chunk):
        m, q, ls, lo, sh = (x.to(device) for x in _interpolate(asset, times[s:s + chunk], names))
        c = vm.shape[1]
        bg = torch.as_tensor(background, dtype=torch.float32, device=device).expand(m.shape[0], c, 3)
        out = rasterize_gaussians(m, q, ls.exp(), torch.sigmoid(lo), sh, vm[s:s + chunk].float().to(device),
                                  K[s:s + chunk].float().to(device), width, height, sh_degree=asset.sh_degree,
                                  backgrounds=bg, backend=backend)
        outs.append(out.rgb.clamp(0, 1))
    rgb = torch.cat(outs)
    return rgb[:, 0] if single else rgb
