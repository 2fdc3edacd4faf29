"""Plane layouts of a multi-resolution HexPlane.

Two equivalent layouts of the same numbers:

* **planes** (public, 4D Gaussian Splatting's ``grid_sample`` layout): a flat list of
  ``6 * L`` tensors ordered level-major, ``[xy, xz, yz, xt, yt, zt]`` per level. The plane
  of axis pair ``(a, b)`` at level ``l`` has shape ``[C, res_l[b], res_l[a]]``: its width
  runs along the first axis (grid_sample's x) and its height along the second
  (grid_sample's y), time ``t`` is always the second axis.
* **packed** (what the fused kernels read): one channel-last ``[rows, C]`` tensor holding
  every plane one after another; texel ``(iy, ix)`` of a plane is row
  ``offset + iy * W + ix`` and its ``C`` channels are contiguous. ``HexPlaneLayout``
  records the offsets; ``unpack`` returns the planes as ``[C, H, W]`` views of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["PLANE_AXES", "PLANE_NAMES", "SPATIAL_PLANES", "TIME_PLANES", "MAX_LEVELS", "HexPlaneLayout"]

PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
PLANE_NAMES: tuple[str, ...] = ("xy", "xz", "yz", "xt", "yt", "zt")
SPATIAL_PLANES: tuple[int, ...] = (0, 1, 2)
TIME_PLANES: tuple[int, ...] = (3, 4, 5)
MAX_LEVELS = 8  # csrc/include/orster4d/hexplane_math.h: kMaxLevels


@dataclass(frozen=True)
class HexPlaneLayout:
    """Channel count and per-level resolutions ``(res_x, res_y, res_z, res_t)``."""

    channels: int
    resolutions: tuple[tuple[int, int, int, int], ...]

    def __post_init__(self):
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"channels must be a positive int, got {self.channels!r}")
        if not 1 <= len(self.resolutions) <= MAX_LEVELS:
            raise ValueError(f"a HexPlane needs 1 to {MAX_LEVELS} levels, got {len(self.resolutions)}")
        for l, res in enumerate(self.resolutions):
            if len(res) != 4 or any((not isinstance(r, int)) or r < 1 for r in res):
                raise ValueError(f"resolutions[{l}] must be 4 positive ints (x, y, z, t), got {res!r}")

    @property
    def levels(self) -> int:
        return len(self.resolutions)

    @property
    def out_dim(self) -> int:
        """Feature width ``C * L`` of a sample."""
        return self.channels * self.levels

    def plane_shape(self, level: int, plane: int) -> tuple[int, int, int]:
        """``[C, H, W]`` of plane ``plane`` (index into PLANE_AXES) at ``level``."""
        a, b = PLANE_AXES[plane]
        res = self.resolutions[level]
        return (self.channels, res[b], res[a])

    def offsets(self) -> list[list[int]]:
        """First packed row of every plane, ``[L][6]``."""
        out, row = [], 0
        for l in range(self.levels):
            lvl = []
            for p in range(6):
                _, h, w = self.plane_shape(l, p)
                lvl.append(row)
                row += h * w
            out.append(lvl)
        return out

    @property
    def rows(self) -> int:
        """Number of rows (texels over all planes) of the packed tensor."""
        return sum(h * w for l in range(self.levels) for (_, h, w) in (self.plane_shape(l, p) for p in range(6)))

    def meta(self) -> list[int]:
        """Flat metadata for the C++/CUDA kernels: per level res x, y, z, t and six row offsets."""
        out = []
        for res, offs in zip(self.resolutions, self.offsets()):
            out += list(res) + offs
        return out

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """The ``6 * L`` planes ``[C, H, W]`` as (non-contiguous) views of ``packed [rows, C]``.

        One ``torch.split``: its backward writes the planes' gradients into one ``[rows, C]`` tensor
        (slicing each plane instead would give every plane a full-size zero gradient to add up)."""
        shapes = [self.plane_shape(l, p) for l in range(self.levels) for p in range(6)]
        parts = torch.split(packed, [h * w for _, h, w in shapes], dim=0)
        return [part.view(h, w, c).permute(2, 0, 1) for part, (c, h, w) in zip(parts, shapes)]

    def pack(self, planes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[rows, C]`` channel-last copy of the planes (differentiable)."""
        return torch.cat([pl.permute(1, 2, 0).reshape(-1, self.channels) for pl in planes], dim=0)

    @classmethod
    def from_planes(cls, planes: Sequence[torch.Tensor]) -> "HexPlaneLayout":
        """Infer the layout of a plane list, raising ValueError on any inconsistency."""
        if isinstance(planes, torch.Tensor) or not isinstance(planes, (list, tuple)):
            raise TypeError(f"planes must be a list of 6*L tensors [C, H, W], got {type(planes).__name__}")
        if len(planes) == 0 or len(planes) % 6 != 0:
            raise ValueError(f"planes must hold 6 tensors per level (xy, xz, yz, xt, yt, zt), got {len(planes)}")
        for i, pl in enumerate(planes):
            if not isinstance(pl, torch.Tensor):
                raise TypeError(f"planes[{i}] must be a torch.Tensor, got {type(pl).__name__}")
            if pl.dim() != 3:
                raise ValueError(f"planes[{i}] must be [C, H, W], got shape {tuple(pl.shape)}")
        channels = planes[0].shape[0]
        resolutions = []
        for l in range(len(planes) // 6):
            res: list[int | None] = [None] * 4
            for p, (a, b) in enumerate(PLANE_AXES):
                i = 6 * l + p
                c, h, w = planes[i].shape
                if c != channels:
                    raise ValueError(f"planes[{i}] ({PLANE_NAMES[p]}, level {l}) has {c} channels, planes[0] has {channels}")
                for axis, size in ((a, w), (b, h)):
                    if res[axis] is None:
                        res[axis] = size
                    elif res[axis] != size:
                        raise ValueError(
                            f"planes[{i}] ({PLANE_NAMES[p]}, level {l}) has shape {tuple(planes[i].shape)}: its "
                            f"{'xyzt'[axis]} resolution {size} differs from {res[axis]} in another plane of the level"
                        )
            resolutions.append(tuple(int(r) for r in res))
        return cls(channels=int(channels), resolutions=tuple(resolutions))
