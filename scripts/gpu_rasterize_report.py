#!/usr/bin/env python3
"""GPU report of the CUDA rasterizer: build time, correctness, speed and memory vs gsplat 1.5.3.

    python scripts/gpu_rasterize_report.py --out report.json [--sizes 100k@800,1M@1600] [--no-4d]

Writes (and rewrites after every case, so a partial run still leaves a report) a JSON file with
the GPU name, torch / triton / gsplat versions, the JIT build time of ``orster4d_rasterize_cuda``,
CUDA vs the PyTorch reference on a small scene, and per size: median times (ms) of ours and
gsplat, forward and forward+backward, their ratios (ours / gsplat; < 1 is faster), peak GPU memory
(MiB above the inputs) and the image / gradient errors vs gsplat.  Same scenes and checks as
``benchmarks/bench_rasterize.py`` (``benchmarks/rasterize_cases.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)
import rasterize_cases as rc  # noqa: E402
from gpu_timing import cuda_median_ms, peak_extra_mb  # noqa: E402


def _versions():
    v = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    try:
        import triton

        v["triton"] = triton.__version__
    except Exception:
        v["triton"] = None
    try:
        import gsplat

        v["gsplat"] = gsplat.__version__
    except Exception:
        v["gsplat"] = None
    return v


def reference_check(seed: int = 0) -> dict:
    """CUDA vs the float64 PyTorch reference on a small scene (images and every gradient)."""
    from orster4d.ops.rasterize import rasterize_gaussians

    g = torch.Generator(device="cuda").manual_seed(seed)
    B, C, N, res = 2, 2, 300, 64
    m, q, s, o, c = rc.random_gaussians(N, B, generator=g)
    s = s * 8  # larger splats on the small image
    cams = [rc.camera(res, az) for az in (0.0, 40.0)]
    vm = torch.stack([x[0] for x in cams])[None].expand(B, C, 4, 4).contiguous()
    K = torch.stack([x[1] for x in cams])[None].expand(B, C, 3, 3).contiguous()
    bg = torch.rand(B, C, 3, device="cuda", generator=g)
    inputs = [m, q, s, o, c, bg]
    res_out = {}
    outs = {}
    for name, dt, backend in (("cuda", torch.float32, None), ("ref", torch.float64, "reference")):
        xs = [x.detach().to(dt).requires_grad_(True) for x in inputs]
        r = rasterize_gaussians(xs[0], xs[1], xs[2], xs[3], xs[4], vm.to(dt), K.to(dt), res, res, backgrounds=xs[5],
                                backend=backend)
        w = torch.rand(r.rgb.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(5)).to(dt)
        wd = torch.rand(r.alpha.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(6)).to(dt)
        ((r.rgb * w).sum() + (r.alpha * wd).sum() + (r.depth * r.alpha * wd).sum() * 0.1).backward()
        outs[name] = (r.rgb.detach().double(), r.alpha.detach().double(), [x.grad.double() for x in xs])
    a, b = outs["cuda"], outs["ref"]
    res_out["image_max_abs_err"] = (a[0] - b[0]).abs().max().item()
    res_out["alpha_max_abs_err"] = (a[1] - b[1]).abs().max().item()
    res_out["grad_rel_l2_err"] = {
        n: ((x - y).norm() / y.norm().clamp_min(1e-30)).item()
        for n, x, y in zip(["means", "quats", "scales", "opacities", "colors", "backgrounds"], a[2], b[2])
    }
    return res_out


def time_case(scene, per_timestep=False, with_gsplat=True, iters=10) -> dict:
    out = {}
    impls = [("ours", rc.render_ours), ("ours_ops", rc.render_ours_ops)]
    impls += [("gsplat", rc.render_gsplat)] if with_gsplat else []
    for impl, render in impls:
        for mode in ("fwd", "fwd+bwd"):
            fn = rc.step_fn(render, scene, backward=mode == "fwd+bwd", per_timestep=per_timestep)
            ms = cuda_median_ms(fn, warmup=2, iters=iters)
            mem = peak_extra_mb(fn)
            out[f"{impl}_{mode}_ms"] = ms
            out[f"{impl}_{mode}_peak_mem_mb"] = mem
    if with_gsplat:
        for mode in ("fwd", "fwd+bwd"):
            out[f"ratio_{mode}"] = out[f"ours_{mode}_ms"] / out[f"gsplat_{mode}_ms"]
            out[f"mem_ratio_{mode}"] = out[f"ours_{mode}_peak_mem_mb"] / max(out[f"gsplat_{mode}_peak_mem_mb"], 1e-9)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="rasterize_report.json")
    p.add_argument("--sizes", default=",".join(c[0] for c in rc.SIZES))
    p.add_argument("--no-4d", action="store_true")
    p.add_argument("--no-gsplat", action="store_true")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to report", file=sys.stderr)
        return 1
    report = {"gpu": torch.cuda.get_device_name(), "versions": _versions(), "cases": {}, "errors": []}

    def save():
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)

    from orster4d.build import load_extension

    t0 = time.time()
    load_extension("rasterize", "cuda")
    report["jit_build_s"] = time.time() - t0
    print(f"built orster4d_rasterize_cuda in {report['jit_build_s']:.1f} s", flush=True)
    if os.environ.get("ORSTER4D_COLD_BUILD_S"):  # measured by a driver that built before running tests
        report["jit_build_cold_s"] = float(os.environ["ORSTER4D_COLD_BUILD_S"])
    ok, why = rc.gsplat_available()
    with_gsplat = ok and not args.no_gsplat
    report["gsplat"] = why if ok else f"skipped: {why}"
    if with_gsplat:
        t0 = time.time()
        rc.render_gsplat(rc.make_scene(1000, 64))
        torch.cuda.synchronize()
        report["gsplat_first_call_s"] = time.time() - t0
        print(f"gsplat first call (JIT) {report['gsplat_first_call_s']:.1f} s", flush=True)
    save()
    try:
        report["reference_check"] = reference_check()
        print("reference check", report["reference_check"], flush=True)
    except Exception:
        report["errors"].append(traceback.format_exc())
        print(report["errors"][-1], flush=True)
    save()

    wanted = [s for s in args.sizes.split(",") if s]
    for name, n, res in rc.SIZES:
        if name not in wanted:
            continue
        try:
            torch.cuda.empty_cache()
            scene = rc.make_scene(n, res)
            case = {"N": n, "res": res}
            if with_gsplat:
                case["correctness"] = rc.compare_with_gsplat(scene)
            case.update(time_case(scene, with_gsplat=with_gsplat, iters=args.iters))
            report["cases"][name] = case
            print(name, json.dumps(case), flush=True)
        except Exception:
            report["errors"].append(f"{name}: " + traceback.format_exc())
            print(report["errors"][-1], flush=True)
        save()
    if not args.no_4d:
        try:
            torch.cuda.empty_cache()
            scene = rc.make_scene_4d()
            case = {"T": rc.T4D, "N": rc.N4D, "res": rc.RES4D}
            if with_gsplat:
                case["correctness"] = rc.compare_with_gsplat(scene)
            one = time_case(scene, with_gsplat=with_gsplat, iters=args.iters)
            sep = time_case(scene, per_timestep=True, with_gsplat=with_gsplat, iters=max(3, args.iters // 2))
            case["one_launch"], case["T_calls"] = one, sep
            for mode in ("fwd", "fwd+bwd"):
                case[f"ours_speedup_one_launch_vs_T_calls_{mode}"] = sep[f"ours_{mode}_ms"] / one[f"ours_{mode}_ms"]
            report["cases"]["4d"] = case
            print("4d", json.dumps(case), flush=True)
        except Exception:
            report["errors"].append("4d: " + traceback.format_exc())
            print(report["errors"][-1], flush=True)
        save()
    print(f"wrote {args.out}")
    return 0 if not report["errors"] else 2


if __name__ == "__main__":
    sys.exit(main())
