"""Sampling: orchestrates a denoiser with any diffusers scheduler (epsilon prediction).

The denoiser is either the two-channel ``STD4DUNet`` or a (merged) ``UNet3DConditionModel``.
Classifier-free guidance: ``eps = eps_uncond + scale * (eps_cond - eps_uncond)`` where the
unconditional branch uses the null condition (zero context, no latent input).
"""
from __future__ import annotations

from typing import Optional

import torch

from orster4d.generation.models.unet4d import STD4DUNet, run_unet


def predict_noise(model, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                  latent_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    if isinstance(model, STD4DUNet):
        return model(z, t, context, latent_cond=latent_cond, sample_posterior=False)["eps"]
    return run_unet(model, z + latent_cond if latent_cond is not None else z, t, context)


@torch.no_grad()
def sample_latents(model, scheduler, shape, context: torch.Tensor, latent_cond: Optional[torch.Tensor] = None,
                   num_inference_steps: int = 50, guidance_scale: float = 1.0,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw latents ``[B, C, T, h, w]`` (``shape``) for ``context [B, L, D]``."""
    was_training = model.training
    model.eval()  # the temporal convs of UNet3DConditionModel have dropout
    try:
        return _sample(model, scheduler, shape, context, latent_cond, num_inference_steps, guidance_scale, generator)
    finally:
        model.train(was_training)


def _sample(model, scheduler, shape, context, latent_cond, num_inference_steps, guidance_scale, generator):
    device = context.device
    scheduler.set_timesteps(num_inference_steps, device=device)
    gdev = generator.device if generator is not None else device
    z = torch.randn(shape, generator=generator, device=gdev).to(device) * scheduler.init_noise_sigma
    guided = guidance_scale != 1.0
    for t in scheduler.timesteps:
        tt = t.expand(shape[0]).to(device)
        zin = scheduler.scale_model_input(z, t)
        if guided:
            null_ctx = torch.zeros_like(context)
            eps_c = predict_noise(model, zin, tt, context, latent_cond)
            eps_u = predict_noise(model, zin, tt, null_ctx, None)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        else:
            eps = predict_noise(model, zin, tt, context, latent_cond)
        z = scheduler.step(eps, t, z).prev_sample
    return z
