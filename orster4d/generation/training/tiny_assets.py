"""Randomly initialised tiny stand-ins for the pretrained folders the stages read.

Used by the ``tiny`` preset's smoke runs and by the tests: an ``AutoencoderKL`` (8x downsampling
with 4 levels: 32x32 frames -> 4x4 latents), two teacher ``UNet3DConditionModel`` folders
and an open_clip CLIP folder. These are NOT pretrained: they exercise the code paths only.
"""
from __future__ import annotations

import os

import torch

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, sample_size=32)

TINY_UNET = dict(in_channels=4, out_channels=4,
                 down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
                 block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                 cross_attention_dim=32, attention_head_dim=8)

TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
                 text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))

# Blocks hooked in the tiny architecture (teacher block -> student block): the cross-attention
# down block's spatial transformer and its temporal transformer.
TINY_TEACHER_MAP = [
    {"teacher": "spatial", "block": "down_blocks.0.attentions.0", "student": "down_blocks.0.attentions.0"},
    {"teacher": "temporal", "block": "down_blocks.0.temp_attentions.0", "student": "down_blocks.0.temp_attentions.0"},
]


def make_tiny_vae(folder: str, seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE)
    vae.save_pretrained(folder)
    return vae


def make_tiny_unet(folder: str, seed: int = 0, **overrides):
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    unet = UNet3DConditionModel(**{**TINY_UNET, **overrides})
    unet.save_pretrained(folder)
    return unet


def make_tiny_clip(folder: str, seed: int = 0):
    from open_clip.model import CLIP

    from orster4d.generation.models.conditions import save_clip

    torch.manual_seed(seed)
    model = CLIP(**TINY_CLIP)
    save_clip(model, folder, TINY_CLIP)
    return model


def make_tiny_assets(root: str, seed: int = 0) -> dict:
    """Write ``vae/``, ``teacher_spatial/``, ``teacher_temporal/``, ``clip/`` under ``root``."""
    paths = {k: os.path.join(root, k) for k in ("vae", "teacher_spatial", "teacher_temporal", "clip")}
    make_tiny_vae(paths["vae"], seed)
    make_tiny_unet(paths["teacher_spatial"], seed + 1)
    make_tiny_unet(paths["teacher_temporal"], seed + 2, block_out_channels=(16, 32), norm_num_groups=8)
    make_tiny_clip(paths["clip"], seed + 3)
    return paths


def make_tiny_pipeline(folder=None, seed: int = 0, kinds=("text", "image", "static3d"),
                       modes=("orbit", "static", "reference"), frames: int = 8, resolution: int = 32):
    """A randomly initialised tiny ``STD4DPipeline`` (tiny VAE, UNet, CLIP, conditioner; DDIM) on the
    default orbit at ``frames`` frames of ``resolution`` pixels; saved to ``folder`` when given.

    Not trained: it exercises generation and construction code paths only. The conditioner's
    zero-initialised latent inputs and mode tokens are filled with small random values so that
    every condition and mode changes the output.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from open_clip.model import CLIP

    from orster4d.cameras import OrbitTrajectory
    from orster4d.generation.models.conditions import CLIPConditionEncoder, STD4DConditioner
    from orster4d.generation.pipeline import STD4DPipeline

    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE)
    unet = UNet3DConditionModel(**TINY_UNET)
    clip = CLIPConditionEncoder(model_cfg=TINY_CLIP) if any(k in ("text", "image") for k in kinds) else None
    dims = clip.feature_dims() if clip is not None else {}
    cond = STD4DConditioner(kinds=list(kinds), context_dim=TINY_UNET["cross_attention_dim"],
                            latent_channels=TINY_UNET["in_channels"], modes=list(modes), **dims)
    with torch.no_grad():
        for p in cond.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    traj = OrbitTrajectory(num_frames=frames, width=resolution, height=resolution)
    pipe = STD4DPipeline(vae=vae, unet=unet, scheduler=sched, conditioner=cond, clip_encoder=clip,
                         trajectory=traj.to_dict(), prior_blocks={"spatial": [TINY_TEACHER_MAP[0]["student"]],
                                                                  "temporal": [TINY_TEACHER_MAP[1]["student"]]})
    if folder is not None:
        pipe.save_pretrained(folder)
    return pipe
