"""Loss terms of 4D construction (Eq. 18) other than L1: depth smoothness and the optional LPIPS term.

The field's plane regularisers and motion-curvature prior are methods of
:class:`~orster4d.recon.deformation.DeformationField`; L_hex is the reference-view MSE, computed in
the training step.
"""
from __future__ import annotations

from typing import Optional

import torch

from orster4d.perceptual import lpips_distance, try_load_lpips

__all__ = ["depth_smoothness", "LPIPSTerm"]


def depth_smoothness(depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Depth smoothness (RegNeRF-style): mean squared difference of neighbouring expected depths,
    weighted by both pixels' alpha. ``depth, alpha [..., H, W, 1]`` -> scalar."""
    d = depth[..., 0]
    a = alpha[..., 0].detach()
    dx = (d[..., :, 1:] - d[..., :, :-1]) ** 2 * (a[..., :, 1:] * a[..., :, :-1])
    dy = (d[..., 1:, :] - d[..., :-1, :]) ** 2 * (a[..., 1:, :] * a[..., :-1, :])
    return dx.mean() + dy.mean()


class LPIPSTerm:
    """The optional LPIPS loss and metric: ``available`` is False (with ``reason``) when the weights
    are not on the machine. ``term(pred, target)`` maps ``[..., H, W, 3]`` images in [0, 1] to
    ``[...]`` distances."""

    def __init__(self, net: str = "vgg", weights: Optional[str] = None, device=None):
        self.model, self.reason = try_load_lpips(weights, net, device)

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lpips_distance(self.model, pred, target)
