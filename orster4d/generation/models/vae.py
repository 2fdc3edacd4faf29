"""Frozen image VAE (diffusers ``AutoencoderKL``) applied frame by frame, and the
disentanglement VAE of Eq. 1-2.

Shapes: videos ``[B, T, H, W, 3]`` float in [0, 1]; latents ``Z4D [B, C, T, h, w]`` with
``h = H / 2**(len(block_out_channels) - 1)`` (diffusers' video layout).
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import register_to_config

from orster4d.generation.models.base import SavedModel, diffusers_load_kwargs, freeze, require_dir, require_file


def load_image_vae(folder: str, device="cpu", dtype=torch.float32):
    """Load a diffusers ``AutoencoderKL`` from a local folder, frozen, in eval mode, in ``dtype``."""
    from diffusers import AutoencoderKL

    require_dir(folder, "image VAE")
    require_file(os.path.join(folder, "config.json"), "image VAE")
    if not any(os.path.isfile(os.path.join(folder, n))
               for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        raise FileNotFoundError(f"image VAE: no weights file diffusion_pytorch_model.safetensors in {folder}")
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, **diffusers_load_kwargs())
    return freeze(vae).to(device)


def vae_downscale(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_video(vae, video: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
    """Encode ``video [B, T, H, W, 3]`` in [0, 1] to scaled latents ``[B, C, T, h, w]``."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"video: expected [B, T, H, W, 3], got {tuple(video.shape)}")
    b, t = video.shape[:2]
    x = video.reshape(b * t, *video.shape[2:]).permute(0, 3, 1, 2)
    x = (x * 2 - 1).to(dtype=vae.dtype)
    dist = vae.encode(x).latent_dist
    z = dist.sample(generator) if sample else dist.mode()
    z = z * vae.config.scaling_factor
    return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4).float()


def decode_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """Decode ``z [B, C, T, h, w]`` to a video ``[B, T, H, W, 3]`` in [0, 1] (differentiable)."""
    b, c, t = z.shape[:3]
    x = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, *z.shape[3:]) / vae.config.scaling_factor
    img = vae.decode(x.to(vae.dtype)).sample.float()
    img = ((img + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    return img.reshape(b, t, *img.shape[1:])


class DisentanglementVAE(SavedModel):
    """Eq. 1-2: two encoders ``Z4D -> ZS`` and ``Z4D -> ZT`` with mean and log-variance.

    Each encoder is a small 3D conv net (kernel 3 in time and space); both codes have the layout of
    ``Z4D [B, C, T, h, w]``. Both are initialised so that the mean is the identity map of Z4D and
    the log-variance is ``init_logvar`` (small noise), so a pretrained video UNet sees the latents it
    was trained on at the start of stage 2.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, hidden: int = 32, init_logvar: float = -8.0):
        super().__init__()
        self.encoders = nn.ModuleDict({k: self._encoder(latent_channels, hidden, init_logvar)
                                       for k in ("spatial", "temporal")})

    @staticmethod
    def _encoder(c: int, hidden: int, init_logvar: float) -> nn.Module:
        net = nn.Sequential(
            nn.Conv3d(c, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv3d(hidden, 2 * c, 3, padding=1),
        )
        nn.init.zeros_(net[2].weight)
        with torch.no_grad():
            net[2].bias[:c] = 0.0
            net[2].bias[c:] = init_logvar
        return net

    def encode(self, z4d: torch.Tensor, which: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, logvar)`` of ``which`` in {'spatial', 'temporal'}, each ``[B, C, T, h, w]``."""
        out = self.encoders[which](z4d)
        c = z4d.shape[1]
        mean = z4d + out[:, :c]
        return mean, out[:, c:].clamp(-30.0, 20.0)

    def forward(self, z4d: torch.Tensor, sample: bool = True, generator=None) -> Dict[str, torch.Tensor]:
        """Return dict with ``zs``, ``zt`` (``[B, C, T, h, w]``), ``kl`` (scalar, mean over elements)
        and ``ortho`` (scalar: mean squared cosine between centred ZS and ZT per sample)."""
        res = {}
        kl = 0.0
        for key, which in (("zs", "spatial"), ("zt", "temporal")):
            mean, logvar = self.encode(z4d, which)
            if sample:
                gdev = generator.device if generator is not None else mean.device
                eps = torch.randn(mean.shape, generator=generator, device=gdev).to(mean)
                res[key] = mean + torch.exp(0.5 * logvar) * eps
            else:
                res[key] = mean
            # KL(N(mean - z4d, var) || N(0, 1)) on the residual the encoder adds to Z4D.
            resid = mean - z4d
            kl = kl + 0.5 * (resid.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        res["kl"] = kl
        a = res["zs"].flatten(1)
        b = res["zt"].flatten(1)
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        res["ortho"] = F.cosine_similarity(a, b, dim=1).pow(2).mean()
        return res
