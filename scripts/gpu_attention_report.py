#!/usr/bin/env python3
"""GPU report of the Orster attention: speed, memory and correctness at the benchmark shapes.

Writes a JSON file (default ``benchmarks/results/attention_<gpu-name>.json``) with the GPU name,
library versions and, per shape and mode: milliseconds forward and forward+backward for each
method (ours, eager formula, FlexAttention, SDPA flash on plain attention), TFLOP/s counting each
method's own matmul FLOPs, peak extra memory of forward+backward, and the error of ours in
bfloat16 and float32 against a float64 evaluation (output and every gradient, relative to the
largest reference magnitude).

Usage: python scripts/gpu_attention_report.py [--out PATH] [--cases a,b] [--modes density,pairwise]
       [--methods ours,eager,flex,sdpa] [--no-check] [--budget-s SECONDS]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from attention_cases import CASES, METHODS, RUNNERS, eager_bytes, make_inputs  # noqa: E402
from gpu_timing import peak_extra_mb  # noqa: E402
from orster4d.ops.attention import orster_attention  # noqa: E402


def _grads_of(inp, params):
    return [t for t in inp.values()] + list(params.parameters())


def time_method(fn, inp, params, mode, backward: bool):
    import triton.testing as tt
    leaves = _grads_of(inp, params)
    out = fn(inp, params, mode)
    dout = torch.randn_like(out)

    def step():
        o = fn(inp, params, mode)
        if backward:
            o.backward(dout)

    if backward:
        return tt.do_bench(step, grad_to_none=leaves, warmup=25, rep=100)
    with torch.no_grad():
        return tt.do_bench(step, warmup=25, rep=100)


def peak_extra_mb_fwd_bwd(fn, inp, params, mode) -> float:
    """Peak extra GPU memory (MiB) of one forward+backward, gradients included (cleared before and after)."""
    for t in _grads_of(inp, params):
        t.grad = None

    def fwd_bwd():
        o = fn(inp, params, mode)
        o.backward(torch.ones_like(o))

    peak = peak_extra_mb(fwd_bwd)
    for t in _grads_of(inp, params):
        t.grad = None
    return peak


def check_correctness(case, mode, dtype):
    """Errors of ours (dtype) against the float64 eager evaluation of the same inputs: output and
    gradients of every input and of the four per-head scalars, each relative to the largest
    reference entry."""
    inp, params = make_inputs(case, mode, dtype, seed=1)
    scal = tuple(t.detach().clone().requires_grad_() for t in params())
    ref_inp = {k: v.detach().double().requires_grad_() for k, v in inp.items()}
    ref_scal = tuple(t.detach().double().requires_grad_() for t in scal)

    def run(i, p, backend):
        return orster_attention(i["q"], i["k"], i["v"], s_k=i["s_k"], u_k=i["u_k"], s_q=i.get("s_q"),
                                u_q=i.get("u_q"), params=p, mode=mode, backend=backend)

    out = run(inp, scal, "triton")
    dout = torch.randn(out.shape, device="cuda", dtype=torch.float64)
    out.backward(dout.to(out.dtype))
    ref = run(ref_inp, ref_scal, "eager")
    ref.backward(dout)

    def rel(x, r):
        return ((x.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()

    res = {"out": rel(out, ref)}
    for name in inp:
        res["d" + name] = rel(inp[name].grad, ref_inp[name].grad)
    for name, p, pr in zip(("sigma_s", "sigma_t", "sigma_st", "alpha"), scal, ref_scal):
        res["d" + name] = rel(p.grad, pr.grad)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default=",".join(c.name for c in CASES))
    ap.add_argument("--modes", default="pairwise,density")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cases after this")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_attention_report: no CUDA device; nothing to report", file=sys.stderr)
        return 1
    import triton
    t_start = time.time()
    gpu = torch.cuda.get_device_name()
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "attention_" + gpu.replace(" ", "_").replace("/", "_") + ".json")
    report = dict(gpu=gpu, torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                  python=platform.python_version(), dtype_timed="bfloat16",
                  notes=("ms from triton.testing.do_bench; TFLOP/s count each method's own matmul FLOPs "
                         "(sdpa: plain attention, no kernel term); peak_extra_MB = peak allocated during "
                         "forward+backward minus allocated before (includes the gradients); errors are "
                         "max|ours - ref| / max|ref| against float64"),
                  cases=[])
    want = set(args.cases.split(","))
    methods = args.methods.split(",")
    for case in CASES:
        if case.name not in want:
            continue
        for mode in args.modes.split(","):
            if time.time() - t_start > args.budget_s:
                print(f"budget reached, skipping {case.name}/{mode}", flush=True)
                continue
            entry = dict(case=case.name, mode=mode, shape=dict(B=case.B, H=case.H, Nq=case.Nq, Nk=case.Nk,
                                                               D=case.D, Dk=case.Dk), methods={})
            inp, params = make_inputs(case, mode, torch.bfloat16)
            for m in methods:
                if m == "sdpa" and mode == "density" and "pairwise" in args.modes:
                    continue  # same plain-attention run as in pairwise mode
                r = {}
                if m == "eager" and eager_bytes(case, torch.bfloat16) > 40e9:
                    r["skipped"] = "score matrix too large for device memory"
                else:
                    try:
                        fl = case.flops(mode if m in ("ours", "eager", "flex") else "density")
                        flb = case.flops(mode if m in ("ours", "eager", "flex") else "density", backward=True)
                        r["ms_fwd"] = time_method(RUNNERS[m], inp, params, mode, False)
                        r["ms_fwd_bwd"] = time_method(RUNNERS[m], inp, params, mode, True)
                        r["tflops_fwd"] = fl / r["ms_fwd"] * 1e-9
                        r["tflops_bwd"] = flb / max(r["ms_fwd_bwd"] - r["ms_fwd"], 1e-6) * 1e-9
                        r["peak_extra_MB"] = peak_extra_mb_fwd_bwd(RUNNERS[m], inp, params, mode)
                    except Exception as e:  # noqa: BLE001 - record why a method does not run
                        r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
                        if not isinstance(e, torch.OutOfMemoryError):
                            traceback.print_exc()
                    torch.cuda.empty_cache()
                entry["methods"][m] = r
                print(case.name, mode, m, json.dumps(r), flush=True)
            del inp, params
            torch.cuda.empty_cache()
            if not args.no_check:
                entry["errors"] = {}
                for dt in (torch.bfloat16, torch.float32):
                    try:
                        entry["errors"][str(dt).split(".")[-1]] = check_correctness(case, mode, dt)
                    except Exception as e:  # noqa: BLE001
                        entry["errors"][str(dt).split(".")[-1]] = {"error": f"{type(e).__name__}: {e}"[:300]}
                    torch.cuda.empty_cache()
                print(case.name, mode, "errors", json.dumps(entry["errors"]), flush=True)
            report["cases"].append(entry)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(report, indent=1))
    report["wall_s"] = time.time() - t_start
    out_path.write_text(json.dumps(report, indent=1))
    print("wrote", out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
