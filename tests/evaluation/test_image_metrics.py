"""PSNR and SSIM against plain, independent implementations of their formulas."""
import math

import numpy as np
import pytest
import torch

from orster4d.metrics import psnr, ssim


def _plain_ssim(x: np.ndarray, y: np.ndarray, size=11, sigma=1.5) -> float:
    """Wang et al. 2004 with a Gaussian window, written out window by window (valid positions only)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    r = np.arange(size) - (size - 1) / 2
    g1 = np.exp(-r ** 2 / (2 * sigma ** 2))
    w = np.outer(g1, g1)
    w /= w.sum()
    h, wd, _ = x.shape
    vals = []
    for ch in range(3):
        for i in range(h - size + 1):
            for j in range(wd - size + 1):
                a = x[i:i + size, j:j + size, ch]
                b = y[i:i + size, j:j + size, ch]
                ma, mb = (w * a).sum(), (w * b).sum()
                va = (w * (a - ma) ** 2).sum()
                vb = (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_the_windowed_formula(rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    x = torch.rand(2, 18, 20, 3, generator=gen, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    for k in range(2):
        assert float(got[k]) == pytest.approx(_plain_ssim(x[k].numpy(), y[k].numpy()), rel=1e-9, abs=1e-12)
    assert float(ssim(x, x).min()) == pytest.approx(1.0, abs=1e-12)


def test_psnr_matches_its_definition(rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    x = torch.rand(3, 8, 9, 3, generator=gen, dtype=torch.float64)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    for k in range(3):
        mse = float(((x[k].numpy() - y[k].numpy()) ** 2).mean())
        assert float(psnr(x, y)[k]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-10)
