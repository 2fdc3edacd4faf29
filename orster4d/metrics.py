"""Image quality metrics on ``[..., H, W, 3]`` images in [0, 1] (float)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-1] != 3 or not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor [..., H, W, 3], got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``[..., H, W, 3] -> [...]`` (peak 1)."""
    _check_pair(pred, target)
    mse = ((pred - target) ** 2).flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, valid region, mean
    over channels and pixels) per image: ``[..., H, W, 3] -> [...]``. Images smaller than the window
    use a window of their smaller side."""
    _check_pair(pred, target)
    lead = pred.shape[:-3]
    h, w = pred.shape[-3:-1]
    window = min(window, h, w)
    x = pred.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    y = target.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    k = (g[:, None] * g[None, :]).expand(3, 1, window, window)

    def blur(z):
        return F.conv2d(z, k, groups=3)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(-1).reshape(lead)
