"""Procedural random Gaussian scenes and orbit cameras, for demos, tests and benchmarks.

The standard benchmark scene: means uniform in ``[-1, 1]^3``, log-scales ``normal(log_scale_mean, 0.3)``,
random unit quaternions, opacities ``sigmoid(normal)``, RGB colours uniform in [0, 1] (or SH
coefficients), cameras ``radius`` units from the origin looking at it with a ``fov_deg`` field of view.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["GaussianScene", "random_scene", "look_at", "orbit_cameras"]


@dataclass
class GaussianScene:
    """Inputs of :func:`orster4d.ops.rasterize.rasterize_gaussians` (leading batch dims ``...``)."""

    means: torch.Tensor  # [..., N, 3]
    quats: torch.Tensor  # [..., N, 4]
    scales: torch.Tensor  # [..., N, 3]
    opacities: torch.Tensor  # [..., N]
    colors: torch.Tensor  # [..., N, 3] or [..., N, K, 3]
    viewmats: torch.Tensor  # [..., C, 4, 4]
    Ks: torch.Tensor  # [..., C, 3, 3]
    width: int
    height: int
    sh_degree: Optional[int] = None


def look_at(eye: torch.Tensor, target: torch.Tensor, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """World-to-camera matrices ``[..., 4, 4]`` (OpenCV: +z towards target, +y down) from eyes ``[..., 3]``."""
    up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(z, up_t, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-2)
    t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    view = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    view[..., :3, :3] = R
    view[..., :3, 3] = t
    view[..., 3, 3] = 1
    return view


def orbit_cameras(num: int, width: int, height: int, radius: float = 4.0, fov_deg: float = 50.0,
                  elevation_deg: float = 20.0, azimuth0_deg: float = 0.0, device=None, dtype=torch.float32):
    """``num`` cameras evenly spaced in azimuth around the origin: viewmats ``[num, 4, 4]``, Ks ``[num, 3, 3]``.

    ``fov_deg`` is the horizontal field of view; pixels are square.
    """
    az = torch.deg2rad(torch.tensor(azimuth0_deg, dtype=torch.float64) + 360.0 * torch.arange(num, dtype=torch.float64) / max(num, 1))
    el = math.radians(elevation_deg)
    eye = torch.stack([radius * math.cos(el) * torch.cos(az), radius * math.cos(el) * torch.sin(az),
                       torch.full_like(az, radius * math.sin(el))], -1)
    viewmats = look_at(eye, torch.zeros_like(eye))
    f = 0.5 * width / math.tan(0.5 * math.radians(fov_deg))
    K = torch.tensor([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]], dtype=torch.float64)
    Ks = K.expand(num, 3, 3).clone()
    return viewmats.to(device=device, dtype=dtype), Ks.to(device=device, dtype=dtype)


def random_scene(n: int, num_cameras: int = 1, width: int = 64, height: int = 64, *, batch=(),
                 log_scale_mean: float = -4.0, log_scale_std: float = 0.3, sh_degree: Optional[int] = None,
                 radius: float = 4.0, fov_deg: float = 50.0, generator: Optional[torch.Generator] = None,
                 device=None, dtype=torch.float32) -> GaussianScene:
    """A random scene of ``n`` Gaussians seen by ``num_cameras`` orbit cameras.

    ``batch`` adds leading dims: every batch element gets its own jittered copy of the Gaussians
    and its own cameras (rotated in azimuth), as in the 4D case (T deformed copies of a scene).
    """
    batch = tuple(batch)
    g = generator

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    means = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    means = means + 0.02 * rnd(*batch, n, 3)
    quats = torch.nn.functional.normalize(rnd(*batch, n, 4), dim=-1)
    scales = torch.exp(log_scale_mean + log_scale_std * rnd(*batch, n, 3))
    opacities = torch.sigmoid(rnd(*batch, n))
    if sh_degree is None:
        colors = torch.rand(*batch, n, 3, generator=g, dtype=torch.float64)
    else:
        colors = 0.3 * rnd(*batch, n, (sh_degree + 1) ** 2, 3)
    views, Ks = [], []
    count = max(1, math.prod(batch))
    for i in range(count):
        v, k = orbit_cameras(num_cameras, width, height, radius, fov_deg, azimuth0_deg=360.0 * i / count / max(num_cameras, 1),
                             dtype=torch.float64)
        views.append(v)
        Ks.append(k)
    viewmats = torch.stack(views).reshape(*batch, num_cameras, 4, 4)
    Ks = torch.stack(Ks).reshape(*batch, num_cameras, 3, 3)

    def cast(x):
        return x.to(device=device, dtype=dtype)

    return GaussianScene(cast(means.expand(*batch, n, 3)), cast(quats), cast(scales), cast(opacities), cast(colors),
                         cast(viewmats), cast(Ks), width, height, sh_degree)
