"""HexPlane sampling: fused CUDA kernel vs the ``grid_sample`` composition (pytest-benchmark).

    pytest benchmarks/bench_hexplane.py --benchmark-only

Each case first checks that the method agrees with the composition (forward and every
gradient), then times it. Skips without CUDA.
"""
import pytest
import torch

from hexplane_cases import CASES, METHODS, Inputs, max_rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the HexPlane benchmark needs a CUDA device")

_INPUTS = {}


def _inputs(case):
    if case not in _INPUTS:
        _INPUTS.clear()
        torch.cuda.empty_cache()
        _INPUTS[case] = Inputs(case)
    return _INPUTS[case]


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
