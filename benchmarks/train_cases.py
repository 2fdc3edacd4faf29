"""Shared set-up of the training benchmarks: a ``small``-preset workspace with random weights.

Nothing is downloaded: the image VAE is the tiny random ``AutoencoderKL`` (8x downsampling), the
two teachers are random ``UNet3DConditionModel``s with the small preset's student architecture
(so their forward passes cost what a same-size pretrained teacher would), the CLIP is the tiny
random open_clip model, and the data are smooth synthetic orbital videos at the preset's
resolution and frame count. Timings therefore measure the training machinery, not quality.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Dict, List

import numpy as np
import torch

from orster4d.generation.training.config import resolve_config
from orster4d.generation.training.data import write_video_folder
from orster4d.generation.training.tiny_assets import make_tiny_clip, make_tiny_unet, make_tiny_vae


def make_small_workspace(root: str, n_videos: int = 8, preset: str = "small") -> Dict[str, str]:
    cfg = resolve_config(preset, 1)
    res, frames = cfg["data"]["resolution"], cfg["data"]["frames"]
    unet = cfg["model"]["unet"]
    ws = {k: os.path.join(root, k) for k in ("vae", "teacher_spatial", "teacher_temporal", "clip", "data")}
    make_tiny_vae(ws["vae"], 0)
    make_tiny_unet(ws["teacher_spatial"], 1, **unet)
    make_tiny_unet(ws["teacher_temporal"], 2, **unet)
    make_tiny_clip(ws["clip"], 3)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res] / res
    for i in range(n_videos):
        a, b, c = rng.uniform(2, 7, size=3)
        v = np.stack([np.stack([np.sin(a * xx + 0.4 * t + i), np.cos(b * yy - 0.2 * t), np.sin(c * (xx + yy))], -1)
                      for t in range(frames)]) * 0.5 + 0.5
        write_video_folder(os.path.join(ws["data"], f"video{i}"), v.astype(np.float32), prompt=f"a toy {i}",
                           static=np.repeat(v[:1], frames, 0).astype(np.float32))
    return ws


def small_config(ws: Dict[str, str], out: str, stage: int, steps: int, preset: str = "small", extra=()) -> dict:
    items = {"data.root": ws["data"], "out_dir": out, "train.steps": steps, "model.vae_dir": ws["vae"],
             "teachers.spatial_dir": ws["teacher_spatial"], "teachers.temporal_dir": ws["teacher_temporal"],
             "cond.clip_dir": ws["clip"], "train.ckpt_every": 10 ** 6, "data.num_workers": 2}
    return resolve_config(preset, stage, overrides=[f"{k}={json.dumps(v)}" for k, v in items.items()] + list(extra))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CallTimer:
    """Wraps the callable ``owner.<name>`` to sum its wall time, synchronising the GPU around each
    call (so time inside it is measured exactly; run it apart from the step-time measurement)."""

    def __init__(self, owner, name: str):
        self.owner, self.name = owner, name
        self.orig = getattr(owner, name)
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self):
        def timed(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            out = self.orig(*args, **kwargs)
            sync()
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.orig)


def AttentionTimer() -> CallTimer:
    """Sums the time of ``orster4d.generation.orster.orster_attention`` (the SptAttn / TmprAttn targets)."""
    import orster4d.generation.orster as mod

    return CallTimer(mod, "orster_attention")


def TeacherTimer() -> CallTimer:
    """Sums the time of the frozen teachers' forward passes (``Teacher.forward``)."""
    from orster4d.generation.teachers import Teacher

    return CallTimer(Teacher, "forward")


def timed_steps(trainer, n: int, warmup: int = 3) -> Dict[str, float]:
    """Median seconds of ``n`` optimisation steps on one fixed device batch, plus peak memory."""
    from torch.utils.data import default_collate

    ds = trainer.dataset
    batch = default_collate([ds[i % len(ds)] for i in range(trainer.local_batch)])
    batch = {k: (v.to(trainer.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    trainer.module.train()
    for _ in range(warmup):
        trainer.train_step(batch)
    sync()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: List[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        loss, _ = trainer.train_step(batch)
        sync()
        times.append(time.perf_counter() - t0)
    return {"step_ms_median": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
            "last_loss": float(loss),
            "samples_per_s": trainer.cfg["data"]["batch_size"] / statistics.median(times)}
