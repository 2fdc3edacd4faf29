"""One full fine-phase construct iteration (deform + render + loss + backward + optimiser step) at
16 timestamps, 512x512, with the fused HexPlane and with the ``grid_sample`` composition, side by side.

    pytest benchmarks/bench_construct.py --benchmark-only

Before timing, the two HexPlane paths are checked to give the same deformation and the same loss
for the same weights. Skips without CUDA.
"""
import pytest
import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.recon import ConstructConfig
from orster4d.recon.fit import _Run
from orster4d.recon.losses import LPIPSTerm
from orster4d.data import make_object, render_multiview

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the construct benchmark needs a CUDA device")

T, SIZE, VIEWS, GAUSSIANS = 16, 512, 4, 50_000
_RUNS = {}


def _run(backend: str, device: str = "cuda", rasterizer=None) -> _Run:
    """A fine-phase run on the walker scene; the same seed gives both backends identical weights."""
    if backend in _RUNS:
        return _RUNS[backend]
    if "data" not in _RUNS:
        traj = OrbitTrajectory(num_frames=T, width=SIZE, height=SIZE, radius=2.6)
        _RUNS["data"] = render_multiview(make_object("walker", 0, 20_000), traj, num_views=VIEWS, test_views=(),
                                         test_every_time=0, device=device, backend=rasterizer)
    ds = _RUNS["data"]
    cfg = ConstructConfig(input="", output="", init_points=GAUSSIANS, progress=False, seed=0,
                          hexplane_backend=backend, rasterizer_backend=rasterizer)
    torch.manual_seed(0)
    run = _Run(cfg, {"train": ds, "all": ds, "static": None, "eval": None, "priors": None}, torch.device(device))
    run.setup_coarse()
    run.setup_fine()
    run.gauss.active_sh_degree = 3
    _RUNS[backend] = run
    return run


def test_paths_agree():
    a, b = _run("fused"), _run("grid_sample")
    times = a.times.cuda()
    with torch.no_grad():
        for x, y in zip(a.field(a.gauss.means, times), b.field(b.gauss.means, times)):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    la = {k: float(v) for k, v in a.step(True, LPIPSTerm(a.cfg.lpips_net, a.cfg.lpips_weights, "cuda")).items()}
    lb = {k: float(v) for k, v in b.step(True, LPIPSTerm(b.cfg.lpips_net, b.cfg.lpips_weights, "cuda")).items()}
    assert abs(la["loss"] - lb["loss"]) < 1e-3 * max(abs(lb["loss"]), 1e-3) or abs(la["l1"] - lb["l1"]) < 1e-4


@pytest.mark.parametrize("backend", ["fused", "grid_sample"])
def test_construct_iteration(benchmark, backend):
    run = _run(backend)
    lp = LPIPSTerm(run.cfg.lpips_net, run.cfg.lpips_weights, "cuda")
    logs = run.step(True, lp)
    assert all(torch.isfinite(v).all() for v in logs.values())

    def step():
        run.step(True, lp)
        torch.cuda.synchronize()

    benchmark.group = f"construct iteration T={T} {SIZE}x{SIZE} N={run.gauss.num_gaussians}"
    benchmark.extra_info.update(gaussians=run.gauss.num_gaussians, lpips=lp.available)
    benchmark.pedantic(step, warmup_rounds=3, rounds=20, iterations=1)
