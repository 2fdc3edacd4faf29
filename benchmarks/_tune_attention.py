"""Tile-size sweep for the Orster attention kernels (GPU; development tool).

    python -m benchmarks._tune_attention BUDGET_S OUT.json
"""
import json
import sys
import time

import torch
import triton.testing as tt

import orster4d.ops.attention as A
from benchmarks.attention import CASES, make_inputs, run_ours

base = A._tiling
FWD = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 4, 4), (64, 128, 4, 3)]
BWD = [(32, 64, 4, 3), (32, 128, 4, 3), (64, 128, 8, 3), (64, 64, 4, 3), (32, 128, 8, 2)]
DQ = [(64, 32, 4, 3), (128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 2)]
PK = [(64, 4, 2), (64, 4, 1), (128, 8, 2), (32, 2, 2), (128, 4, 2)]


def bench(case, mode, bwd):
    inp, params = make_inputs(case, mode, torch.bfloat16)
    leaves = list(inp.values()) + list(params.parameters())
    o = run_ours(inp, params, mode)
    do = torch.randn_like(o)
    if not bwd:
        with torch.no_grad():
            return tt.do_bench(lambda: run_ours(inp, params, mode), warmup=10, rep=40)
    return tt.do_bench(lambda: run_ours(inp, params, mode).backward(do), grad_to_none=leaves, warmup=10, rep=40)


def main():
    t0 = time.time()
    res = {}
    cases = {c.name: c for c in CASES}
    for cname, mode in [("spatial_4096", "pairwise"), ("joint_16384", "density"), ("cross_1M_4096", "density"),
                        ("spatial_1024", "pairwise")]:
        c = cases[cname]
        for f in FWD:
            A._tiling = lambda nq, nk, bh, hf, wd, isz=2, f=f: dict(packed=False, G=1, fwd=f, bwd=(32, 64, 4, 3), dq=(64, 32, 4, 3))
            try:
                res[f"{cname}/{mode}/fwd{f}"] = bench(c, mode, False)
            except Exception as e:
                res[f"{cname}/{mode}/fwd{f}"] = str(e)[:100]
            print(f"{cname}/{mode}/fwd{f}", res[f"{cname}/{mode}/fwd{f}"], flush=True)
        for b, d in zip(BWD, DQ):
            A._tiling = lambda nq, nk, bh, hf, wd, isz=2, b=b, d=d: dict(packed=False, G=1, fwd=(128, 64, 4, 3), bwd=b, dq=d)
            try:
                res[f"{cname}/{mode}/bwd{b}{d}"] = bench(c, mode, True)
            except Exception as e:
                res[f"{cname}/{mode}/bwd{b}{d}"] = str(e)[:100]
            print(f"{cname}/{mode}/fwdbwd{b}{d}", res[f"{cname}/{mode}/bwd{b}{d}"], flush=True)
        if time.time() - t0 > float(sys.argv[1]) / 2:
            break
    for cname in ["temporal_16", "temporal_24"]:
        c = cases[cname]
        for blk, nw, ns in PK:
            def til(nq, nk, bh, hf, wd, isz=2, blk=blk, nw=nw, ns=ns):
                g = max(1, min(blk // nq, blk // nk, bh))
                return dict(packed=True, G=g, fwd=(blk, blk, nw, ns), bwd=(blk, blk, nw, ns))
            A._tiling = til
            for bwd in (False, True):
                k = f"{cname}/pairwise/pk{blk},{nw},{ns}/{'fb' if bwd else 'f'}"
                try:
                    res[k] = bench(c, "pairwise", bwd)
                except Exception as e:
                    res[k] = str(e)[:100]
                print(k, res[k], flush=True)
        if time.time() - t0 > float(sys.argv[1]):
            break
    json.dump(res, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
