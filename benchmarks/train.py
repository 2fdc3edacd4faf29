"""Training benchmarks at the ``small`` preset, with random weights.

    pytest benchmarks/train.py --benchmark-only       # one stage-1 and one stage-2 step, side by side
    python -m benchmarks.train --json report.json     # the four stages [--steps N] [--preset small]

The bench: stage 2's step runs both frozen teachers, the two-channel student forward and
backward, and the Orster transfer; ``extra_info`` records the share of the stage-2 step spent in
the Orster attention (``orster_attention`` calls timed with synchronisation) and the
stage-2/stage-1 ratio. Correctness in the same run: both losses are finite and stage 2 computes
every loss term. The report: for each stage (run in order, each initialised from the previous
one's checkpoint) the median and minimum step time over ``--steps`` optimisation steps on a
fixed batch (after 3 warm-up steps), samples/s, peak allocated memory, the share of the step
spent in the Orster attention and in the teachers (stage 2), the ratio stage-2 step / stage-1
step (target < 2), the loop's samples/s (target for stage 1: 300 clips/s) and a stage-1 sweep over
batch size, gradient checkpointing and cached latents (the first row is the former small preset:
4 clips, checkpointing, latents encoded every step). Steps are timed as the training loop runs
them (``Trainer.batches``: cached latents for stages 1-2). Skips without CUDA.

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
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np
import pytest
import torch

from benchmarks.timing import python_version, report_parser, write_json

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
    """``n`` optimisation steps as the training loop runs them (batches from ``trainer.batches()``:
    the latent bank or the DataLoader), after ``warmup`` steps: the median and minimum of the
    per-step time (each step synchronised), the loop's samples/s (``n`` steps, one
    synchronisation at the end, as the trainer runs between logging steps), and peak memory."""
    it = trainer.batches()
    trainer.module.train()
    for _ in range(warmup):
        trainer.train_step(next(it))
    sync()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: List[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        loss, _ = trainer.train_step(next(it))
        sync()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        loss, _ = trainer.train_step(next(it))
    sync()
    loop_s = time.perf_counter() - t0
    batch = trainer.cfg["data"]["batch_size"]
    return {"step_ms_median": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
            "last_loss": float(loss.detach()), "samples_per_s": batch / statistics.median(times),
            "loop_samples_per_s": n * batch / loop_s}


STAGE1_SWEEP = (  # (batch, gradient checkpointing, cached latents): the first is the former small preset
    (4, True, False), (32, False, False), (32, False, True), (64, False, True), (128, False, True))


def stage1_sweep(ws: Dict[str, str], root: str, steps: int, preset: str) -> List[dict]:
    """Stage-1 throughput over :data:`STAGE1_SWEEP` (same model, data and preset otherwise)."""
    from orster4d.generation.training.trainer import Trainer

    rows = []
    for i, (batch, ckpt, cache) in enumerate(STAGE1_SWEEP):
        cfg = small_config(ws, f"{root}/sweep{i}", 1, steps=1, preset=preset,
                           extra=[f"data.batch_size={batch}", f"model.gradient_checkpointing={json.dumps(ckpt)}",
                                  f"data.cache_latents={json.dumps(cache)}"])
        tr = Trainer(cfg, progress=False)
        res = timed_steps(tr, steps)
        res.update(batch_size=batch, gradient_checkpointing=ckpt, cache_latents=cache)
        rows.append(res)
        print(f"stage 1 sweep: batch {batch}, checkpointing {ckpt}, cached latents {cache}: "
              f"{res['loop_samples_per_s']:.0f} clips/s, peak {res['peak_mem_gib']} GiB", flush=True)
        del tr
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------ pytest-benchmark
_STATE = {}


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    from orster4d.generation.training.trainer import Trainer

    root = str(tmp_path_factory.mktemp("bench_train"))
    ws = make_small_workspace(root + "/ws")
    out = root + "/run"
    t1 = Trainer(small_config(ws, out, 1, steps=1), progress=False)
    t1.train()  # writes stage 1's final checkpoint, read by stage 2
    t2 = Trainer(small_config(ws, out, 2, steps=1), progress=False)
    return {1: t1, 2: t2}


def _batch(tr):
    return next(tr.batches())  # what the training loop feeds the step (cached latents for stages 1-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the training benchmark needs a CUDA device")
@pytest.mark.parametrize("stage", [1, 2])
def test_train_step(benchmark, trainers, stage):
    tr = trainers[stage]
    batch = _batch(tr)
    loss, logs = tr.train_step(batch)
    assert torch.isfinite(loss)
    if stage == 2:
        assert {"ldm", "orster", "orster_nll", "kl"} <= set(logs)

    def run():
        tr.train_step(batch)
        torch.cuda.synchronize()

    benchmark.group = "small preset: one training step"
    benchmark.pedantic(run, warmup_rounds=3, rounds=15, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once for correctness only
        return
    _STATE[stage] = benchmark.stats.stats.median
    if stage == 2:
        with AttentionTimer() as at:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                run()
            total = time.perf_counter() - t0
        benchmark.extra_info["orster_attention_share"] = at.seconds / total
        benchmark.extra_info["orster_attention_calls_per_step"] = at.calls / 5
        if 1 in _STATE:
            benchmark.extra_info["stage2_over_stage1"] = _STATE[2] / _STATE[1]


# ------------------------------------------------------------------ JSON report
def run_report(preset: str, steps: int, device_name: str, sweep: bool = True) -> dict:
    """Time the four stages of ``preset`` in order; returns the report dict."""
    import diffusers

    from orster4d.generation.training.trainer import Trainer

    report = {"gpu": device_name, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "python": python_version(), "preset": preset, "steps_timed": steps, "stages": {}}
    root = tempfile.mkdtemp(prefix="orster4d_train_report_")
    t0 = time.time()
    ws = make_small_workspace(root + "/ws", preset=preset)
    out = root + "/run"
    for stage in (1, 2, 3, 4):
        cfg = small_config(ws, out, stage, steps=1, preset=preset)
        tr = Trainer(cfg, progress=False)
        if stage == 2:
            res = timed_steps(tr, steps)  # warm: kernels compiled, allocator settled
            with AttentionTimer() as at, TeacherTimer() as tt:  # synchronise around calls: a run of their own
                synced = timed_steps(tr, steps, warmup=0)
            for key, timer in (("orster_attention", at), ("teachers", tt)):
                res[f"{key}_ms_per_step"] = 1e3 * timer.seconds / steps
                res[f"{key}_share"] = timer.seconds / steps / (synced["step_ms_median"] / 1e3)
                res[f"{key}_calls_per_step"] = timer.calls / steps
        else:
            res = timed_steps(tr, steps)
        res["config"] = {"resolution": cfg["data"]["resolution"], "frames": cfg["data"]["frames"],
                         "batch_size": cfg["data"]["batch_size"], "bf16": tr.autocast,
                         "gradient_checkpointing": tr.stage.grad_ckpt,
                         "unet_block_out_channels": list(cfg["model"]["unet"]["block_out_channels"])}
        tr.train()  # one more step and the final checkpoint the next stage reads
        report["stages"][str(stage)] = res
        print(f"stage {stage}: {res['step_ms_median']:.1f} ms/step, peak {res['peak_mem_gib']} GiB", flush=True)
        del tr
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    s = report["stages"]
    report["stage2_over_stage1"] = s["2"]["step_ms_median"] / s["1"]["step_ms_median"]
    report["target_stage2_over_stage1_lt_2"] = report["stage2_over_stage1"] < 2.0
    report["stage1_loop_samples_per_s"] = s["1"]["loop_samples_per_s"]
    report["target_stage1_300_clips_per_s"] = s["1"]["loop_samples_per_s"] >= 300
    if sweep:
        report["stage1_sweep"] = stage1_sweep(ws, root, steps, preset)
    report["wall_s"] = time.time() - t0
    return report


def main(argv=None) -> int:
    ap = report_parser("GPU report of training: the small preset's four stages on one GPU")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--no-sweep", action="store_true", help="skip the stage-1 batch / checkpointing / cache sweep")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.train: needs a CUDA device", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    report = run_report(args.preset, args.steps, gpu, sweep=not args.no_sweep)
    write_json(args.json, report)
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))
    print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
