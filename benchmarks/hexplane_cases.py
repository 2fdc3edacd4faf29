"""Benchmark cases of the HexPlane sampler (GPU), shared by ``bench_hexplane.py`` and
``scripts/gpu_hexplane_report.py``.

Every case is 6 planes x 2 levels (multires (1, 2)) x 32 channels, time resolution 25, the
4DGS defaults. Methods:

- ``fused``: :class:`orster4d.recon.hexplane_field.HexPlaneField` with the fused CUDA kernel (planes kept
  packed channel-last in the module; gradients land in that one parameter).
- ``fused_list``: :func:`orster4d.ops.hexplane.hexplane_sample` on a list of 12 ``[C, H, W]``
  planes (packs them channel-last on every call; gradients flow back to the list).
- ``grid_sample``: the composition of ``torch.nn.functional.grid_sample`` calls on 12
  contiguous ``[C, H, W]`` plane parameters, as 4D Gaussian Splatting runs it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from orster4d.ops.hexplane import hexplane_sample, hexplane_sample_reference
from orster4d.recon.hexplane_field import HexPlaneField

METHODS = ("fused", "fused_list", "grid_sample")
CHANNELS, R_T, MULTIRES = 32, 25, (1, 2)


@dataclass(frozen=True)
class Case:
    r_xyz: int
    n_points: int
    shared_t: bool = False  # every point at one time (a 4DGS step at one timestamp)

    @property
    def name(self) -> str:
        return f"res{self.r_xyz}^3x{R_T}_N{self.n_points // 1000}k" + ("_shared_t" if self.shared_t else "")


CASES = [Case(r, n) for r in (64, 128) for n in (100_000, 1_000_000)]


class Inputs:
    """Points, a field and separate contiguous planes holding the same values."""

    def __init__(self, case: Case, device="cuda", dtype=torch.float32, seed=0):
        g = torch.Generator(device="cpu").manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # same planes for every dtype and device
            torch.manual_seed(seed)
            field = HexPlaneField(CHANNELS, (case.r_xyz, R_T), MULTIRES).double()
        with torch.no_grad():  # time planes away from 1 so that every factor matters
            field.data.add_(torch.randn(field.data.shape, generator=g, dtype=torch.float64) * 0.05)
        self.field = field.to(device=device, dtype=dtype)
        self.planes = [p.detach().contiguous().requires_grad_() for p in self.field.planes()]
        pts = torch.rand(case.n_points, 4, generator=g, dtype=torch.float64) * 2 - 1
        if case.shared_t:
            pts[:, 3] = 0.3
        self.points = pts.to(device=device, dtype=dtype).requires_grad_()
        self.grad_out = torch.randn(case.n_points, CHANNELS * len(MULTIRES), generator=g).to(device=device, dtype=dtype)

    def leaves(self):
        return [self.points, self.field.data, *self.planes]

    def run(self, method: str) -> torch.Tensor:
        if method == "fused":
            return self.field(self.points)
        if method == "fused_list":
            return hexplane_sample(self.points, self.planes, backend="fused")
        if method == "grid_sample":
            return hexplane_sample_reference(self.points, self.planes)
        raise ValueError(f"unknown method {method!r}")

    def step(self, method: str, backward: bool):
        """One forward (no autograd graph) or forward+backward of ``method``."""
        if not backward:
            with torch.no_grad():
                return self.run(method)
        for t in self.leaves():
            t.grad = None
        out = self.run(method)
        out.backward(self.grad_out)
        return out

    def grads(self, method: str) -> list[torch.Tensor]:
        """Point gradient, then the 12 plane gradients as [C, H, W] tensors."""
        self.step(method, backward=True)
        if method == "fused":
            return [self.points.grad, *self.field.layout.unpack(self.field.data.grad)]
        return [self.points.grad, *[p.grad for p in self.planes]]


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (b the reference)."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def off_texel_edges(points: torch.Tensor, case: Case, margin: float = 1e-4) -> torch.Tensor:
    """``[N]`` bool: points at least ``margin`` texels from every texel edge, at every level.

    d(output)/d(point) jumps across a texel edge, so where float32 rounding moves a point into the
    neighbouring cell its point gradient differs from the float64 reference by O(1); the point
    gradient error is also reported over the points this mask keeps.
    """
    keep = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    for m in MULTIRES:
        for axis, r in enumerate((case.r_xyz * m,) * 3 + (R_T,)):
            u = (points[:, axis].detach().double() + 1) / 2 * (r - 1)
            f = u - u.floor()
            keep &= (f >= margin) & (f <= 1 - margin)
    return keep

