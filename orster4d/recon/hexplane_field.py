"""``HexPlaneField``: a learnable multi-resolution HexPlane (the 4DGS deformation encoder)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from orster4d.ops.hexplane.layout import TIME_PLANES, HexPlaneLayout
from orster4d.ops.hexplane.reference import hexplane_sample_reference
from orster4d.ops.hexplane.regularisers import plane_tv, time_l1, time_smoothness
from orster4d.ops.hexplane.sample import BACKENDS, _check_points, hexplane_sample_packed

__all__ = ["HexPlaneField"]


class HexPlaneField(nn.Module):
    """Six planes per level over (x, y, z, t); ``forward(points [N, 4]) -> [N, C * L]``.

    Level ``l`` has spatial resolution ``resolution[0] * multires[l]`` along x, y and z and
    ``resolution[1]`` along t. The planes are stored once, packed channel-last, in the
    parameter ``data [layout.rows, C]`` (see :mod:`orster4d.ops.hexplane.layout`); ``planes()``
    returns them as ``[C, H, W]`` views in 4DGS's ``grid_sample`` layout.

    Args:
        channels: C, channels per plane (4DGS: 32).
        resolution: ``(R_xyz, R_t)`` base resolutions (4DGS: (64, 25)).
        multires: spatial multipliers per level (4DGS: (1, 2)).
        backend: ``"fused"`` (C++/CUDA kernel) or ``"grid_sample"`` (reference composition);
            may be changed at any time through the attribute of the same name.
        init_range: spatial planes start uniform in this range; time planes start at 1 (4DGS).
    """

    def __init__(
        self,
        channels: int = 32,
        resolution: Sequence[int] = (64, 25),
        multires: Sequence[int] = (1, 2),
        backend: str = "fused",
        init_range: tuple[float, float] = (0.1, 0.5),
    ):
        super().__init__()
        if len(resolution) != 2:
            raise ValueError(f"resolution must be (R_xyz, R_t), got {tuple(resolution)!r}")
        if len(multires) == 0:
            raise ValueError("multires needs at least one level multiplier")
        r_xyz, r_t = (int(r) for r in resolution)
        self.layout = HexPlaneLayout(
            channels=int(channels), resolutions=tuple((r_xyz * int(m),) * 3 + (r_t,) for m in multires)
        )
        self.backend = backend
        self.data = nn.Parameter(torch.empty(self.layout.rows, self.layout.channels))
        with torch.no_grad():
            for i, plane in enumerate(self.planes()):
                if i % 6 in TIME_PLANES:
                    plane.fill_(1.0)
                else:
                    plane.uniform_(*init_range)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {value!r}")
        self._backend = value

    @property
    def out_dim(self) -> int:
        """Feature width C * L."""
        return self.layout.out_dim

    def planes(self) -> list[torch.Tensor]:
        """The ``6 * L`` planes ``[C, H, W]`` (views of ``data``; gradients flow to it)."""
        return self.layout.unpack(self.data)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Features ``[N, C * L]`` of points ``[N, 4]`` (x, y, z, t in [-1, 1]; clamped outside)."""
        _check_points(points, self.data.dtype, self.data.device)
        if self.backend == "grid_sample":
            return hexplane_sample_reference(points, self.planes())
        return hexplane_sample_packed(points, self.data, self.layout)

    def plane_tv(self) -> torch.Tensor:
        return plane_tv(self.planes())

    def time_smoothness(self) -> torch.Tensor:
        return time_smoothness(self.planes())

    def time_l1(self) -> torch.Tensor:
        return time_l1(self.planes())

    def regularisation(self, tv_weight: float, time_smooth_weight: float, time_l1_weight: float) -> torch.Tensor:
        """``tv * plane_tv + ts * time_smoothness + l1 * time_l1`` on one unpacking of the planes; a
        term whose weight is 0 is not computed."""
        planes = self.planes()
        total = self.data.new_zeros(())
        for weight, term in ((tv_weight, plane_tv), (time_smooth_weight, time_smoothness), (time_l1_weight, time_l1)):
            if weight:
                total = total + weight * term(planes)
        return total

    def extra_repr(self) -> str:
        return f"channels={self.layout.channels}, resolutions={self.layout.resolutions}, backend={self.backend!r}"
