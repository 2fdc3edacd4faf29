"""The image VAE of the reproduction: a diffusers ``AutoencoderKL`` trained on procedural frames.

It stands in for the pretrained Stable Diffusion VAE. Training: frames ``[N, H, W, 3]`` in
[0, 1] (the orbital and fixed-camera frames of the training sets), loss ``L1(x_hat, x) +
kl_weight * KL`` with Adam; then ``scaling_factor`` is set to ``1 / std`` of the latents of the
training frames (as Stable Diffusion's 0.18215 makes its latents unit-variance), so the
diffusion sees unit-scale latents. :func:`reconstruction_psnr` reports held-out quality.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Union

import torch


def collect_frames(folders: List[Union[str, Path]]) -> torch.Tensor:
    """All frames of the given dataset folders, ``[N, H, W, 3]`` float32 in [0, 1]."""
    from orster4d.data.dataset import load_dataset

    if not folders:
        raise ValueError("image VAE: no training folders")
    return torch.cat([load_dataset(f).images for f in folders])


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) * 2 - 1


def train_image_vae(frames: torch.Tensor, out: Union[str, Path], config: dict, steps: int, batch: int, lr: float,
                    seed: int = 0, kl_weight: float = 1e-6, device="cpu", progress: bool = True) -> Dict:
    """Train an ``AutoencoderKL(**config)`` on ``frames [N, H, W, 3]`` and save it to ``out``.

    Returns ``{"steps", "final_l1", "scaling_factor"}``.
    """
    from diffusers import AutoencoderKL

    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"image VAE: frames must be [N, H, W, 3] with N >= 1, got {tuple(frames.shape)}")
    if int(steps) < 1 or int(batch) < 1 or not lr > 0:
        raise ValueError(f"image VAE: steps and batch must be >= 1 and lr > 0, got {steps}, {batch}, {lr}")
    torch.manual_seed(seed)
    vae = AutoencoderKL(**config).to(device).train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(steps), desc="image VAE", dynamic_ncols=True)
    l1 = torch.zeros(())
    for _ in range(int(steps)):
        idx = torch.randint(0, frames.shape[0], (int(batch),), generator=g)
        x = _to_nchw(frames[idx]).to(device)
        post = vae.encode(x).latent_dist
        z = post.sample(generator=torch.Generator(device=x.device).manual_seed(int(idx[0])))
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        loss = l1 + kl_weight * post.kl().mean()
        l1 = l1.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(l1=f"{float(l1):.4f}")
    if bar is not None:
        bar.close()
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(_to_nchw(frames[i:i + 64]).to(device)).latent_dist.mode().cpu()
                        for i in range(0, min(frames.shape[0], 512), 64)])
    scale = float(1.0 / zs.float().std().clamp_min(1e-6))
    vae.register_to_config(scaling_factor=scale)
    vae.to("cpu").save_pretrained(str(out))
    return {"steps": int(steps), "final_l1": float(l1), "scaling_factor": scale}


@torch.no_grad()
def reconstruction_psnr(vae_dir: Union[str, Path], frames: torch.Tensor, device="cpu") -> float:
    """Mean PSNR (dB) of ``frames [N, H, W, 3]`` encoded (posterior mode) and decoded by the VAE."""
    from orster4d.generation.models.vae import decode_latents, encode_video, load_image_vae
    from orster4d.metrics import psnr

    vae = load_image_vae(str(vae_dir), device=device)
    rec = decode_latents(vae, encode_video(vae, frames[None].to(device)))[0].float().cpu().clamp(0, 1)
    return float(psnr(rec, frames).mean())
