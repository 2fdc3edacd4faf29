#!/usr/bin/env python3
"""GPU report of the fused HexPlane sampler: correctness on CUDA, speed and memory.

Writes JSON (default ``benchmarks/results/hexplane_<gpu-name>.json``) with the GPU name, library
versions, the error of the fused kernel (float32 and float64) against the float64
``grid_sample`` composition on CUDA (output, point and plane gradients, relative to the
largest reference magnitude), and per case (resolution 64^3 x 25 and 128^3 x 25, 100k and 1M
points, 6 planes x 2 levels x 32 channels): median milliseconds of forward and
forward+backward for each method of ``benchmarks/hexplane_cases.py``, the fused kernels alone,
speedups over the composition and the peak extra memory of one forward+backward. One extra
case puts every point at the same time (as in a 4DGS step at one timestamp), which makes the
time-plane gradient atomics hit few addresses.

Usage: python scripts/gpu_hexplane_report.py [--out PATH] [--reps N]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_timing import cuda_median_ms, peak_extra_mb  # noqa: E402
from hexplane_cases import CASES, METHODS, Case, Inputs, max_rel_err, off_texel_edges  # noqa: E402
from orster4d.ops.hexplane._autograd import extension  # noqa: E402


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_hexplane_report: needs a CUDA device; torch sees none", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    out = args.out or ROOT / "benchmarks" / "results" / f"hexplane_{gpu.replace(' ', '_')}.json"
    t0 = time.time()
    extension("cuda")
    report = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
