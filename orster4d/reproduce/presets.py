"""Sizes of the reproduction: ``tiny`` (CPU tests, seconds per model), ``quick`` (one GPU, the
whole chain in a few minutes: a smoke run of the machinery at the ``small`` architecture, not a
result) and ``small`` (one GPU, the reported tables).

A :class:`ReproPreset` fixes the world (:class:`~orster4d.data.world.WorldSpec` fields), the
training preset of ``orster4d-train`` and the steps of each model, the image VAE, the sampling
settings of the evaluation and the schedule of the 4D constructions it scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from orster4d.generation.training.tiny_assets import TINY_UNET, TINY_VAE


@dataclass(frozen=True)
class ReproPreset:
    """Everything size-dependent in the protocol.

    ``world``: WorldSpec fields (counts, frames, size in pixels, Gaussians, views);
    ``train_preset``: the ``orster4d-train`` preset; ``stage_steps``: steps of stages 1-4;
    ``teacher_steps``: steps of each teacher (stage 1 on the static-3D or the video set);
    ``train_overrides``: ``--set`` items for every training run; ``vae``: ``AutoencoderKL``
    config; ``vae_steps``, ``vae_batch`` (frames), ``vae_lr``; ``inference_steps`` and
    ``guidance_scale`` of generation; ``prior_steps``: last denoising steps averaged into the
    prior tokens; ``construct``: :class:`~orster4d.recon.config.ConstructConfig` fields of every
    4D construction (its schedule and sizes; rows add their own); ``scarcity``: 4D-set sizes of
    the scarcity curve; ``stage_overrides``: ``{stage: {key: value}}`` on top of
    ``train_overrides`` for the stages of the 4D chain (not the teachers); ``asset_kinds``: the
    condition kinds the 4D assets are built for (None: every kind the model has);
    ``asset_objects``: how many held-out objects (the first ones) get assets (None: all).
    """

    name: str
    world: Dict[str, int]
    train_preset: str
    stage_steps: Tuple[int, int, int, int]
    teacher_steps: int
    train_overrides: Dict[str, object]
    vae: Dict[str, object]
    vae_steps: int
    vae_batch: int
    vae_lr: float
    inference_steps: int
    guidance_scale: float
    prior_steps: int
    construct: Dict[str, object]
    scarcity: Tuple[int, ...] = field(default_factory=tuple)
    stage_overrides: Dict[int, Dict[str, object]] = field(default_factory=dict)
    asset_kinds: Optional[Tuple[str, ...]] = None
    asset_objects: Optional[int] = None


SMALL_VAE = dict(TINY_VAE, block_out_channels=(32, 64, 128, 128), norm_num_groups=32, sample_size=64)

# the small training preset's UNet at half width (32-64-128 channels)
COMPACT_UNET = dict(TINY_UNET, block_out_channels=(32, 64, 128), norm_num_groups=16,
                    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
                    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
                    cross_attention_dim=256, attention_head_dim=32, layers_per_block=1)

PRESETS: Dict[str, ReproPreset] = {
    "tiny": ReproPreset(
        name="tiny",
        world=dict(static3d=2, video=2, scarce4d=2, heldout=2, frames=4, size=32, gaussians=300, views=3),
        train_preset="tiny", stage_steps=(2, 2, 2, 2), teacher_steps=2,
        train_overrides={"data.frames": 4, "data.resolution": 32, "data.batch_size": 2, "train.ckpt_every": 1,
                         "train.keep_checkpoints": 1, "train.ema_decay": 0.9},
        vae=dict(TINY_VAE), vae_steps=2, vae_batch=4, vae_lr=1e-3,
        inference_steps=2, guidance_scale=1.0, prior_steps=1,
        construct=dict(coarse_iters=4, fine_iters=3, init_points=200, max_sh_degree=0, coarse_batch=2,
                       hexplane_channels=4, hexplane_resolution=[8, 4], mlp_width=16, lambda_lpips=0.0,
                       hexplane_backend="grid_sample", eval_max_frames=16),
        scarcity=(1, 2)),
    "quick": ReproPreset(
        name="quick",
        world=dict(static3d=64, video=64, scarce4d=32, heldout=4, frames=16, size=64, gaussians=2000, views=8),
        train_preset="small", stage_steps=(100, 100, 30, 100), teacher_steps=100,
        train_overrides={"data.frames": 16, "data.resolution": 64, "data.batch_size": 32, "train.ckpt_every": 100},
        vae=SMALL_VAE, vae_steps=200, vae_batch=32, vae_lr=2e-4,
        inference_steps=25, guidance_scale=3.0, prior_steps=3,
        construct=dict(coarse_iters=600, fine_iters=300, init_points=2000),
        scarcity=(8, 16, 32)),
    "small": ReproPreset(
        # sized for two 10-minute GPU calls (Table 1 with three seeds, then w/o Orster and more), the
        # runs of a protocol spread over processes (--jobs); the UNet is the small training preset's
        # at half width (6.5M parameters: a shipped float16 pipeline of about 25 MB)
        name="small",
        world=dict(static3d=512, video=512, scarce4d=128, heldout=8, frames=16, size=64, gaussians=2000, views=8),
        train_preset="small", stage_steps=(250, 250, 40, 200), teacher_steps=400,
        train_overrides={"data.frames": 16, "data.resolution": 64, "data.num_workers": 3,
                         "model.unet": COMPACT_UNET, "train.ckpt_every": 100, "train.keep_checkpoints": 1},
        stage_overrides={3: {"data.batch_size": 32}, 4: {"data.batch_size": 32}},
        vae=SMALL_VAE, vae_steps=600, vae_batch=32, vae_lr=2e-4,
        inference_steps=20, guidance_scale=3.0, prior_steps=3,
        construct=dict(coarse_iters=600, fine_iters=300, init_points=2000),
        asset_kinds=("image",), asset_objects=4,
        scarcity=(32, 64, 128)),
}


def get_preset(name: str) -> ReproPreset:
    if name not in PRESETS:
        raise ValueError(f"--preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]
