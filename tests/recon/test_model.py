"""The 4D Gaussian model pieces: densification / pruning / opacity reset, the deformation field and
its ST-HexPlane attention, the .ply format, metrics and losses."""
import math

import pytest
import torch

from orster4d.recon.deformation import DeformationField, curvature_probe_times, load_priors, st_attention
from orster4d.ops.hexplane import TIME_PLANES
from orster4d.quaternions import quat_to_rotmat
from orster4d.recon.gaussians import GaussianModel
from orster4d.sh import SH_C0, rgb_to_sh_dc
from orster4d.recon.strategy import DefaultStrategy, remove, reset_opacity
from orster4d.io import read_ply, write_gif, write_ply, read_video_frame_count
from orster4d.recon.losses import depth_smoothness
from orster4d.perceptual import lpips_distance, try_load_lpips
from orster4d.metrics import psnr, ssim

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _model(n=40, deg=2):
    g = GaussianModel.from_points(torch.randn(n, 3), torch.rand(n, 3), max_sh_degree=deg)
    with torch.no_grad():
        g.quats.copy_(torch.randn(n, 4))
        g.log_scales.copy_(torch.randn(n, 3) * 0.3 - 2)
        g.logit_opacities.copy_(torch.randn(n))
        g.sh_rest.copy_(torch.randn_like(g.sh_rest) * 0.1)
    return g


def _adam_step(g):
    opt = g.make_optimizer()
    loss = sum((p ** 2).sum() for p in g.parameters())
    loss.backward()
    opt.step()
    return opt


def test_sh_dc_encodes_colour():
    rgb = torch.rand(7, 3)
    torch.testing.assert_close(rgb_to_sh_dc(rgb) * SH_C0 + 0.5, rgb)
    g = GaussianModel.from_points(torch.randn(7, 3), rgb, max_sh_degree=1)
    torch.testing.assert_close(g.sh[:, 0] * SH_C0 + 0.5, rgb)
    assert g.sh.shape == (7, 4, 3)


def test_prune_keeps_parameters_and_optimizer_state_aligned():
    g = _model()
    opt = _adam_step(g)
    before = {n: p.detach().clone() for n, p in g.named_parameters()}
    avg = {n: opt.state[p]["exp_avg"].clone() for n, p in g.named_parameters()}
    mask = torch.rand(g.num_gaussians) < 0.4
    remove(g, opt, mask)
    for n, p in g.named_parameters():
        torch.testing.assert_close(p.detach(), before[n][~mask])
        torch.testing.assert_close(opt.state[p]["exp_avg"], avg[n][~mask])
        assert any(grp["params"][0] is p for grp in opt.param_groups)
    _adam_step(g)  # the optimiser still works on the new tensors


def test_densify_clones_small_splits_large_and_prunes_transparent():
    n = 30
    g = _model(n)
    extent = 2.0
    sch = DefaultStrategy(grad_threshold=0.5, percent_dense=0.05, min_opacity=0.02)
    with torch.no_grad():
        g.log_scales[:10] = math.log(0.01)  # small: cloned when their gradient is high
        g.log_scales[10:20] = math.log(0.5)  # large: split when their gradient is high
        g.log_scales[20:] = math.log(0.01)
        g.logit_opacities.fill_(2.0)
        g.logit_opacities[25:] = -8.0  # transparent: pruned
    grad = torch.zeros(n)
    grad[:5] = 1.0
    grad[10:14] = 1.0
    opt = g.make_optimizer()
    old = g.state()
    counts = sch.densify_and_prune(g, opt, grad, torch.zeros(n, dtype=torch.int32), extent)
    assert counts == {"cloned": 5, "split": 4, "pruned": 5}
    assert g.num_gaussians == n + 5 + 8 - 4 - 5
    # the split children are 1.6x smaller than their parent
    child_scales = g.log_scales.detach()[-8:]
    torch.testing.assert_close(child_scales, old["log_scales"][10:14].repeat(2, 1) - math.log(1.6))
    # clones are exact copies
    torch.testing.assert_close(g.means.detach()[-13:-8], old["means"][:5])
    for p in g.parameters():
        assert opt.state.get(p) is None or opt.state[p]["exp_avg"].shape == p.shape


def test_densify_respects_the_budget():
    g = _model(20)
    sch = DefaultStrategy(grad_threshold=0.0, max_gaussians=25, min_opacity=0.0)
    sch.densify_and_prune(g, None, torch.ones(20), torch.zeros(20, dtype=torch.int32), 1.0)
    assert g.num_gaussians <= 25


def test_reset_opacity_caps_and_clears_state():
    g = _model()
    opt = _adam_step(g)
    reset_opacity(g, opt, 0.01)
    assert float(g.opacities.detach().max()) <= 0.01 + 1e-6
    st = opt.state[g.logit_opacities]
    assert float(st["exp_avg"].abs().max()) == 0.0


def test_state_round_trip():
    g = _model(deg=3)
    g.active_sh_degree = 2
    h = GaussianModel.from_state(g.state())
    assert h.active_sh_degree == 2 and h.max_sh_degree == 3
    for (n, p), (_, q) in zip(g.named_parameters(), h.named_parameters()):
        assert torch.equal(p, q), n


def test_quat_to_rotmat_is_orthonormal():
    R = quat_to_rotmat(torch.randn(10, 4, dtype=torch.float64))
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(10, 3, 3))
    torch.testing.assert_close(torch.det(R), torch.ones(10, dtype=torch.float64))


@pytest.mark.parametrize("deg", [0, 1, 3])
def test_ply_round_trip(tmp_path, deg):
    g = _model(17, deg)
    write_ply(tmp_path / "g.ply", g.means, g.quats, g.log_scales, g.logit_opacities, g.sh)
    back = read_ply(tmp_path / "g.ply")
    torch.testing.assert_close(back["means"], g.means.detach())
    torch.testing.assert_close(back["quats"], g.quats.detach())
    torch.testing.assert_close(back["log_scales"], g.log_scales.detach())
    torch.testing.assert_close(back["logit_opacities"], g.logit_opacities.detach())
    torch.testing.assert_close(back["sh"], g.sh.detach())
    header = (tmp_path / "g.ply").read_bytes().split(b"end_header")[0].decode()
    names = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    k = (deg + 1) ** 2
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(3 * (k - 1))]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    # f_rest is channel-major (all red coefficients first), as the reference 3DGS writer
    if deg > 0:
        import numpy as np

        raw = np.frombuffer((tmp_path / "g.ply").read_bytes().split(b"end_header\n")[1], "<f4").reshape(17, -1)
        torch.testing.assert_close(torch.from_numpy(raw[:, 9:9 + k - 1].copy()), g.sh.detach()[:, 1:, 0])
    with pytest.raises(ValueError, match="sh must have shape"):
        write_ply(tmp_path / "bad.ply", g.means, g.quats, g.log_scales, g.logit_opacities, g.sh[:, :, :2])
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="bad.ply"):
        read_ply(tmp_path / "bad.ply")


def test_st_attention_matches_softmax_formula():
    q = torch.randn(9, 5, dtype=torch.float64)
    k = torch.randn(4, 5, dtype=torch.float64)
    v = torch.randn(4, 3, dtype=torch.float64)
    want = torch.softmax(q @ k.T / math.sqrt(5), -1) @ v
    torch.testing.assert_close(st_attention(q, k, v), want)
    torch.testing.assert_close(st_attention(q.float(), k.float(), v.float(), backend="orster"), want.float(),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="keys must be"):
        st_attention(q, k[:, :4], v)
    with pytest.raises(ValueError, match="backend"):
        st_attention(q, k, v, backend="flash")


def test_deformation_starts_as_identity_and_learns():
    f = DeformationField(AABB, channels=4, resolution=(8, 4), multires=(1,), width=16, backend="grid_sample")
    means = torch.rand(20, 3) * 2 - 1
    # one time in each end cell of the 4-node time axis, so the steps below reach the nodes that
    # t = 0 and t = 1 read
    times = torch.tensor([0.05, 0.3 + 0.4 * float(torch.rand(())), 0.95])
    with torch.no_grad():
        dp, dq, ds = f(means, times)
    assert dp.shape == (3, 20, 3) and dq.shape == (3, 20, 4) and ds.shape == (3, 20, 3)
    assert float(dp.abs().max()) == 0 and float(dq.abs().max()) == 0 and float(ds.abs().max()) == 0
    # steps towards a time-varying target displacement move the output, differently at each time
    target = 0.1 * times[:, None, None]
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)
    for _ in range(3):
        loss = (f(means, times)[0] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(f(means, times)[0].abs().max()) > 0
        # the output depends on time (the time planes are learned)
        d0 = f(means, torch.tensor([0.0]))[0]
        d1 = f(means, torch.tensor([1.0]))[0]
    assert not torch.allclose(d0, d1)


def _three_heads(field):
    """The fused heads' weights as three separate 4DGS heads ``ReLU, Linear, ReLU, Linear`` (float64)."""
    w = field.heads.width
    heads, row = [], 0
    for i, dim in enumerate((3, 4, 3)):
        hidden = torch.nn.Linear(w, w).double()
        out = torch.nn.Linear(w, dim).double()
        with torch.no_grad():
            hidden.weight.copy_(field.heads.hidden.weight[i * w:(i + 1) * w])
            hidden.bias.copy_(field.heads.hidden.bias[i * w:(i + 1) * w])
            out.weight.copy_(field.heads.out.weight[row:row + dim, i * w:(i + 1) * w])
            out.bias.copy_(field.heads.out.bias[row:row + dim])
        heads.append(torch.nn.Sequential(torch.nn.ReLU(), hidden, torch.nn.ReLU(), out))
        row += dim
    return heads


def test_fused_heads_are_three_separate_heads_and_train_only_their_blocks(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    f = DeformationField(AABB, channels=4, resolution=(6, 5), multires=(1,), width=16,
                         backend="grid_sample").double()
    with torch.no_grad():
        for p in f.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    means = torch.rand(9, 3, generator=g, dtype=torch.float64) * 2 - 1
    times = torch.rand(2, generator=g, dtype=torch.float64)
    dp, dq, ds = f(means, times)
    feats = f.feature_out(f.hexplane(f.normalise(means, times)))
    ref = [head(feats).view(2, 9, -1) for head in _three_heads(f)]
    for got, want in zip((dp, dq, ds), ref):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # the blocks off the diagonal of the output layer get no gradient
    (dp.sum() + dq.pow(2).sum() + ds.sin().sum()).backward()
    grad = f.heads.out.weight.grad
    assert float((grad * (1 - f.heads.mask)).abs().max()) == 0
    assert float((grad * f.heads.mask).abs().max()) > 0
    assert f.heads.head_weight("rot").shape == (4, 16)


def test_a_field_saved_with_three_separate_heads_loads_into_the_fused_heads(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    f = DeformationField(AABB, channels=4, resolution=(6, 5), multires=(1,), width=16, backend="grid_sample")
    with torch.no_grad():
        for p in f.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    # the layout fields had before the heads were fused: {pos,rot,scale}_head.{1,3}.{weight,bias}
    old = {k: v.clone() for k, v in f.state_dict().items() if not k.startswith("heads.")}
    for name, head in zip(("pos", "rot", "scale"), _three_heads(f.double())):
        for idx in (1, 3):
            old[f"{name}_head.{idx}.weight"] = head[idx].weight.detach().float()
            old[f"{name}_head.{idx}.bias"] = head[idx].bias.detach().float()
    f = f.float()
    loaded = DeformationField.from_config(dict(f.config))
    loaded.load_state_dict(old)
    means, times = torch.rand(7, 3, generator=g) * 2 - 1, torch.rand(3, generator=g)
    for a, b in zip(loaded(means, times), f(means, times)):
        torch.testing.assert_close(a, b)


def _randomised_field(seed, time_varying=True):
    g = torch.Generator().manual_seed(seed)
    f = DeformationField(AABB, channels=4, resolution=(6, 5), multires=(1,), width=16, backend="grid_sample")
    with torch.no_grad():
        for p in f.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        if not time_varying:
            for i, plane in enumerate(f.hexplane.planes()):
                if i % 6 in TIME_PLANES:
                    plane.fill_(1.0)
    return f.double()


def test_motion_curvature_is_the_second_difference_of_the_offsets(rng_seed):
    f = _randomised_field(rng_seed)
    means = torch.rand(30, 3, dtype=torch.float64) * 2 - 1
    times = 0.2 + 0.6 * torch.rand(4, dtype=torch.float64)
    h = 0.15  # wider than the time planes' node spacing (0.25), so the offsets bend
    got = f.motion_curvature(means, times, h)
    extent = (AABB[1] - AABB[0]).norm().double()
    terms = []
    for t in times:
        (a, b, c) = (torch.cat([dp / extent, dq, ds], -1)[0] for dp, dq, ds in
                     (f(means, (t + d).reshape(1)) for d in (-h, 0.0, h)))
        terms.append((a - 2 * b + c).pow(2).sum(-1))
    assert got.item() > 0
    torch.testing.assert_close(got, torch.stack(terms).mean(), rtol=1e-7, atol=0)
    # no time dependence (time planes constant), no curvature; a fresh field is still
    assert _randomised_field(rng_seed, time_varying=False).motion_curvature(means, times, h).item() < 1e-20
    assert DeformationField(AABB, channels=4, resolution=(6, 5), multires=(1,), width=16,
                            backend="grid_sample").motion_curvature(means.float(), times.float(), h).item() == 0


def test_curvature_probe_times_stay_between_fitted_times(rng_seed):
    fitted = torch.tensor([0.0, 1, 3, 4, 5, 7, 8, 15]) / 15
    times, step = curvature_probe_times(fitted[torch.randperm(8)], 500, torch.Generator().manual_seed(rng_seed))
    assert step == pytest.approx(0.5 / 15)
    assert times.shape == (500,) and (times - step >= 0).all() and (times + step <= 1 + 1e-6).all()
    assert times.min() < 0.1 and times.max() > 0.9  # they cover the span


def test_motion_curvature_bends_unfitted_times_towards_the_curve():
    """Fitted at 6 times of a smooth swing, the field with the curvature prior lands nearer the true
    pose at the two unfitted times than the field without it."""
    means = torch.tensor([[0.2, -0.1, 0.3]])
    fit_t = torch.tensor([0.0, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0])
    gap_t = torch.tensor([0.1, 0.4, 0.7])
    swing = lambda t: 0.4 * torch.stack([torch.sin(3 * t), torch.cos(3 * t) - 1, 0 * t], -1)  # noqa: E731
    errs = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        f = DeformationField(AABB, channels=8, resolution=(4, 21), multires=(1,), width=32, backend="grid_sample")
        opt = torch.optim.Adam(f.parameters(), lr=5e-3)
        for _ in range(600):
            loss = (f(means, fit_t)[0][:, 0] - swing(fit_t)).pow(2).sum(-1).mean()
            if weight:
                loss = loss + weight * f.motion_curvature(means, torch.rand(8) * 0.9 + 0.05, 0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            errs.append((f(means, gap_t)[0][:, 0] - swing(gap_t)).norm(dim=-1).mean().item())
    assert errs[1] < 0.5 * errs[0], errs


def test_st_hexplane_uses_priors_and_saves_them():
    f = DeformationField(AABB, channels=4, resolution=(8, 4), multires=(1,), width=16, backend="grid_sample",
                         prior_dims=(6, 5), attn_dim=8)
    with torch.no_grad():
        f.heads.out.weight.normal_()
    means = torch.rand(10, 3) * 2 - 1
    t = torch.tensor([0.3, 0.7])
    # untrained, the feature layer's prior columns are zero: the output does not depend on the priors
    f.set_priors(torch.randn(7, 6), torch.randn(3, 5))
    untrained = f(means, t)[0]
    f.set_priors(torch.randn(7, 6), torch.randn(3, 5))
    torch.testing.assert_close(f(means, t)[0], untrained)
    assert float(f.feature_out.weight[:, f.hexplane.out_dim:].abs().sum()) == 0
    assert float(f.feature_out.weight[:, :f.hexplane.out_dim].abs().sum()) > 0
    with torch.no_grad():
        f.feature_out.weight.normal_()
    a = f(means, t)[0]
    f.set_priors(torch.randn(7, 6), torch.randn(3, 5))
    b = f(means, t)[0]
    assert not torch.allclose(a, b)  # the priors enter the output
    b.sum().backward()
    assert f.ks_proj.weight.grad is not None and float(f.ks_proj.weight.grad.abs().sum()) > 0
    g = DeformationField.from_config(dict(f.config))
    g.load_state_dict(f.state_dict())
    torch.testing.assert_close(g(means, t)[0], b.detach())
    with pytest.raises(ValueError, match=r"spatial priors must have shape \[Ns, 6\]"):
        f.set_priors(torch.randn(7, 4), torch.randn(3, 5))
    plain = DeformationField(AABB, channels=4, resolution=(8, 4), multires=(1,), width=16, backend="grid_sample")
    with pytest.raises(ValueError, match="prior_dims"):
        plain.set_priors(torch.randn(7, 6), torch.randn(3, 5))


def test_load_priors_errors(tmp_path):
    p = tmp_path / "p.pt"
    torch.save({"spatial": torch.randn(3, 4), "temporal": torch.randn(2, 5)}, p)
    d = load_priors(p)
    assert d["spatial"].shape == (3, 4)
    with pytest.raises(ValueError, match="width 4, expected 8"):
        load_priors(p, spatial_dim=8)
    torch.save({"spatial": torch.randn(3, 4)}, p)
    with pytest.raises(ValueError, match="missing tensor 'temporal'"):
        load_priors(p)
    torch.save([1, 2], p)
    with pytest.raises(ValueError, match="expected a dict"):
        load_priors(p)


def test_metrics_against_direct_formulas():
    a = torch.rand(2, 3, 16, 16, 3, dtype=torch.float64)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    mse = ((a - b) ** 2).mean((-3, -2, -1))
    torch.testing.assert_close(psnr(a, b), -10 * torch.log10(mse))
    s = ssim(a, b)
    assert s.shape == (2, 3) and bool((s < 1).all())
    torch.testing.assert_close(ssim(a, a), torch.ones(2, 3, dtype=torch.float64))
    # SSIM of a constant shift: luminance term only, computable in closed form on flat images
    flat = torch.full((1, 12, 12, 3), 0.3, dtype=torch.float64)
    shifted = flat + 0.2
    c1 = 0.01 ** 2
    want = (2 * 0.3 * 0.5 + c1) / (0.3 ** 2 + 0.5 ** 2 + c1)
    torch.testing.assert_close(ssim(flat, shifted), torch.tensor([want], dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[..., :8, :])


def test_depth_smoothness_zero_on_planes_positive_on_steps():
    alpha = torch.ones(1, 8, 8, 1)
    plane = torch.full((1, 8, 8, 1), 2.0)
    assert float(depth_smoothness(plane, alpha)) == 0.0
    step = plane.clone()
    step[:, :, 4:] = 3.0
    assert float(depth_smoothness(step, alpha)) > 0
    assert float(depth_smoothness(step, torch.zeros_like(alpha))) == 0.0  # background ignored


def test_lpips_never_downloads(tmp_path):
    model, why = try_load_lpips(str(tmp_path / "absent.pth"), "vgg")
    assert model is None and "absent.pth" in why
    with pytest.raises(ValueError, match="net"):
        try_load_lpips(None, "resnet")


def test_gif_frame_count(tmp_path):
    frames = torch.rand(5, 8, 10, 3)
    write_gif(tmp_path / "a.gif", frames, fps=5)
    assert read_video_frame_count(tmp_path / "a.gif") == 5


def test_lpips_loads_a_local_backbone_file(tmp_path):
    """A torchvision-layout backbone file is mapped into the LPIPS network; the distance behaves."""
    import torchvision

    feats = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    torch.save(state, tmp_path / "alex.pth")
    model, why = try_load_lpips(str(tmp_path / "alex.pth"), "alex")
    assert model is not None, why
    torch.testing.assert_close(getattr(model.net.slice1, "0").weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "10").weight, state["features.10.weight"])
    a = torch.rand(2, 32, 32, 3)
    d_same = lpips_distance(model, a, a)
    d_diff = lpips_distance(model, a, torch.rand(2, 32, 32, 3))
    assert d_same.shape == (2,) and float(d_same.abs().max()) < 1e-6 and bool((d_diff > 0).all())
    torch.save({"classifier.1.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    model, why = try_load_lpips(str(tmp_path / "wrong.pth"), "alex")
    assert model is None and "wrong.pth" in why
