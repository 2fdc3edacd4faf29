"""Procedural random Gaussian scenes seen by orbit cameras, for demos, tests and benchmarks.

The standard benchmark scene: means uniform in ``[-1, 1]^3``, log-scales ``normal(log_scale_mean, 0.3)``,
random unit quaternions, opacities ``sigmoid(normal)``, RGB colours uniform in [0, 1] (or SH
coefficients), cameras ``radius`` units from the origin looking at it with a ``fov_deg`` field of view,
placed by :func:`orster4d.cameras.orbit_cameras` (20 degrees elevation; azimuth 0 on the -y side).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from orster4d.cameras import orbit_cameras

__all__ = ["GaussianScene", "random_scene"]


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
    count = max(1, math.prod(batch))
    # batch element i, camera j: azimuth 360 (i / count + j) / num_cameras
    az = 360.0 * (torch.arange(count, dtype=torch.float64)[:, None] / count
                  + torch.arange(num_cameras, dtype=torch.float64)) / max(num_cameras, 1)
    viewmats, Ks = orbit_cameras(az, 20.0, radius, fov_deg, width, height, dtype=torch.float64)
    viewmats = viewmats.reshape(*batch, num_cameras, 4, 4)
    Ks = Ks.reshape(*batch, num_cameras, 3, 3)

    def cast(x):
        return x.to(device=device, dtype=dtype)

    return GaussianScene(cast(means.expand(*batch, n, 3)), cast(quats), cast(scales), cast(opacities), cast(colors),
                         cast(viewmats), cast(Ks), width, height, sh_degree)
