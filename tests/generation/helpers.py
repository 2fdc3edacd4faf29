"""Shared tiny fixtures for the diffusion and training tests: random tiny models and videos."""
import os

import numpy as np

from orster4d.generation.training.data import write_video_folder
from orster4d.generation.training.tiny_assets import make_tiny_assets


def make_videos(root: str, n: int = 2, frames: int = 8, res: int = 32, seed: int = 0) -> str:
    """``n`` smooth moving-pattern videos (with prompt and static video) under ``root``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res] / res
    for i in range(n):
        a, b, c = rng.uniform(2, 7, size=3)
        v = np.stack([np.stack([np.sin(a * xx + 0.5 * t + i), np.cos(b * yy - 0.3 * t), np.sin(c * (xx + yy))], -1)
                      for t in range(frames)]) * 0.5 + 0.5
        write_video_folder(os.path.join(root, f"video{i}"), v.astype(np.float32), prompt=f"a toy {i}",
                           static=np.repeat(v[:1], frames, 0).astype(np.float32))
    return root


def make_workspace(root: str) -> dict:
    paths = make_tiny_assets(os.path.join(root, "assets"), seed=0)
    paths["data"] = make_videos(os.path.join(root, "data"))
    return paths


def tiny_overrides(ws: dict, out_dir: str, steps: int = 6, **extra) -> list:
    items = {
        "data.root": ws["data"], "out_dir": out_dir, "train.steps": steps, "model.vae_dir": ws["vae"],
        "teachers.spatial_dir": ws["teacher_spatial"], "teachers.temporal_dir": ws["teacher_temporal"],
        "cond.clip_dir": ws["clip"], "train.ckpt_every": 1000, "train.ema_decay": 0.9,
    }
    items.update(extra)
    import json
    return [f"{k}={json.dumps(v)}" for k, v in items.items()]
