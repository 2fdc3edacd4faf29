"""The HexPlane CUDA kernels' visiting order: Morton-key bits and points per block, swept.

    python -m benchmarks.hexplane_order --json report.json [--reps N]

The CUDA kernels visit the points sorted by a 4D Morton key of ``ORSTER4D_HEXPLANE_SORT_BITS``
bits per axis (0: input order) and let one block handle ``ORSTER4D_HEXPLANE_BLOCK_ITERS`` groups
of 256 threads (see ``csrc/hexplane/cuda/hexplane_cuda.cu``). This report times
:class:`~orster4d.recon.hexplane_field.HexPlaneField` forward and forward+backward (the call a user
makes, sort included) for every setting on the cases of :mod:`benchmarks.hexplane`, next to the
``grid_sample`` composition in the same run, and checks every setting's output and gradients
against that composition (float32, error relative to the largest reference magnitude).
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch

from benchmarks.hexplane import CASES, Case, Inputs, max_rel_err
from benchmarks.timing import cuda_median_ms, python_version, report_parser, write_json

SETTINGS = [(0, 1), (0, 4), (2, 4), (3, 4), (4, 1), (4, 2), (4, 4), (4, 8), (5, 4), (6, 4), (8, 4)]
ENV_BITS, ENV_ITERS = "ORSTER4D_HEXPLANE_SORT_BITS", "ORSTER4D_HEXPLANE_BLOCK_ITERS"


def _set(bits: int, iters: int) -> None:
    os.environ[ENV_BITS], os.environ[ENV_ITERS] = str(bits), str(iters)


def sweep(case: Case, reps: int) -> dict:
    inp = Inputs(case)
    ref_out = inp.step("grid_sample", backward=False).detach().clone()
    ref_grads = [g.detach().clone() for g in inp.grads("grid_sample")]
    res = {"grid_sample": {"fwd_ms": cuda_median_ms(lambda: inp.step("grid_sample", False), iters=reps),
                           "fwd_bwd_ms": cuda_median_ms(lambda: inp.step("grid_sample", True), iters=reps)}}
    for bits, iters in SETTINGS:
        _set(bits, iters)
        out = inp.step("fused", backward=False)
        grads = inp.grads("fused")
        row = {
            "err_forward": max_rel_err(out, ref_out),
            "err_grad_points": max_rel_err(grads[0], ref_grads[0]),
            "err_grad_planes": max(max_rel_err(a, b) for a, b in zip(grads[1:], ref_grads[1:])),
            "fwd_ms": cuda_median_ms(lambda: inp.step("fused", False), iters=reps),
            "fwd_bwd_ms": cuda_median_ms(lambda: inp.step("fused", True), iters=reps),
        }
        row["speedup_fwd"] = res["grid_sample"]["fwd_ms"] / row["fwd_ms"]
        row["speedup_fwd_bwd"] = res["grid_sample"]["fwd_bwd_ms"] / row["fwd_bwd_ms"]
        res[f"bits{bits}_iters{iters}"] = row
    os.environ.pop(ENV_BITS), os.environ.pop(ENV_ITERS)
    del inp
    torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    from orster4d.ops.hexplane._ops import extension

    p = report_parser("Sweep of the HexPlane CUDA kernels' visiting order (Morton bits, points per block)")
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.hexplane_order: needs a CUDA device; torch sees none", file=sys.stderr)
        return 2
    t0 = time.time()
    extension("cuda")
    report = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": python_version(), "build_s": round(time.time() - t0, 1),
        "setup": {"channels": 32, "levels": 2, "multires": [1, 2], "r_t": 25, "dtype": "float32",
                  "points": "uniform in [-1, 1]^4", "timing": f"median of {args.reps} runs, CUDA events",
                  "settings": [f"bits{b}_iters{i}" for b, i in SETTINGS]},
        "cases": {},
    }
    for case in CASES + [Case(128, 1_000_000, shared_t=True)]:
        report["cases"][case.name] = sweep(case, args.reps)
        print(case.name, json.dumps(report["cases"][case.name]), flush=True)
        write_json(args.json, report)
    write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
