"""Gradients on nearly opaque pixels: the forward keeps each pixel's final transmittance.

``rasterize_fwd`` returns ``transmittance`` (``T_final``, ``[B, C, H, W]`` float32) beside
``alpha = 1 - T_final``, and ``rasterize_bwd`` starts from it. Rebuilding ``T_final`` as
``1 - alpha`` in float32 loses its digits when it is small: ``alpha`` near 1 is stored to
``2^-24``, a relative error of ~2e-4 at ``T_final = 1.5e-4``, which went into every gradient of
the pixel. These tests compare the kernels (CPU here; CUDA where a GPU is present) with the
float64 dense reference on many one-pixel images, so that every gradient belongs to one pixel and
no error averages out over pixels.
"""
from __future__ import annotations

import math

import pytest
import torch

from orster4d.ops.rasterize import reference
from orster4d.ops.rasterize._ops import TILE_SIZE, extension

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
NAMES = ("means2d", "conics", "colors", "opacities", "depths", "backgrounds")


def opaque_pixels(seed: int, images: int = 64, splats: int = 6) -> dict:
    """``images`` one-pixel images (the batch B; C = 1), each behind ``splats`` splats near its
    centre with alpha ~0.7-0.76, so that every pixel ends with ``T_final`` in about [1.5e-4, 1e-3]:
    nearly opaque, yet far from the 1e-4 stop and the 1/255 skip (no compositing decision is
    close). Lower alphas in more splats keep float32's ``1 - alpha`` of each splat accurate."""
    g = torch.Generator().manual_seed(seed)
    B, N = images, splats
    means2d = 0.5 + 0.5 * torch.randn(B, 1, N, 2, generator=g)
    conics = torch.tensor([1.0, 0.1, 0.8]) * (0.02 + 0.05 * torch.rand(B, 1, N, 1, generator=g))
    return {
        "means2d": means2d,
        "conics": conics,
        "colors": torch.rand(B, 1, N, 3, generator=g),
        "opacities": 0.71 + 0.05 * torch.rand(B, N, generator=g),
        "depths": (1.0 + torch.arange(N, dtype=torch.float32) + 0.1 * torch.rand(B, 1, N, generator=g)),
        "backgrounds": torch.rand(B, 1, 3, generator=g),
    }


def _composite(scene: dict, device: str, dtype: torch.dtype):
    """Renders every image and back-propagates a fixed random weighting of rgb, depth and alpha.
    float32: the kernels of ``device``; float64: the dense reference. Returns (T_final, grads)."""
    xs = {k: scene[k].to(device, dtype).clone().requires_grad_(True) for k in NAMES}
    B, C, N = xs["depths"].shape
    radii = torch.full((B, C, N), 4, dtype=torch.int32, device=device)
    if dtype == torch.float64:
        render, render_depth, alpha = reference.composite(
            xs["means2d"], xs["conics"], xs["colors"], xs["opacities"], xs["depths"], radii, 1, 1, xs["backgrounds"])
        t_final = (1 - alpha).squeeze(-1)
    else:
        ops = extension(device)
        offsets, ids = ops.intersect_tiles(xs["means2d"].detach(), radii, xs["depths"].detach(), TILE_SIZE, 1, 1)
        render, render_depth, _, t_final = ops.rasterize_fwd(
            xs["means2d"], xs["conics"], xs["colors"], xs["opacities"], xs["depths"], xs["backgrounds"], 1, 1,
            TILE_SIZE, offsets, ids)
        alpha = (1 - t_final).unsqueeze(-1)  # as the entry point forms it; its gradient reaches the op as -v_T
    g = torch.Generator().manual_seed(1)
    w_rgb, w_depth, w_alpha = (torch.rand(x.shape, generator=g, dtype=torch.float64).to(device, dtype)
                               for x in (render, render_depth, alpha))
    ((render * w_rgb).sum() + (render_depth * w_depth).sum() + (alpha * w_alpha).sum()).backward()
    return t_final.detach().double().cpu(), {k: xs[k].grad.double().cpu() for k in NAMES}


def _grads_from_rebuilt_transmittance(scene: dict, device: str) -> dict:
    """The gradients ``rasterize_bwd`` gives when handed ``1 - alpha`` as the transmittance (what
    the backward used to rebuild), for the same weighting as :func:`_composite`."""
    xs = {k: scene[k].to(device).contiguous() for k in NAMES}
    B, C, N = xs["depths"].shape
    radii = torch.full((B, C, N), 4, dtype=torch.int32, device=device)
    ops = extension(device)
    offsets, ids = ops.intersect_tiles(xs["means2d"], radii, xs["depths"], TILE_SIZE, 1, 1)
    fwd = (*(xs[k] for k in NAMES), 1, 1, TILE_SIZE, offsets, ids)
    render, render_depth, last_ids, t_final = ops.rasterize_fwd(*fwd)
    alpha = (1 - t_final).unsqueeze(-1)
    g = torch.Generator().manual_seed(1)
    w_rgb, w_depth, w_alpha = (torch.rand(x.shape, generator=g, dtype=torch.float64).to(device, torch.float32)
                               for x in (render, render_depth, alpha))
    rebuilt = (1 - alpha).squeeze(-1).contiguous()
    grads = ops.rasterize_bwd(*fwd, render, render_depth, rebuilt, last_ids, w_rgb, w_depth, w_alpha)
    return {k: v.double().cpu() for k, v in zip(NAMES, grads)}


def _per_image_rel_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[B]`` max abs error of each image's gradient over its largest entry."""
    return (a - b).abs().flatten(1).amax(1) / b.abs().flatten(1).amax(1).clamp_min(1e-30)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_on_nearly_opaque_pixels_match_float64(rng_seed, device):
    scene = opaque_pixels(rng_seed)
    t32, g32 = _composite(scene, device, torch.float32)
    t64, g64 = _composite(scene, "cpu", torch.float64)
    assert 1.2e-4 < t64.min() and t64.max() < 2e-3, "the scene should be nearly opaque, off the stop"
    t_err = ((t32 - t64).abs() / t64).max().item()
    assert t_err < 1e-5, f"stored transmittance: relative error {t_err:.3g} (seed {rng_seed})"
    for name in NAMES:
        err = _per_image_rel_error(g32[name], g64[name]).max().item()
        # rebuilding T_final as 1 - alpha gave ~2e-4 here
        assert err < 1e-5, f"grad {name}: relative error {err:.3g} on one pixel (seed {rng_seed})"


@pytest.mark.parametrize("device", DEVICES)
def test_rebuilding_transmittance_from_alpha_fails_the_bound(rng_seed, device):
    """The control of the test above: the old backward (T_final rebuilt as 1 - alpha) misses it."""
    scene = opaque_pixels(rng_seed)
    _, g64 = _composite(scene, "cpu", torch.float64)
    g_old = _grads_from_rebuilt_transmittance(scene, device)
    err = max(_per_image_rel_error(g_old[k], g64[k]).max().item() for k in ("opacities", "backgrounds"))
    assert err > 5e-5, f"1 - alpha should lose T_final's digits here (error {err:.3g}, seed {rng_seed})"
