"""Orster attention benchmarks: ours, the eager formula, FlexAttention and SDPA flash, side by side.

Run with ``pytest benchmarks/bench_attention.py --benchmark-only`` on a CUDA machine. Every timed
method's output is first checked against a float64 evaluation of the same scores on the first
(batch, head) slice, in the same run (SDPA, which computes plain attention, against plain
attention). Forward+backward is timed (bfloat16); ``scripts/gpu_attention_report.py`` writes the
full JSON table (forward and backward separately, TFLOP/s, memory, errors).
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_cases import CASES, METHODS, RUNNERS, eager_bytes, make_inputs  # noqa: E402

from orster4d.ops.attention import orster_attention  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="benchmarks need a CUDA device")


def _reference_slice(inp, params, mode, plain):
    """float64 output of the first (batch, head) for the first 4096 queries."""
    sl = {k: v.detach()[:1, :1, :4096].double() if k in ("q", "s_q", "u_q") else v.detach()[:1, :1].double()
          for k, v in inp.items()}
    if plain:
        return orster_attention(sl["q"], sl["k"], sl["v"], backend="eager")
    scal = tuple(t.detach()[:1].double() for t in params())
    return orster_attention(sl["q"], sl["k"], sl["v"], s_k=sl["s_k"], u_k=sl["u_k"], s_q=sl.get("s_q"),
                            u_q=sl.get("u_q"), params=scal, mode=mode, backend="eager")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["pairwise", "density"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_attention_fwd_bwd(benchmark, case, mode, method):
    if method == "eager" and eager_bytes(case, torch.bfloat16) > 40e9:
        pytest.skip("the eager formula's score matrices do not fit in device memory")
    if method == "sdpa" and mode == "density":
        pytest.skip("SDPA computes plain attention: timed once, under pairwise")
    inp, params = make_inputs(case, mode, torch.bfloat16)
    fn = RUNNERS[method]
    try:
        out = fn(inp, params, mode)
    except torch.OutOfMemoryError:
        pytest.skip(f"{method} runs out of device memory at this shape")
    ref = _reference_slice(inp, params, mode, plain=method == "sdpa")
    got = out.detach()[:1, :1, :4096].double()
    assert (got - ref).abs().max() <= 2e-2 * ref.abs().max(), f"{method} disagrees with the float64 reference"
    dout = torch.randn_like(out)
    del out
    leaves = list(inp.values()) + list(params.parameters())

    def step():
        for t in leaves:
            t.grad = None
        fn(inp, params, mode).backward(dout)
        torch.cuda.synchronize()

    benchmark.extra_info.update(case=case.name, mode=mode, method=method,
                                gflop_fwd=case.flops(mode if method != "sdpa" else "density") / 1e9)
    benchmark.pedantic(step, warmup_rounds=2, rounds=5, iterations=1)
