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
- ``STD4DConditioner``: one adapter per kind plus learned video-mode tokens in one fixed context
  layout, so one model serves every condition (stage 4 and the released pipeline).

``ConditionAdapter``, ``STD4DConditioner`` and ``CLIPConditionEncoder`` are the package's saved
models (``SavedModel``: diffusers ``ModelMixin`` + ``ConfigMixin``).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from diffusers import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks the base class up here)
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


def clip_feature_dims(clip) -> Dict[str, int]:
    """The sizes the condition adapters need from an open_clip ``CLIP``: ``text_width`` (channels per
    text token), ``text_length`` (tokens per prompt) and ``image_embed_dim``."""
    return {"text_width": int(clip.transformer.width), "text_length": int(clip.context_length),
            "image_embed_dim": int(clip.visual.output_dim)}


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
    dtype = next(clip.visual.parameters()).dtype  # a pipeline cast to bf16 casts the encoder too
    return clip.encode_image(((x - mean) / std).to(dtype))


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
        dt = self.proj.weight.dtype  # the adapter's own dtype (float32, or bf16 in a cast pipeline)
        if self.kind == "text":
            ctx = self.proj(feats["text_tokens"].to(dt))
            lat = None
        elif self.kind == "image":
            ctx = self.proj(feats["image_embed"].to(dt))[:, None]
            il = feats["image_latent"].to(dt)
            lat = self.latent_in(il.expand(-1, -1, num_frames, -1, -1))
        else:
            sl = feats["static_latent"].to(dt)
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
        return {} if self.clip is None else clip_feature_dims(self.clip)


def null_context(batch: int, context_dim: int, device, dtype=torch.float32) -> torch.Tensor:
    """The unconditional context (one zero token) ``[B, 1, D]`` used by stages 1-3 and CFG."""
    return torch.zeros(batch, 1, context_dim, device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# One model for all conditions (stage 4 and the released pipeline)
# ------------------------------------------------------------------------------------------------
VIDEO_MODES = ("orbit", "static", "reference")



class STD4DConditioner(SavedModel):
    """Every condition kind's adapter and the video-mode token, in one context layout.

    The context handed to the UNet's cross-attention is ``[B, L, D]`` with fixed slots, in order:
    ``text_length`` text tokens (when ``"text"`` is a kind), one image token (``"image"``), one
    static-3D token (``"static3d"``) and one video-mode token. A sample conditioned on one kind
    fills that kind's slots; the other kinds' slots are zero. The null condition (classifier-free
    guidance's unconditional branch, and condition dropout in training) zeroes every condition
    slot and adds no latent input, but keeps the mode token.

    Video modes (``modes``, the ones trained): ``orbit`` (the orbital video of the moving object),
    ``static`` (the same orbit with the object frozen at t = 0: "motion off") and ``reference`` (the
    fixed reference-view camera of frame 0 while the object moves). Each is a learned token,
    zero at initialisation.

    Saved as a diffusers model folder (``config.json`` + ``diffusion_pytorch_model.safetensors``).
    """

    @register_to_config
    def __init__(self, kinds=CONDITION_KINDS, context_dim: int = 32, text_width: int = 0, text_length: int = 0,
                 image_embed_dim: int = 0, latent_channels: int = 4, modes=("orbit",)):
        super().__init__()
        kinds, modes = list(kinds), list(modes)
        if not kinds or any(k not in CONDITION_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(f"condition kinds: expected distinct entries of {CONDITION_KINDS}, got {kinds}")
        if not modes or modes[0] != "orbit" or any(m not in VIDEO_MODES for m in modes):
            raise ValueError(f"video modes: expected 'orbit' first, then any of {VIDEO_MODES[1:]}, got {modes}")
        if "text" in kinds and (text_width < 1 or text_length < 1):
            raise ValueError("text condition: text_width and text_length (the CLIP text width and context "
                             "length) must be set")
        self.kinds, self.modes = kinds, modes
        self.adapters = nn.ModuleDict({k: ConditionAdapter(k, context_dim, text_width=text_width,
                                                           image_embed_dim=image_embed_dim,
                                                           latent_channels=latent_channels) for k in kinds})
        self.mode_tokens = nn.Parameter(torch.zeros(len(modes), context_dim))

    @property
    def context_length(self) -> int:
        return sum(self.config.text_length if k == "text" else 1 for k in self.kinds) + 1

    def kind_index(self, kind: str) -> int:
        if kind not in self.kinds:
            raise ValueError(f"condition kind {kind!r}: this model was trained for {self.kinds} only")
        return self.kinds.index(kind)

    def mode_index(self, mode: str) -> int:
        if mode not in self.modes:
            raise ValueError(f"video mode {mode!r}: this model was trained for {self.modes} only")
        return self.modes.index(mode)

    def forward(self, feats: Dict[str, torch.Tensor], kind_ids: torch.Tensor, mode_ids: torch.Tensor,
                num_frames: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Context and latent input for a batch.

        ``feats``: the frozen features of any subset of the kinds (``ConditionEncoder``'s keys, batch
        ``B``); ``kind_ids [B]`` long: the index into ``kinds`` each sample is conditioned on, ``-1``
        for the null condition (a kind whose features are absent must not be selected);
        ``mode_ids [B]`` long: index into ``modes``.

        Returns ``(context [B, context_length, D], latent_cond [B, C, num_frames, h, w] or None)``.
        """
        b = kind_ids.shape[0]
        dev = self.mode_tokens.device
        slots, latent = [], None
        for i, kind in enumerate(self.kinds):
            keep = kind_ids.to(dev) == i
            n = self.config.text_length if kind == "text" else 1
            if not _has_feats(kind, feats):
                if bool(keep.any()):
                    raise ValueError(f"condition kind {kind!r} selected but its features are missing")
                slots.append(self.mode_tokens.new_zeros(b, n, self.config.context_dim))
                continue
            ctx, lat = self.adapters[kind](feats, keep, num_frames)
            if ctx.shape[1] != n:
                raise ValueError(f"{kind} condition: {ctx.shape[1]} tokens, the model's layout has {n}")
            slots.append(ctx)
            if lat is not None:
                latent = lat if latent is None else latent + lat
        slots.append(self.mode_tokens[mode_ids.to(dev)][:, None])
        return torch.cat(slots, dim=1), latent


_FEATURE_KEYS = {"text": ("text_tokens",), "image": ("image_embed", "image_latent"), "static3d": ("static_latent",)}


def _has_feats(kind: str, feats: Dict[str, torch.Tensor]) -> bool:
    return all(k in feats for k in _FEATURE_KEYS[kind])


class CLIPConditionEncoder(SavedModel):
    """A frozen open_clip ``CLIP`` as a diffusers model (so a pipeline folder holds it).

    ``model_cfg``: open_clip ``CLIP`` keyword arguments. ``clip`` is the model itself, used by
    ``clip_text_tokens`` / ``clip_image_embedding``.
    """

    @register_to_config
    def __init__(self, model_cfg: dict):
        super().__init__()
        from open_clip.model import CLIP

        self.clip = CLIP(**model_cfg)
        freeze(self)

    @classmethod
    def from_open_clip_folder(cls, folder: str) -> "CLIPConditionEncoder":
        """From the local open_clip folder layout of :func:`load_clip`."""
        import open_clip

        with open(require_file(os.path.join(require_dir(folder, "CLIP condition encoder"), CLIP_CONFIG),
                               "CLIP condition encoder")) as f:
            meta = json.load(f)
        cfg = meta.get("model_cfg") or open_clip.get_model_config(meta["model_name"])
        enc = cls(model_cfg=cfg)
        enc.clip.load_state_dict(load_clip(folder).state_dict())
        return freeze(enc)

    def feature_dims(self) -> Dict[str, int]:
        return clip_feature_dims(self.clip)
