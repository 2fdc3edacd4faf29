"""Stage-4 conditions: text, first-view image I0 and static 3D (Eq. 16), with condition dropout.

- Frozen CLIP (open_clip) from a local folder holding ``open_clip_config.json``
  (``{"model_cfg": {...open_clip CLIP kwargs...}}`` or ``{"model_name": "ViT-B-32"}`` for a built-in
  architecture) and ``open_clip_model.safetensors`` (or ``.bin``/``.pt``): never downloaded.
- Text: the tokens of the text transformer after ``ln_final`` ``[B, L, width]`` -> linear -> context.
- Image: CLIP image embedding of I0 ``[B, E]`` -> linear -> one context token; plus the VAE latent of
  I0 broadcast over frames, through a zero-initialised 1x1x1 conv, added to the UNet input.
- Static 3D: the static object's orbital video, VAE-encoded ``[B, C, T, h, w]``, through a
  zero-initialised 1x1x1 conv added to the UNet input, plus its mean-pooled latent as a token.
- Dropout: each sample's condition is replaced by the null condition (zero context token, no
  latent input) with probability ``p_drop``: the unconditional branch of classifier-free guidance.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import register_to_config

from orster4d.generation.models.base import SavedModel, freeze, require_dir, require_file

CLIP_CONFIG = "open_clip_config.json"
CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_model.bin", "open_clip_model.pt")
CONDITION_KINDS = ("text", "image", "static3d")


def save_clip(model, folder: str, model_cfg: dict) -> None:
    """Write an open_clip ``CLIP`` model in the folder layout ``load_clip`` reads."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CLIP_CONFIG), "w") as f:
        json.dump({"model_cfg": model_cfg}, f, indent=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, CLIP_WEIGHTS[0]))


def load_clip(folder: str, device="cpu"):
    """Frozen open_clip ``CLIP`` from a local folder (see module doc)."""
    import open_clip
    from open_clip.model import CLIP

    require_dir(folder, "CLIP condition encoder")
    with open(require_file(os.path.join(folder, CLIP_CONFIG), "CLIP condition encoder")) as f:
        meta = json.load(f)
    cfg = meta.get("model_cfg") or open_clip.get_model_config(meta["model_name"])
    if cfg is None:
        raise ValueError(f"{folder}/{CLIP_CONFIG}: unknown open_clip model_name {meta.get('model_name')!r}")
    weights = [os.path.join(folder, n) for n in CLIP_WEIGHTS if os.path.isfile(os.path.join(folder, n))]
    if not weights:
        raise FileNotFoundError(f"CLIP condition encoder: required file not found: "
                                f"{os.path.join(folder, CLIP_WEIGHTS[0])} (weights are never downloaded)")
    model = CLIP(**cfg)
    if weights[0].endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(weights[0])
    else:
        state = torch.load(weights[0], map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    model.load_state_dict(state)
    return freeze(model).to(device)


def clip_text_tokens(clip, prompts: List[str]) -> torch.Tensor:
    """Per-token text features ``[B, L, width]`` of a frozen open_clip ``CLIP``."""
    import open_clip

    dev = clip.positional_embedding.device
    tokens = open_clip.tokenize(prompts, context_length=clip.context_length).to(dev)
    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    return clip.ln_final(x)


def clip_image_embedding(clip, images: torch.Tensor) -> torch.Tensor:
    """``images [B, H, W, 3]`` in [0, 1] -> CLIP image embedding ``[B, E]`` (resized, normalised)."""
    size = clip.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    x = F.interpolate(images.permute(0, 3, 1, 2).float(), size=tuple(size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=x.device)[None, :, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=x.device)[None, :, None, None]
    return clip.encode_image((x - mean) / std)


class ConditionAdapter(SavedModel):
    """Trainable maps from frozen condition features to the UNet's context and input latents."""

    @register_to_config
    def __init__(self, kind: str, context_dim: int, text_width: int = 0, image_embed_dim: int = 0,
                 latent_channels: int = 4):
        super().__init__()
        if kind not in CONDITION_KINDS:
            raise ValueError(f"condition kind: expected one of {CONDITION_KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "text":
            self.proj = nn.Linear(text_width, context_dim)
        elif kind == "image":
            self.proj = nn.Linear(image_embed_dim, context_dim)
        else:
            self.proj = nn.Linear(latent_channels, context_dim)
        if kind in ("image", "static3d"):
            self.latent_in = nn.Conv3d(latent_channels, latent_channels, 1)
            nn.init.zeros_(self.latent_in.weight)
            nn.init.zeros_(self.latent_in.bias)

    def forward(self, feats: Dict[str, torch.Tensor], keep: torch.Tensor,
                num_frames: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``feats``: ``text_tokens [B, L, W]`` | ``image_embed [B, E]`` + ``image_latent [B, C, 1, h, w]``
        | ``static_latent [B, C, T, h, w]``; ``keep [B]`` bool (False = dropped).

        Returns ``(context [B, L', D], latent_cond [B, C, T, h, w] or None)``; dropped samples get a
        zero context and zero latent input (the null condition).
        """
        k = keep.to(torch.float32)
        if self.kind == "text":
            ctx = self.proj(feats["text_tokens"].float())
            lat = None
        elif self.kind == "image":
            ctx = self.proj(feats["image_embed"].float())[:, None]
            il = feats["image_latent"]
            lat = self.latent_in(il.expand(-1, -1, num_frames, -1, -1))
        else:
            sl = feats["static_latent"]
            ctx = self.proj(sl.mean(dim=(2, 3, 4)))[:, None]
            lat = self.latent_in(sl)
        ctx = ctx * k[:, None, None]
        if lat is not None:
            lat = lat * k[:, None, None, None, None]
        return ctx, lat


class ConditionEncoder(nn.Module):
    """Frozen encoders (CLIP, image VAE) producing the features ``ConditionAdapter`` consumes.

    Not a saved model: it holds no weights of its own (CLIP is stored in its open_clip layout by
    :func:`save_clip`, the VAE as a diffusers folder) and its arguments are models, not config."""

    def __init__(self, kind: str, clip=None, vae=None):
        super().__init__()
        if kind in ("text", "image") and clip is None:
            raise ValueError(f"condition kind {kind!r} needs a CLIP model (cond.clip_dir)")
        self.kind = kind
        self.clip = clip
        self.vae = vae

    @torch.no_grad()
    def forward(self, batch: Dict) -> Dict[str, torch.Tensor]:
        from orster4d.generation.models.vae import encode_video

        if self.kind == "text":
            return {"text_tokens": clip_text_tokens(self.clip, list(batch["prompt"]))}
        if self.kind == "image":
            i0 = batch["video"][:, 0]
            return {"image_embed": clip_image_embedding(self.clip, i0),
                    "image_latent": encode_video(self.vae, i0[:, None])}
        if "static_video" not in batch:
            raise ValueError("static3d condition: the data has no static orbital video ('static_video')")
        return {"static_latent": encode_video(self.vae, batch["static_video"])}

    def feature_dims(self) -> Dict[str, int]:
        if self.clip is None:
            return {}
        return {"text_width": int(self.clip.transformer.width),
                "image_embed_dim": int(self.clip.visual.output_dim)}


def null_context(batch: int, context_dim: int, device, dtype=torch.float32) -> torch.Tensor:
    """The unconditional context (one zero token) ``[B, 1, D]`` used by stages 1-3 and CFG."""
    return torch.zeros(batch, 1, context_dim, device=device, dtype=dtype)
