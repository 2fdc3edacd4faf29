"""Rasterizer benchmarks: ours (CUDA) vs gsplat 1.5.3, forward and forward+backward.

    pytest benchmarks/bench_rasterize.py --benchmark-only

Every case runs ours and gsplat side by side in the same session (gsplat skipped with the
reason when it is not importable), records peak GPU memory in ``extra_info`` and checks
correctness (image max abs error, gradient relative L2 error; see rasterize_cases.py for the
tolerances) in the same run.  Skipped without CUDA.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import rasterize_cases as rc  # noqa: E402
from gpu_timing import peak_extra_mb  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none")

_SCENES: dict = {}


def _scene(name):
    if name not in _SCENES:
        _SCENES.clear()
        torch.cuda.empty_cache()
        if name == "4d":
            _SCENES[name] = rc.make_scene_4d()
        else:
            _, n, res = next(c for c in rc.SIZES if c[0] == name)
            _SCENES[name] = rc.make_scene(n, res)
    return _SCENES[name]


def _renderer(impl):
    if impl == "gsplat":
        ok, why = rc.gsplat_available()
        if not ok:
            pytest.skip(why)
        return rc.render_gsplat
    return rc.render_ours


CASES = [c[0] for c in rc.SIZES]


def _bench(benchmark, fn, impl, extra):
    fn()  # warm-up (JIT builds, allocator)
    torch.cuda.synchronize()
    benchmark.extra_info["peak_mem_mb"] = peak_extra_mb(fn)
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info.update(extra)

    def timed():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(timed, rounds=10, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("impl", ["ours", "gsplat"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES)
def test_rasterize(benchmark, case, mode, impl):
    benchmark.group = f"rasterize {case} {mode}"
    scene = _scene(case)
    render = _renderer(impl)
    _bench(benchmark, rc.step_fn(render, scene, backward=mode == "fwd+bwd"), impl, {"case": case, "mode": mode})


@pytest.mark.parametrize("impl", ["ours", "gsplat"])
@pytest.mark.parametrize("launch", ["one launch", "T calls"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_rasterize_4d(benchmark, mode, launch, impl):
    benchmark.group = f"rasterize 4D T={rc.T4D} x {rc.N4D} @{rc.RES4D} {mode}"
    scene = _scene("4d")
    render = _renderer(impl)
    fn = rc.step_fn(render, scene, backward=mode == "fwd+bwd", per_timestep=launch == "T calls")
    _bench(benchmark, fn, impl, {"case": "4d", "mode": mode, "launch": launch})


@pytest.mark.parametrize("case", CASES + ["4d"])
def test_correctness_vs_gsplat(benchmark, case):
    """Not a timing: ours vs gsplat images and gradients on the benchmark scene (recorded in extra_info)."""
    ok, why = rc.gsplat_available()
    if not ok:
        pytest.skip(why)
    scene = _scene(case)
    res = rc.compare_with_gsplat(scene)
    benchmark.extra_info.update(res)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert res["image_ok"], f"image max abs error {res['image_max_abs_err']:.3g} > {rc.IMAGE_ATOL}"
    assert res["grads_ok"], f"gradient relative L2 errors {res['grad_rel_l2_err']} > {rc.GRAD_RTOL}"
