"""Training configuration: presets, JSON config files and ``key.sub=value`` overrides.

A config is a nested dict. ``resolve_config(preset, stage, files, overrides)`` starts from
``DEFAULTS``, applies the preset, then each JSON file, then each override
(``train.lr=1e-4``, ``data.root=/path``, values parsed as JSON when they parse, else strings).
The resolved config is saved as ``config.json`` inside every checkpoint.

Presets:
- ``tiny``: CPU, 32x32, 8 frames, tiny UNet (block_out_channels (32, 64)), a stage in minutes.
- ``small``: one GPU, 64x64, 16 frames, a 3-level UNet, bf16, 128 clips a step, no gradient checkpointing.
- ``paper``: 256x256, 16 frames, 5,000 iterations per stage, backbone and teachers from local
  pretrained folders (``model.backbone_dir``, ``teachers.spatial_dir``, ``teachers.temporal_dir``).
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Dict, Iterable

from orster4d.generation.training.tiny_assets import TINY_TEACHER_MAP, TINY_UNET

STAGES = (1, 2, 3, 4)

DEFAULTS: Dict[str, Any] = {
    "stage": 1,
    "preset": "tiny",
    "seed": 0,
    "out_dir": "runs/orster4d",
    "init": None,  # previous stage's checkpoint folder; default <out_dir>/stage{N-1}/final
    "device": "auto",  # auto | cpu | cuda
    # cache_latents: "auto" (on for the stages whose loss reads only the clean latents: 1 and 2), true, false
    "data": {"root": None, "frames": 8, "resolution": 32, "batch_size": 2, "num_workers": 0, "cache_latents": "auto"},
    "model": {
        "unet": dict(TINY_UNET),
        "backbone_dir": None,  # pretrained UNet3DConditionModel folder for stage 1
        "vae_dir": None,
        "mode": "two_channel",  # two_channel | no_disentangle | no_spatial | no_temporal
        "fusion_hidden": 64,
        "dvae_hidden": 32,
        "gradient_checkpointing": "auto",  # auto = on for CUDA
    },
    "teachers": {"spatial_dir": None, "temporal_dir": None, "map": [dict(e) for e in TINY_TEACHER_MAP]},
    "orster": {"weight": 1.0, "lambda_o": 0.5, "options": {}},
    "loss": {"beta_kl": 1e-4, "ortho": 0.0, "ldm_stage3": 1.0, "l_rec": 1.0, "l_perc": 0.0,
             "l_temp": 0.1, "l_align": 0.1, "lpips_dir": None},
    # kind: text | image | static3d | mixed (all three, mixed in each batch: one model for all conditions);
    # modes: "auto" (every video mode the data has) or a list from orbit, static, reference; p_static /
    # p_reference: the share of samples trained in the static (motion off) / reference-view mode.
    "cond": {"kind": "mixed", "clip_dir": None, "p_drop": 0.1, "modes": "auto", "p_static": 0.2,
             "p_reference": 0.2},
    "noise": {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
              "beta_start": 0.00085, "beta_end": 0.012},
    "train": {"steps": 30, "lr": 1e-3, "weight_decay": 0.0, "warmup": 0, "grad_clip": 1.0,
              "ema_decay": 0.999, "ckpt_every": 10, "keep_checkpoints": 3, "log_every": 1, "mixed_precision": "auto",
              "tensorboard": True, "ddp_bucket_mb": 25},
}

PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": {},
    "small": {
        # 128 clips a step and no gradient checkpointing: a step costs about the same host time at 4
        # or 128 clips (it is launch-bound), so the larger batch is ~4.6x the clips/s of 32 on an H200
        # (benchmarks/results/train_*.json: stage-1 sweep); peak memory 12 GiB at stage 1.
        "data": {"frames": 16, "resolution": 64, "batch_size": 128, "num_workers": 8},
        "model": {"gradient_checkpointing": False, "unet": dict(TINY_UNET, block_out_channels=(64, 128, 256), norm_num_groups=32,
                               down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
                               up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
                               cross_attention_dim=256, attention_head_dim=32, layers_per_block=1)},
        "teachers": {"map": [
            {"teacher": "spatial", "block": "down_blocks.1.attentions.0", "student": "down_blocks.1.attentions.0"},
            {"teacher": "temporal", "block": "down_blocks.1.temp_attentions.0",
             "student": "down_blocks.1.temp_attentions.0"}]},
        "train": {"steps": 1000, "lr": 2e-4, "ckpt_every": 250, "log_every": 10, "warmup": 50},
    },
    "paper": {
        "data": {"frames": 16, "resolution": 256, "batch_size": 8, "num_workers": 8},
        "model": {"unet": None},  # architecture comes from model.backbone_dir
        "teachers": {"map": [
            {"teacher": "spatial", "block": "down_blocks.2.attentions.0", "student": "down_blocks.2.attentions.0"},
            {"teacher": "temporal", "block": "down_blocks.2.temp_attentions.0",
             "student": "down_blocks.2.temp_attentions.0"}]},
        "cond": {"p_drop": 0.1},
        "train": {"steps": 5000, "lr": 5e-5, "ckpt_every": 500, "log_every": 10, "warmup": 100},
    },
}


def deep_update(base: dict, upd: dict) -> dict:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k not in ("unet",):
            deep_update(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("none", "null"):
            return None
        if low in ("true", "false"):
            return low == "true"
        return text


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``a.b.c=value`` override; unknown keys are errors (typos must not pass silently)."""
    if "=" not in item:
        raise ValueError(f"override {item!r}: expected key.sub=value")
    key, val = item.split("=", 1)
    parts = key.strip().split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ValueError(f"override {item!r}: unknown config section {p!r}")
        node = node[p]
    if parts[-1] not in node and not (parts[0] == "model" and len(parts) > 2 and parts[1] == "unet") \
            and not (parts[:2] == ["orster", "options"]):
        raise ValueError(f"override {item!r}: unknown config key {key!r}")
    node[parts[-1]] = parse_value(val)


def resolve_config(preset: str = "tiny", stage: int = 1, files: Iterable[str] = (),
                   overrides: Iterable[str] = ()) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    check_stage(stage)
    cfg = copy.deepcopy(DEFAULTS)
    deep_update(cfg, PRESETS[preset])
    cfg["preset"], cfg["stage"] = preset, int(stage)
    for path in files:
        with open(path) as f:
            deep_update(cfg, json.load(f))
    for item in overrides:
        apply_override(cfg, item)
    check_stage(cfg["stage"])
    if cfg["stage"] == 1 and cfg["model"]["unet"] is None and not cfg["model"]["backbone_dir"]:
        raise ValueError("model.unet is unset (paper preset): set model.backbone_dir to a pretrained "
                         "UNet3DConditionModel folder")
    from orster4d.generation.models.conditions import CONDITION_KINDS
    from orster4d.generation.models.unet4d import MODES

    if cfg["model"]["mode"] not in MODES:
        raise ValueError(f"model.mode: expected one of {MODES}, got {cfg['model']['mode']!r}")
    if cfg["cond"]["kind"] not in CONDITION_KINDS + ("mixed",):
        raise ValueError(f"cond.kind: expected one of {CONDITION_KINDS + ('mixed',)}, got {cfg['cond']['kind']!r}")
    check_ranges(cfg)
    return cfg


# Every count, size, rate and weight of the config: key -> (kind, low, high, low_open, high_open,
# null_means). ``kind`` is "int" or "float"; ``None`` bounds are open-ended; a key with
# ``null_means`` also accepts null (JSON) for that named meaning instead of a magic zero.
RANGES: Dict[str, tuple] = {
    "seed": ("int", 0, None, False, False, None),
    "data.frames": ("int", 1, None, False, False, None),
    "data.resolution": ("int", 1, None, False, False, None),
    "data.batch_size": ("int", 1, None, False, False, None),
    "data.num_workers": ("int", 0, None, False, False, None),
    "model.fusion_hidden": ("int", 1, None, False, False, None),
    "model.dvae_hidden": ("int", 1, None, False, False, None),
    "orster.weight": ("float", 0, None, False, False, None),
    "orster.lambda_o": ("float", 0, 1, False, False, None),
    "loss.beta_kl": ("float", 0, None, False, False, None),
    "loss.ortho": ("float", 0, None, False, False, None),
    "loss.ldm_stage3": ("float", 0, None, False, False, None),
    "loss.l_rec": ("float", 0, None, False, False, None),
    "loss.l_perc": ("float", 0, None, False, False, None),
    "loss.l_temp": ("float", 0, None, False, False, None),
    "loss.l_align": ("float", 0, None, False, False, None),
    "cond.p_drop": ("float", 0, 1, False, True, None),
    "cond.p_static": ("float", 0, 1, False, False, None),
    "cond.p_reference": ("float", 0, 1, False, False, None),
    "noise.num_train_timesteps": ("int", 1, None, False, False, None),
    "noise.beta_start": ("float", 0, 1, True, True, None),
    "noise.beta_end": ("float", 0, 1, True, True, None),
    "train.steps": ("int", 1, None, False, False, None),
    "train.lr": ("float", 0, None, True, False, None),
    "train.weight_decay": ("float", 0, None, False, False, None),
    "train.warmup": ("int", 0, None, False, False, None),
    "train.grad_clip": ("float", 0, None, True, False, "no gradient clipping"),
    "train.ema_decay": ("float", 0, 1, False, True, None),
    "train.ckpt_every": ("int", 1, None, False, False, None),
    "train.keep_checkpoints": ("int", 1, None, False, False, "keep every checkpoint"),
    "train.log_every": ("int", 1, None, False, False, None),
    "train.ddp_bucket_mb": ("float", 0, None, True, False, None),
}


def _describe(kind, lo, hi, lo_open, hi_open, null_means) -> str:
    name = "an integer" if kind == "int" else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    text = f"{name} {' and '.join(parts)}".strip()
    return text + (f", or null for {null_means}" if null_means else "")


def check_ranges(cfg: dict) -> None:
    """Raise ValueError naming the key, the value and the allowed range for the first bad value."""
    for key, spec in RANGES.items():
        kind, lo, hi, lo_open, hi_open, null_means = spec
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node is None and null_means:
            continue
        ok = isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node)
        if ok and kind == "int" and not isinstance(node, int):
            ok = False
        if ok and lo is not None:
            ok = node > lo if lo_open else node >= lo
        if ok and hi is not None:
            ok = node < hi if hi_open else node <= hi
        if not ok:
            raise ValueError(f"{key}={node!r}: expected {_describe(*spec)}")
    if cfg["data"].get("cache_latents", "auto") not in ("auto", True, False):
        raise ValueError(f"data.cache_latents={cfg['data']['cache_latents']!r}: expected auto, true or false")
    cc = cfg["cond"]
    if cc["p_static"] + cc["p_reference"] > 1:
        raise ValueError(f"cond.p_static={cc['p_static']!r} + cond.p_reference={cc['p_reference']!r}: "
                         f"the two video-mode shares must sum to at most 1")
    if cfg["noise"]["beta_end"] <= cfg["noise"]["beta_start"]:
        raise ValueError(f"noise.beta_end={cfg['noise']['beta_end']!r} must exceed "
                         f"noise.beta_start={cfg['noise']['beta_start']!r}")


def check_stage(stage: Any) -> int:
    try:
        s = int(stage)
    except (TypeError, ValueError):
        s = None
    if s not in STAGES or str(stage).strip() != str(s):
        raise ValueError(f"stage: unknown stage {stage!r}; expected one of {STAGES}")
    return s


def save_config(cfg: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True, default=list)


def load_config(path: str) -> dict:
    """The config saved by :func:`save_config` (e.g. a checkpoint's ``config.json``)."""
    with open(path) as f:
        return json.load(f)
