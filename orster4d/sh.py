"""Real spherical-harmonic constants of 3DGS (degrees 0 to 3) and the colour <-> DC conversions.

The rasterizer evaluates ``colour = SH_C0 * c_0 + ... + 0.5`` per Gaussian and view direction (the
CUDA and C++ kernels hold the same constants in ``csrc/include/orster4d/sh_math.h``).
"""
from __future__ import annotations

import torch

__all__ = ["SH_C0", "SH_C1", "SH_C2", "SH_C3", "num_sh_bases", "rgb_to_sh_dc", "sh_dc_to_rgb"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel up to ``degree``: ``(degree + 1)^2``."""
    return (degree + 1) ** 2


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficient ``[..., 3]`` that renders as colour ``rgb [..., 3]`` (any view)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """Colour ``[..., 3]`` of a DC-only SH coefficient ``dc [..., 3]``."""
    return dc * SH_C0 + 0.5
