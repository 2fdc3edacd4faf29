"""Screen-space statistics for 3DGS densification.

3DGS clones or splits a Gaussian when the average norm of the gradient of its projected
centre, over the views in which it was visible, exceeds a threshold (0.0002 in normalised
device coordinates). :class:`DensifyStats` accumulates that norm and the visible count.
"""
from __future__ import annotations

import torch

__all__ = ["DensifyStats"]


class DensifyStats:
    """Accumulates ``|d loss / d means2d|`` and the number of views where each Gaussian was visible.

    Usage::

        stats = DensifyStats(N, device)
        out = rasterize_gaussians(...)
        out.means2d.retain_grad()
        loss.backward()
        stats.update(out)
        grads = stats.mean_grad()       # [N], per visible view

    The leading batch dims and the cameras of ``out`` are all views of the same ``N`` Gaussians
    (e.g. T deformed copies of one canonical set): each (batch element, camera) pair in which a
    Gaussian has ``radius > 0`` counts as one view.

    Args:
        num_gaussians: N.
        device: where the statistics live.
        ndc: if True (default, as 3DGS), the pixel-space gradient is converted to normalised device
            coordinates, ``(gx * W / 2, gy * H / 2)``, so thresholds do not depend on resolution.

    Attributes:
        grad_norm_sum: ``[N]`` float32, sum of the gradient norms over visible views.
        count: ``[N]`` int32, number of visible views.
        max_radii: ``[N]`` int32, largest radius seen (px).
    """

    def __init__(self, num_gaussians: int, device=None, ndc: bool = True):
        if isinstance(num_gaussians, bool) or not isinstance(num_gaussians, int) or num_gaussians < 0:
            raise ValueError(f"num_gaussians must be an int >= 0, got {num_gaussians!r}")
        self.ndc = ndc
        self.grad_norm_sum = torch.zeros(num_gaussians, dtype=torch.float32, device=device)
        self.count = torch.zeros(num_gaussians, dtype=torch.int32, device=device)
        self.max_radii = torch.zeros(num_gaussians, dtype=torch.int32, device=device)

    def update(self, out) -> None:
        """Adds the views of one render (a :class:`RenderOutput` after ``backward()``)."""
        N = self.count.shape[0]
        if out.means2d.grad is None:
            raise ValueError("out.means2d has no gradient: call out.means2d.retain_grad() before backward()")
        if out.means2d.shape[-2] != N:
            raise ValueError(f"out.means2d must have shape [..., C, {N}, 2], got {tuple(out.means2d.shape)}")
        grad = out.means2d.grad.detach().reshape(-1, N, 2).to(torch.float32)
        if self.ndc:
            H, W = out.rgb.shape[-3], out.rgb.shape[-2]
            grad = grad * torch.tensor([0.5 * W, 0.5 * H], device=grad.device)
        visible = out.radii.reshape(-1, N) > 0
        norms = torch.where(visible, grad.norm(dim=-1), torch.zeros((), device=grad.device))
        self.grad_norm_sum += norms.sum(0).to(self.grad_norm_sum.device)
        self.count += visible.sum(0).to(torch.int32).to(self.count.device)
        radii = torch.where(visible, out.radii.reshape(-1, N), torch.zeros((), dtype=out.radii.dtype,
                                                                            device=out.radii.device))
        if radii.shape[0] > 0:
            self.max_radii = torch.maximum(self.max_radii, radii.amax(0).to(self.max_radii))

    def mean_grad(self) -> torch.Tensor:
        """``[N]`` average gradient norm per visible view (0 where never visible)."""
        return self.grad_norm_sum / self.count.clamp(min=1).to(self.grad_norm_sum.dtype)

    def reset(self) -> None:
        """Zeroes the statistics (after a densification step)."""
        self.grad_norm_sum.zero_()
        self.count.zero_()
        self.max_radii.zero_()
