#!/usr/bin/env python3
"""GPU report of training: the ``small`` preset's four stages on one GPU.

For each stage (run in order, each initialised from the previous one's checkpoint): median and
minimum step time over ``--steps`` optimisation steps on a fixed batch (after 3 warm-up steps),
samples/s, peak allocated memory, the share of the step spent in the Orster attention (stage 2),
and the target ratio stage-2 step / stage-1 step (target < 3). Weights are random (nothing is
downloaded; see ``benchmarks/train_cases.py``), so only speed and memory are meaningful.

Usage: python scripts/gpu_train_report.py [--out PATH] [--steps N] [--preset small]
Writes JSON (default ``benchmarks/results/train_<gpu-name>.json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_cases import AttentionTimer, TeacherTimer, make_small_workspace, small_config, timed_steps  # noqa: E402


def run_report(preset: str, steps: int, device_name: str) -> dict:
    """Time the four stages of ``preset`` in order; returns the report dict."""
    import diffusers

    from orster4d.generation.training.trainer import Trainer

    report = {"gpu": device_name, "torch": torch.__version__, "diffusers": diffusers.__version__,
              "python": platform.python_version(), "preset": preset, "steps_timed": steps, "stages": {}}
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
    report["target_stage2_over_stage1_lt_3"] = report["stage2_over_stage1"] < 3.0
    report["wall_s"] = time.time() - t0
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--preset", default="small")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_train_report: needs a CUDA device", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    report = run_report(args.preset, args.steps, gpu)
    name = "".join(c if c.isalnum() else "_" for c in gpu)
    path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"train_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
