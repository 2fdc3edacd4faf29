"""Orster transfer: kernel fit, detached targets, attention structure, ablation switches."""
import pytest
import torch

from orster4d.ops.attention import GaussianKernelParams, orster_attention
from orster4d.generation.orster import OrsterTransfer, gaussian_nll


def correlated_pairs(n, dk, var_s, var_t, cov):
    """``n`` tokens of ``(s, u)`` with every dimension drawn from N(0, [[var_s, cov], [cov, var_t]])."""
    sigma = torch.tensor([[var_s, cov], [cov, var_t]], dtype=torch.float64)
    z = torch.randn(n, dk, 2, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T
    return z[..., 0].float(), z[..., 1].float(), sigma


def fit(loss_fn, params, steps, lr=0.05):
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def test_kernel_fit_recovers_known_covariance(rng_seed):
    var_s = float(torch.empty(()).uniform_(0.3, 3.0))
    var_t = float(torch.empty(()).uniform_(0.3, 3.0))
    rho = float(torch.empty(()).uniform_(-0.8, 0.8))
    s, u, sigma = correlated_pairs(4000, 8, var_s, var_t, rho * (var_s * var_t) ** 0.5)
    s, u = s - s.mean(0), u - u.mean(0)
    kp = GaussianKernelParams(1)
    fit(lambda: gaussian_nll(s, u, kp), kp.parameters(), 600)
    emp = torch.stack([torch.stack([(s * s).mean(), (s * u).mean()]), torch.stack([(s * u).mean(), (u * u).mean()])])
    cov = kp.covariance()[0].double()
    assert torch.allclose(cov, emp.double(), rtol=0.03, atol=0.01), (cov, emp)   # the NLL optimum
    assert torch.allclose(cov, sigma, rtol=0.15, atol=0.06), (cov, sigma)         # the true covariance
    ss, st, sst, alpha = kp()
    # alpha carries the correlation: the precision's normalised off-diagonal is minus the covariance's
    assert torch.isclose(alpha / sst ** 2 * ss * st, torch.tensor(-rho), atol=0.06).all()


def teacher_features(B, C, F, h, w, corr):
    """Aligned spatial/temporal teacher features whose channels are pairwise correlated by ``corr``."""
    a = torch.randn(B, C, F, h, w)
    b = corr * a + (1 - corr ** 2) ** 0.5 * torch.randn(B, C, F, h, w)
    return a, b


def test_module_kernel_converges_to_feature_correlation(rng_seed):
    corr = float(torch.empty(()).uniform_(0.3, 0.8)) * (1 if rng_seed % 2 else -1)
    f3d_s, fv_t = teacher_features(2, 16, 4, 16, 16, corr)
    m = OrsterTransfer(16, 16, kernel_dim=4)   # both projections start from the same directions
    student = (torch.zeros(2, 16, 4, 16, 16), torch.zeros(2, 16, 4, 16, 16))
    with torch.no_grad():
        s, u = m.kernel_features(f3d_s, fv_t)
    assert torch.allclose(m(*student, f3d_s, fv_t)["nll"], gaussian_nll(s, u, m.kernel))
    fit(lambda: gaussian_nll(s, u, m.kernel), m.kernel.parameters(), 300)
    cov = m.kernel.covariance()[0]
    # unit-RMS features: the fitted covariance is the teachers' correlation matrix
    target = torch.tensor([[1.0, corr], [corr, 1.0]])
    assert torch.allclose(cov, target, atol=0.08), (cov, target)


def small_module(**kw):
    return OrsterTransfer(8, 12, kernel_dim=4, num_heads=2, **kw)


def small_features(B=2, F=3, h=4, w=5):
    f3d_s, _ = teacher_features(B, 8, F, h, w, 0.0)
    fv_t = torch.randn(B, 12, F, h, w)
    f4d_s = torch.randn(B, 8, F, h, w, requires_grad=True)
    f4d_t = torch.randn(B, 12, F, h, w, requires_grad=True)
    return f4d_s, f4d_t, f3d_s, fv_t


def test_student_cannot_move_its_own_target(rng_seed):
    m = small_module(mode="pairwise")
    f4d_s, f4d_t, f3d_s, fv_t = small_features()
    f3d_s.requires_grad_(True)
    fv_t.requires_grad_(True)
    out = m(f4d_s, f4d_t, f3d_s, fv_t)
    teacher_side = [f3d_s, fv_t] + list(m.kernel.parameters()) + list(m.proj_s.parameters()) + list(m.proj_t.parameters())
    grads = torch.autograd.grad(out["orster"], [f4d_s, f4d_t] + teacher_side, allow_unused=True)
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0
    assert all(g is None or (g == 0).all() for g in grads[2:])
    # descending L_orster with every parameter of the module leaves the targets and the loss unchanged
    before = [t.clone() for t in m.targets(f3d_s, fv_t)]
    opt = torch.optim.SGD(m.parameters(), lr=10.0)
    opt.zero_grad()
    m(f4d_s, f4d_t, f3d_s, fv_t)["orster"].backward()
    opt.step()
    after = m.targets(f3d_s, fv_t)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert torch.equal(m(f4d_s, f4d_t, f3d_s, fv_t)["orster"], out["orster"])


def test_spatial_target_attends_within_frames_and_temporal_within_positions(rng_seed):
    m = small_module()
    _, _, f3d_s, fv_t = small_features()
    fs, ft = m.targets(f3d_s, fv_t)
    assert fs.shape == f3d_s.shape and ft.shape == fv_t.shape
    # spatial target of frame 0 equals attention over frame 0's tokens only
    B, C, F, h, w = f3d_s.shape
    s, u = m.kernel_features(f3d_s, fv_t)
    s, u = s.view(B, F, h * w, -1)[:, 0, None], u.view(B, F, h * w, -1)[:, 0, None]
    x = f3d_s[:, :, 0].flatten(2).transpose(1, 2).reshape(B, h * w, 2, C // 2).transpose(1, 2)
    ref = orster_attention(x, x, x, s_k=s, u_k=u, params=tuple(t.expand(2) for t in m.kernel()))
    ref = ref.transpose(1, 2).reshape(B, h, w, C).permute(0, 3, 1, 2)
    assert torch.allclose(fs[:, :, 0], ref, atol=1e-5)
    # the temporal target at a position depends only on that position's features
    fv2 = fv_t.clone()
    fv2[..., 1:, :] += torch.randn_like(fv2[..., 1:, :])
    f3d2 = f3d_s.clone()
    f3d2[..., 1:, :] += torch.randn_like(f3d2[..., 1:, :])
    m2 = small_module(use_kernel=False)
    m2.load_state_dict(m.state_dict())
    _, ft_a = m2.targets(f3d_s, fv_t)
    _, ft_b = m2.targets(f3d2, fv2)
    assert torch.allclose(ft_a[..., 0, :], ft_b[..., 0, :], atol=1e-6)
    assert not torch.allclose(ft_a[..., 1, :], ft_b[..., 1, :])


def test_ablation_switches(rng_seed):
    f4d_s, f4d_t, f3d_s, fv_t = small_features()
    base = small_module()
    state = base.state_dict()

    def make(**kw):
        m = small_module(**kw)
        m.load_state_dict(state)
        return m

    fs, ft = base.targets(f3d_s, fv_t)
    # no kernel: plain attention targets, different from the kernel's, and no NLL term
    nk = make(use_kernel=False)
    fs0, ft0 = nk.targets(f3d_s, fv_t)
    x = f3d_s.permute(0, 2, 3, 4, 1).reshape(-1, 20, 2, 4).transpose(1, 2)
    plain = torch.softmax(x @ x.transpose(-1, -2) / 2.0, -1) @ x
    assert torch.allclose(fs0, plain.transpose(1, 2).reshape(2, 3, 4, 5, 8).permute(0, 4, 1, 2, 3), atol=1e-5)
    assert not torch.allclose(fs0, fs, atol=1e-3) and not torch.allclose(ft0, ft, atol=1e-3)
    assert nk(f4d_s, f4d_t, f3d_s, fv_t)["nll"] == 0
    # no spatial / temporal attention: the raw teacher features are the targets
    assert torch.equal(make(spatial_attention=False).targets(f3d_s, fv_t)[0], f3d_s)
    assert torch.allclose(make(spatial_attention=False).targets(f3d_s, fv_t)[1], ft)
    assert torch.equal(make(temporal_attention=False).targets(f3d_s, fv_t)[1], fv_t)
    # lambda_o weights the two terms; 1 and 0 drop one side entirely
    full = base(f4d_s, f4d_t, f3d_s, fv_t)
    assert torch.allclose(full["orster"], 0.5 * full["spatial"] + 0.5 * full["temporal"])
    assert torch.allclose(full["spatial"], (f4d_s - fs).abs().mean())
    assert torch.allclose(full["temporal"], (f4d_t - ft).abs().mean())
    only_s = make(lambda_o=1.0)(f4d_s, f4d_t, f3d_s, fv_t)
    assert torch.allclose(only_s["orster"], full["spatial"])
    g = torch.autograd.grad(only_s["orster"], [f4d_s, f4d_t], allow_unused=True)
    assert g[0].abs().sum() > 0 and g[1] is None
    only_t = make(lambda_o=0.0)(f4d_s, f4d_t, f3d_s, fv_t)
    assert torch.allclose(only_t["orster"], full["temporal"])
    # the density and pairwise kernels give different targets
    assert not torch.allclose(make(mode="pairwise").targets(f3d_s, fv_t)[0], fs, atol=1e-4)


def test_student_adapters_map_widths(rng_seed):
    m = OrsterTransfer(8, 12, kernel_dim=4, student_spatial_channels=6, student_temporal_channels=10)
    _, _, f3d_s, fv_t = small_features()
    out = m(torch.randn(2, 6, 3, 4, 5), torch.randn(2, 10, 3, 4, 5), f3d_s, fv_t)
    out["orster"].backward()
    assert m.adapt_s.weight.grad.abs().sum() > 0 and m.adapt_t.weight.grad.abs().sum() > 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="lambda_o"):
        OrsterTransfer(8, 8, lambda_o=1.5)
    with pytest.raises(ValueError, match="num_heads"):
        OrsterTransfer(8, 12, num_heads=5)
    m = small_module()
    f4d_s, f4d_t, f3d_s, fv_t = small_features()
    with pytest.raises(ValueError, match="fv_t must be aligned"):
        m(f4d_s, f4d_t, f3d_s, fv_t[:, :, :2])
    with pytest.raises(ValueError, match="f3d_s must have 8 channels"):
        m(f4d_s, f4d_t, fv_t, fv_t)
    with pytest.raises(ValueError, match="f4d_t must have 12 channels"):
        m(f4d_s, f4d_s, f3d_s, fv_t)
    with pytest.raises(ValueError, match=r"f4d_s must be a \[B, C, F, h, w\]"):
        m(f4d_s[0], f4d_t, f3d_s, fv_t)


def test_default_heads_have_width_64(rng_seed):
    m = OrsterTransfer(128, 192, kernel_dim=4)
    assert (m.heads_s, m.heads_t) == (2, 3)
    assert (OrsterTransfer(320, 40).heads_s, OrsterTransfer(320, 40).heads_t) == (5, 1)
    f3d_s, fv_t = torch.randn(1, 128, 2, 3, 3), torch.randn(1, 192, 2, 3, 3)
    fs, ft = m.targets(f3d_s, fv_t)
    # two heads: channel halves are attended independently of each other
    f3d_b = f3d_s.clone()
    f3d_b[:, 64:] = torch.randn_like(f3d_b[:, 64:])
    m.use_kernel = False
    fs_a, _ = m.targets(f3d_s, fv_t)
    fs_b, _ = m.targets(f3d_b, fv_t)
    assert torch.allclose(fs_a[:, :64], fs_b[:, :64], atol=1e-6)
    assert fs.shape == f3d_s.shape and ft.shape == fv_t.shape
