"""DefaultStrategy: the screen-space statistics against a direct computation on real renders, the
schedule of its hooks, and the fine phase's derived schedule."""
import math

import pytest
import torch

from orster4d.data.scenes import random_scene
from orster4d.ops.rasterize import rasterize_gaussians
from orster4d.recon import ConstructConfig, DefaultStrategy, GaussianModel
from orster4d.recon.fit import fine_strategy


def test_densify_stats(rng_seed):
    """(Moved from the rasterizer tests.) Sums of NDC gradient norms and visible counts over two
    renders match a float64 computation from the renders' own gradients and radii."""
    s = random_scene(70, 2, 40, 30, batch=(3,), generator=torch.Generator().manual_seed(rng_seed))
    means = s.means.clone().requires_grad_()
    state = DefaultStrategy.initialize_state(70, 1.0)
    expected_sum = torch.zeros(70, dtype=torch.float64)
    expected_count = torch.zeros(70, dtype=torch.int64)
    strategy = DefaultStrategy()
    for _ in range(2):
        out = rasterize_gaussians(means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks, s.width,
                                  s.height)
        info = {"means2d": out.means2d, "radii": out.radii, "width": s.width, "height": s.height}
        strategy.step_pre_backward(None, None, state, 1, info)
        (out.rgb * torch.randn_like(out.rgb)).sum().backward()
        DefaultStrategy.update_state(state, info)
        g = out.means2d.grad.double() * torch.tensor([s.width / 2, s.height / 2], dtype=torch.float64)
        vis = out.radii > 0
        expected_sum += torch.where(vis, g.norm(dim=-1), 0.0).sum((0, 1))
        expected_count += vis.sum((0, 1))
    assert state["count"].dtype == torch.int32 and torch.equal(state["count"].long(), expected_count)
    assert expected_sum.max() > 0
    torch.testing.assert_close(state["grad_norm_sum"].double(), expected_sum, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(DefaultStrategy.mean_grad(state).double(), expected_sum / expected_count.clamp(min=1),
                               rtol=1e-5, atol=1e-7)
    DefaultStrategy.reset_state(state, 70)
    assert state["count"].sum() == 0 and state["grad_norm_sum"].sum() == 0
    with pytest.raises(ValueError, match="retain_grad"):
        out = rasterize_gaussians(s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks, s.width,
                                  s.height)
        DefaultStrategy.update_state(state, {"means2d": out.means2d, "radii": out.radii, "width": s.width,
                                             "height": s.height})


def _fake_render(n, grads, radii):
    """An ``info`` whose ``means2d [1, 1, n, 2]`` has gradient ``grads`` (px) after backward."""
    m2d = torch.zeros(1, 1, n, 2, requires_grad=True)
    info = {"means2d": m2d, "radii": radii.view(1, 1, n), "width": 20, "height": 10}
    return info, (m2d * grads.view(1, 1, n, 2)).sum()


def test_hooks_densify_and_reset_on_schedule(rng_seed):
    n = 24
    g = GaussianModel.from_points(torch.randn(n, 3), torch.rand(n, 3), max_sh_degree=0)
    with torch.no_grad():
        g.logit_opacities.fill_(3.0)
        g.log_scales.fill_(math.log(1e-3))  # all small: high-gradient ones are cloned
    opt = g.make_optimizer()
    st = DefaultStrategy(start=2, stop=7, interval=2, opacity_reset_interval=3, grad_threshold=0.1)
    state = st.initialize_state(n, 1.0)
    hot = torch.rand(n) < 0.5
    grads = torch.where(hot[:, None], torch.full((n, 2), 0.05), torch.zeros(n, 2))  # NDC 0.5 / 0.25
    for step in range(1, 8):
        before = g.num_gaussians
        info, loss = _fake_render(g.num_gaussians, grads if step <= 2 else torch.zeros(g.num_gaussians, 2),
                                  torch.ones(g.num_gaussians, dtype=torch.int32))
        st.step_pre_backward(g, opt, state, step, info)
        loss.backward()
        st.step_post_backward(g, opt, state, step, info)
        if step == 2:  # first densification step: every hot Gaussian cloned, statistics restarted
            assert g.num_gaussians == before + int(hot.sum())
            assert state["count"].shape == (g.num_gaussians,) and int(state["count"].sum()) == 0
        else:  # later densification steps (4, 6): no gradient since, nothing to clone; others: no step
            assert g.num_gaussians == before
        if step == 3:  # opacity reset (3 < stop)
            assert float(g.opacities.detach().max()) <= 0.01 + 1e-6
        if step < 3:
            assert float(g.opacities.detach().min()) > 0.9


def test_fine_phase_schedule():
    cfg = ConstructConfig(input="", output="", fine_iters=1000)
    fs = fine_strategy(cfg)
    assert fs.stop == 600 and fs.start == 500 and not fs.opacity_reset
    assert fs.opacity_reset_interval == cfg.densify.opacity_reset_interval  # big-screen pruning unchanged
    cfg.densify_fine = False
    fs = fine_strategy(cfg)
    assert not any(fs.start <= s < fs.stop for s in range(1, 1001))


def test_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="interval"):
        DefaultStrategy(interval=0)
    with pytest.raises(ValueError, match="grad_threshold"):
        DefaultStrategy(grad_threshold=-1.0)
