"""Frozen teachers for the Orster transfer and their feature hooks.

A teacher is a local diffusers folder holding a ``UNet3DConditionModel`` (the 3D-aware
multi-view video UNet used as spatial teacher, or a ModelScope-T2V-like temporal teacher) or an
``I2VGenXLUNet`` (temporal teacher for images). It is loaded frozen, in eval mode, in bf16 on GPU
(float32 on CPU). Both teachers see the same noised latent video at the same timestep, with a
null condition (zero text context, zero image latent/embedding, fps 8), so their features are
aligned token for token with the student's.

``TeacherMap`` (the config): a list of entries
``{"teacher": "spatial"|"temporal", "block": <teacher block>, "student": <student block>}``.
The spatial entries' student blocks are tapped in the student's spatial channel, the temporal
entries' in its temporal channel. Hooked features are returned as ``[B, C, T, h', w']`` float32.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from orster4d.generation.models.base import diffusers_load_kwargs, freeze, module_by_name, require_dir, require_file
from orster4d.generation.models.unet4d import FeatureTaps, TapsComplete

TEACHER_CLASSES = ("UNet3DConditionModel", "I2VGenXLUNet")
ROLES = ("spatial", "temporal")


def load_teacher_unet(folder: str, role: str, device="cpu", dtype: Optional[torch.dtype] = None):
    """Load a teacher UNet from a local diffusers folder; errors name the role and the folder."""
    import diffusers

    what = f"{role} teacher"
    require_dir(folder, what)
    cfg_path = require_file(os.path.join(folder, "config.json"), what)
    try:
        with open(cfg_path) as f:
            cls_name = json.load(f).get("_class_name")
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} at {folder} does not load: config.json is not JSON ({e})") from None
    if cls_name not in TEACHER_CLASSES:
        raise ValueError(f"{what} at {folder} does not load: class {cls_name!r} is not one of {TEACHER_CLASSES}")
    if not any(os.path.isfile(os.path.join(folder, n))
               for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        raise FileNotFoundError(f"{what}: required file not found: "
                                f"{os.path.join(folder, 'diffusion_pytorch_model.safetensors')}")
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    try:
        model = getattr(diffusers, cls_name).from_pretrained(folder, torch_dtype=dtype, **diffusers_load_kwargs())
    except Exception as e:  # diffusers raises many kinds; report them uniformly
        raise ValueError(f"{what} at {folder} does not load: {type(e).__name__}: {e}") from None
    return freeze(model).to(device)


_BLOCK_RE = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.|^(mid_block)\.")


def block_level(unet_config: dict, block: str) -> Tuple[int, int]:
    """``(channels, downsampling level)`` of a hookable block output of a ``UNet3DConditionModel``.

    Supports ``transformer_in``, ``down_blocks.i.*``, ``mid_block.*``, ``up_blocks.i.*`` (the
    outputs of resnets/attentions/temp_convs/temp_attentions, which keep their block's width).
    """
    chans = list(unet_config["block_out_channels"])
    n = len(chans)
    if block == "transformer_in":
        return chans[0], 0
    m = _BLOCK_RE.match(block)
    if m is None:
        raise ValueError(f"block {block!r}: cannot infer its feature shape (expected down_blocks.i.*, "
                         f"mid_block.*, up_blocks.i.* or transformer_in)")
    if m.group(3):
        return chans[-1], n - 1
    i = int(m.group(2))
    if m.group(1) == "down_blocks":
        return chans[i], i
    return list(reversed(chans))[i], n - 1 - i


def promised_shape(unet_config: dict, block: str, batch: int, frames: int, h: int, w: int) -> Tuple[int, ...]:
    """Shape ``[B, C, T, h', w']`` a hook at ``block`` returns for a latent of ``[B, *, T, h, w]``."""
    c, lvl = block_level(unet_config, block)
    hh, ww = h, w
    for _ in range(lvl):
        hh, ww = (hh + 1) // 2, (ww + 1) // 2
    return (batch, c, frames, hh, ww)


class Teacher(nn.Module):
    """A frozen teacher UNet with forward hooks at ``blocks``; ``forward`` returns their features."""

    def __init__(self, unet, role: str, blocks: Sequence[str]):
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"teacher role: expected one of {ROLES}, got {role!r}")
        self.unet = unet
        self.role = role
        self.blocks = list(blocks)
        self.taps = FeatureTaps(unet, self.blocks, f"{role} teacher", stop_when_complete=True)

    @property
    def unet_config(self) -> dict:
        return dict(self.unet.config)

    @torch.no_grad()
    def forward(self, z_t: torch.Tensor, timestep: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``z_t [B, C, T, h, w]``, ``timestep [B]`` -> ``{block: [B, C', T, h', w']}`` (float32).

        The forward pass stops after the last hooked block: the layers behind it are not run.
        """
        u = self.unet
        dt = next(u.parameters()).dtype
        b = z_t.shape[0]
        z = z_t.to(dt)
        ctx = torch.zeros(b, 1, u.config.cross_attention_dim, device=z.device, dtype=dt)
        self.taps.active, self.taps.num_frames, self.taps.features = True, z_t.shape[2], {}
        try:
            with torch.autocast(z.device.type, dtype=dt, enabled=z.device.type == "cuda" and dt != torch.float32):
                try:
                    if type(u).__name__ == "I2VGenXLUNet":
                        u(z, timestep, fps=torch.full((b,), 8, device=z.device), image_latents=torch.zeros_like(z),
                          image_embeddings=torch.zeros(b, u.config.cross_attention_dim, device=z.device, dtype=dt),
                          encoder_hidden_states=ctx, return_dict=False)
                    else:
                        u(z, timestep, encoder_hidden_states=ctx, return_dict=False)
                except TapsComplete:
                    pass
            missing = [n for n in self.blocks if n not in self.taps.features]
            if missing:
                raise RuntimeError(f"{self.role} teacher: hooked blocks {missing} did not run in the forward pass")
            return {k: v.float() for k, v in self.taps.features.items()}
        finally:
            self.taps.active, self.taps.features = False, {}


def validate_teacher_map(entries: List[dict]) -> List[dict]:
    out = []
    for i, e in enumerate(entries):
        missing = {"teacher", "block", "student"} - set(e)
        if missing:
            raise ValueError(f"teacher_map[{i}]: missing keys {sorted(missing)} (entry {e})")
        if e["teacher"] not in ROLES:
            raise ValueError(f"teacher_map[{i}].teacher: expected one of {ROLES}, got {e['teacher']!r}")
        out.append(dict(e))
    return out


def load_teachers(spatial_dir: str, temporal_dir: str, teacher_map: List[dict], device="cpu",
                  dtype: Optional[torch.dtype] = None) -> Dict[str, Teacher]:
    """Both teachers with hooks at the blocks ``teacher_map`` names (checked to exist)."""
    teacher_map = validate_teacher_map(teacher_map)
    res = {}
    for role, folder in (("spatial", spatial_dir), ("temporal", temporal_dir)):
        blocks = [e["block"] for e in teacher_map if e["teacher"] == role]
        unet = load_teacher_unet(folder, role, device=device, dtype=dtype)
        for b in blocks:
            module_by_name(unet, b, f"{role} teacher at {folder}")
        res[role] = Teacher(unet, role, blocks)
    return res
