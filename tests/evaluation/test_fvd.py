"""Frechet distance against scipy's sqrtm and closed forms; FVD of a set with itself and with noise."""
import numpy as np
import pytest
import torch

from orster4d.evaluation.fvd import frechet_distance, fvd, gaussian_stats

scipy_linalg = pytest.importorskip("scipy.linalg")


def _random_spd(d, gen, rank=None):
    a = torch.randn(d, rank or d, generator=gen, dtype=torch.float64)
    return a @ a.T / (rank or d) + (0 if rank else 1e-3) * torch.eye(d, dtype=torch.float64)


def _scipy_fd(mu1, s1, mu2, s2):
    covmean = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy())
    covmean = np.real(covmean)
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [1, 5, 40])
def test_matches_scipy_sqrtm(rng_seed, d):
    gen = torch.Generator().manual_seed(rng_seed)
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    s1, s2 = _random_spd(d, gen), _random_spd(d, gen)
    ours, ref = frechet_distance(mu1, s1, mu2, s2), _scipy_fd(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_known_distance_commuting_covariances(rng_seed):
    """S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    gen = torch.Generator().manual_seed(rng_seed)
    d = 12
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    a = torch.rand(d, generator=gen, dtype=torch.float64) * 3 + 0.1
    b = torch.rand(d, generator=gen, dtype=torch.float64) * 3 + 0.1
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    known = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(mu1, q @ torch.diag(a) @ q.T, mu2, q @ torch.diag(b) @ q.T)
    assert got == pytest.approx(known, rel=1e-9)


def test_rank_deficient_covariances_match_scipy(rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    d = 16
    s1, s2 = _random_spd(d, gen, rank=5), _random_spd(d, gen, rank=7)
    mu = torch.zeros(d, dtype=torch.float64)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(_scipy_fd(mu, s1, mu, s2), rel=1e-5, abs=1e-6)


def test_sample_statistics_converge_to_the_known_distance(rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    d, n = 4, 200000
    a, b = torch.tensor([1.0, 2.0, 0.5, 1.5]), torch.tensor([0.25, 1.0, 2.0, 1.5])
    x = torch.randn(n, d, generator=gen) * a.sqrt()
    y = torch.randn(n, d, generator=gen) * b.sqrt() + 1.0
    known = float(d * 1.0 + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert fvd(x, y) == pytest.approx(known, rel=0.03)


def test_self_distance_is_zero_and_stats_are_float64(rng_seed):
    x = torch.randn(30, 10)
    mu, cov = gaussian_stats(x)
    assert mu.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10, atol=1e-12)
    assert abs(fvd(x, x.clone())) < 1e-8


def test_bad_features_are_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(torch.randn(1, 4))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def test_fvd_on_i3d_features_is_zero_for_itself_and_grows_with_noise(tmp_path, rng_seed, one_thread):
    from orster4d.evaluation.i3d import i3d_features, load_i3d
    from eval_helpers import save_tiny_i3d_torchscript

    model = load_i3d(save_tiny_i3d_torchscript(tmp_path / "i3d.pt", seed=rng_seed % 1000))
    gen = torch.Generator().manual_seed(rng_seed)
    base = torch.rand(6, 1, 1, 1, 3, generator=gen) * torch.linspace(0.2, 1, 9)[None, :, None, None, None]
    videos = (base + 0.1 * torch.rand(6, 9, 32, 32, 3, generator=gen)).clamp(0, 1)
    ref = i3d_features(model, videos)
    assert abs(fvd(ref, i3d_features(model, videos.clone()))) < 1e-6
    scores = [fvd(i3d_features(model, (videos + s * torch.randn(videos.shape, generator=gen)).clamp(0, 1)), ref)
              for s in (0.05, 0.3, 1.0)]
    print("FVD vs noise", scores)
    assert 0 < scores[0] < scores[1] < scores[2]
