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
