"""HexPlane sampling benchmarks: the fused CUDA kernel vs the ``grid_sample`` composition.

    pytest benchmarks/hexplane.py --benchmark-only     # pytest-benchmark
    python -m benchmarks.hexplane --json report.json   # the JSON report [--reps N]

Every case is 6 planes x 2 levels (multires (1, 2)) x 32 channels, time resolution 25, the
4DGS defaults. Methods:

- ``fused``: :class:`orster4d.recon.hexplane_field.HexPlaneField` with the fused CUDA kernel (planes kept
  packed channel-last in the module; gradients land in that one parameter).
- ``fused_list``: :func:`orster4d.ops.hexplane.hexplane_sample` on a list of 12 ``[C, H, W]``
  planes (packs them channel-last on every call; gradients flow back to the list).
- ``grid_sample``: the composition of ``torch.nn.functional.grid_sample`` calls on 12
  contiguous ``[C, H, W]`` plane parameters, as 4D Gaussian Splatting runs it.

Each bench first checks that the method agrees with the composition (forward and every
gradient), then times it. The report holds the error of the fused kernel (float32 and float64)
against the float64 composition on CUDA (output, point and plane gradients, relative to the
largest reference magnitude) and per case (64^3 x 25 and 128^3 x 25, 100k and 1M points) the
median milliseconds of forward and forward+backward of every method, the fused kernels alone,
speed-ups over the composition and the peak extra memory of one forward+backward. One extra case
puts every point at the same time (a 4DGS step at one timestamp), so the time-plane gradient
atomics hit few addresses. Without CUDA the benches skip.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import pytest
import torch

from benchmarks.timing import cuda_median_ms, peak_extra_mb, python_version, report_parser, write_json
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



# ------------------------------------------------------------------ pytest-benchmark
_INPUTS = {}


def _inputs(case):
    if case not in _INPUTS:
        _INPUTS.clear()
        torch.cuda.empty_cache()
        _INPUTS[case] = Inputs(case)
    return _INPUTS[case]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the HexPlane benchmark needs a CUDA device")
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd_bwd"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hexplane(benchmark, case, method, backward):
    inp = _inputs(case)
    ref = inp.step("grid_sample", backward=False)
    out = inp.step(method, backward=False)
    assert max_rel_err(out, ref) < 1e-5
    if backward and method != "grid_sample":
        for a, b in zip(inp.grads(method), inp.grads("grid_sample")):
            assert max_rel_err(a, b) < 1e-4

    def run():
        inp.step(method, backward)
        torch.cuda.synchronize()

    benchmark.group = f"{case.name} {'fwd+bwd' if backward else 'fwd'}"
    benchmark.pedantic(run, warmup_rounds=3, rounds=20, iterations=1)


# ------------------------------------------------------------------ JSON report
def correctness(case: Case) -> dict:
    ref = Inputs(case, dtype=torch.float64)
    out_ref = ref.step("grid_sample", backward=False)
    g_ref = ref.grads("grid_sample")
    keep = off_texel_edges(ref.points, case)
    result = {"points_off_texel_edges": int(keep.sum())}
    for dtype in (torch.float64, torch.float32):
        inp = Inputs(case, dtype=dtype)
        for method in ("fused", "fused_list"):
            out = inp.step(method, backward=False)
            g = inp.grads(method)
            result[f"{method}_{str(dtype).split('.')[-1]}"] = {
                "forward": max_rel_err(out, out_ref),
                "grad_points": max_rel_err(g[0], g_ref[0]),
                "grad_points_off_texel_edges": max_rel_err(g[0][keep], g_ref[0][keep]),
                "grad_planes": max(max_rel_err(a, b) for a, b in zip(g[1:], g_ref[1:])),
                "finite": bool(torch.isfinite(out).all()),
            }
        del inp
    del ref
    torch.cuda.empty_cache()
    return result


def timings(case: Case, reps: int) -> dict:
    inp = Inputs(case)
    res = {}
    for method in METHODS:
        res[method] = {
            "fwd_ms": cuda_median_ms(lambda: inp.step(method, False), iters=reps),
            "fwd_bwd_ms": cuda_median_ms(lambda: inp.step(method, True), iters=reps),
            "peak_extra_mb_fwd_bwd": peak_extra_mb(lambda: inp.step(method, True)),
        }
    # the two kernels alone (no autograd, no allocation of the plane-gradient buffer counted apart)
    from orster4d.ops.hexplane._ops import extension

    ext = extension("cuda")
    f = inp.field
    pts = inp.points.detach()
    meta = f.layout.meta()
    res["fused_kernels"] = {
        "forward_ms": cuda_median_ms(lambda: ext.hexplane_fwd(pts, f.data.detach(), meta), iters=reps),
        "backward_ms": cuda_median_ms(
            lambda: ext.hexplane_bwd(inp.grad_out, pts, f.data.detach(), meta, True, True), iters=reps),
        "backward_planes_only_ms": cuda_median_ms(
            lambda: ext.hexplane_bwd(inp.grad_out, pts, f.data.detach(), meta, False, True), iters=reps),
        "backward_points_only_ms": cuda_median_ms(
            lambda: ext.hexplane_bwd(inp.grad_out, pts, f.data.detach(), meta, True, False), iters=reps),
    }
    base = res["grid_sample"]
    for method in ("fused", "fused_list"):
        res[method]["speedup_fwd"] = base["fwd_ms"] / res[method]["fwd_ms"]
        res[method]["speedup_fwd_bwd"] = base["fwd_bwd_ms"] / res[method]["fwd_bwd_ms"]
    del inp
    torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    from orster4d.ops.hexplane._ops import extension

    p = report_parser("GPU report of the fused HexPlane sampler: correctness on CUDA, speed and memory")
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.hexplane: needs a CUDA device; torch sees none", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    t0 = time.time()
    extension("cuda")
    report = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": python_version(),
        "build_s": round(time.time() - t0, 1),
        "setup": {"channels": 32, "levels": 2, "multires": [1, 2], "r_t": 25, "dtype": "float32",
                  "points": "uniform in [-1, 1]^4", "timing": f"median of {args.reps} runs, CUDA events"},
        "correctness_vs_float64_grid_sample": {},
        "cases": {},
    }
    for r in (64, 128):
        case = Case(r, 100_000)
        report["correctness_vs_float64_grid_sample"][case.name] = correctness(case)
        print(case.name, json.dumps(report["correctness_vs_float64_grid_sample"][case.name]), flush=True)
    for case in CASES + [Case(128, 1_000_000, shared_t=True)]:
        report["cases"][case.name] = timings(case, args.reps)
        print(case.name, json.dumps(report["cases"][case.name]), flush=True)
        write_json(args.json, report)  # partial results survive a time-out
    write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
