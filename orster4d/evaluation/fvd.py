"""Frechet distance between Gaussians fitted to two feature sets (FID/FVD), in float64.

``d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``. The trace of the matrix square
root is computed exactly from symmetric eigendecompositions: with ``R = S_a^(1/2)`` (symmetric PSD),
``S_a S_b`` is similar to ``R S_b R`` (symmetric PSD), so ``tr((S_a S_b)^(1/2))`` is the sum of the
square roots of ``R S_b R``'s eigenvalues. No complex arithmetic, no iterative ``sqrtm``.
"""
from __future__ import annotations

from typing import Tuple

import torch


def gaussian_stats(feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``feats [N, D]``, ``N >= 2``."""
    if feats.dim() != 2:
        raise ValueError(f"features must be [N, D], got {tuple(feats.shape)}")
    if feats.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {feats.shape[0]}")
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("features contain NaN or Inf")
    x = feats.double()
    mu = x.mean(0)
    d = x - mu
    return mu, d.T @ d / (x.shape[0] - 1)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)``
    (``mu [D]``, ``cov [D, D]`` symmetric PSD), computed in float64."""
    mu_a, mu_b, cov_a, cov_b = (t.double() for t in (mu_a, mu_b, cov_a, cov_b))
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mu_a.numel(), mu_a.numel()):
        raise ValueError(f"shapes do not match: mu {tuple(mu_a.shape)}/{tuple(mu_b.shape)}, "
                         f"cov {tuple(cov_a.shape)}/{tuple(cov_b.shape)}")
    r = _psd_sqrt(cov_a)
    m = r @ cov_b @ r
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu_a - mu_b
    return float(diff @ diff + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt)


def fvd(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between the Gaussians of two feature sets ``[N_a, D]`` and ``[N_b, D]``."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))
