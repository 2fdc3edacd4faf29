#!/usr/bin/env python3
"""Markdown tables for docs/ from the committed GPU reports (never type the numbers by hand).

    python scripts/report_tables.py hexplane  benchmarks/results/hexplane_NVIDIA_H100_80GB_HBM3.json
    python scripts/report_tables.py construct benchmarks/results/construct_NVIDIA_H100_80GB_HBM3.json
    python scripts/report_tables.py train     benchmarks/results/train_NVIDIA_H100_80GB_HBM3.json
    python scripts/report_tables.py rasterize benchmarks/results/rasterize_recheck_NVIDIA_H100_80GB_HBM3.json
"""
from __future__ import annotations

import json
import sys


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head, rows) -> str:
    return "\n".join([_row(head), _row(["---"] * len(head))] + [_row(r) for r in rows])


def hexplane(rep: dict) -> str:
    names = {"res64^3x25_N100k": "64^3 x 25, 100k", "res64^3x25_N1000k": "64^3 x 25, 1M",
             "res128^3x25_N100k": "128^3 x 25, 100k", "res128^3x25_N1000k": "128^3 x 25, 1M",
             "res128^3x25_N1000k_shared_t": "128^3 x 25, 1M, one shared t"}
    rows = []
    for key, c in rep["cases"].items():
        g, f = c["grid_sample"], c["fused"]
        rows.append([names.get(key, key), f"{g['fwd_ms']:.3f} / {g['fwd_bwd_ms']:.2f}",
                     f"{f['fwd_ms']:.3f} / {f['fwd_bwd_ms']:.3f}",
                     f"{f['speedup_fwd']:.1f}x / {f['speedup_fwd_bwd']:.1f}x",
                     f"{g['peak_extra_mb_fwd_bwd']:.0f} / {f['peak_extra_mb_fwd_bwd']:.0f}"])
    return _table(["case", "grid_sample fwd / fwd+bwd (ms)", "fused fwd / fwd+bwd (ms)", "speed-up fwd / fwd+bwd",
                   "peak MB composition / fused"], rows)


def _psnr(x):
    return "-" if x is None else f"{x:.2f}"


def construct(rep: dict) -> str:
    out = []
    for section in ("default_schedule_alone", "default_schedule_quality", "variants",
                    "time_resolution_auto_rejected", "before_motion_fix"):
        if section not in rep:
            continue
        rows = []
        for r in rep[section]["runs"]:
            h, k = r["heldout"], r["heldout"].get("psnr_by_kind", {})
            over = ", ".join(f"{a}={b}" for a, b in r["overrides"].items()) or "default"
            rows.append([r["object"], r["backend"], over, f"{r['wall_seconds']:.0f}", r["num_gaussians"],
                         _psnr(r["train"]["psnr"]), _psnr(h["psnr"]), f"{h['ssim']:.3f}",
                         _psnr(k.get("novel_view", {}).get("psnr")), _psnr(k.get("novel_time", {}).get("psnr")),
                         _psnr(k.get("novel_view_and_time", {}).get("psnr"))])
        out.append(f"**{section}**: {rep[section]['note']}\n\n" + _table(
            ["object", "HexPlane", "config", "wall s", "Gaussians", "train PSNR", "held-out PSNR", "held-out SSIM",
             "novel view", "novel time", "both"], rows))
    return "\n\n".join(out)


def train(rep: dict) -> str:
    rows = []
    for stage, s in rep["stages"].items():
        extra = ""
        if "teachers_share" in s:
            extra = (f"teachers {s['teachers_ms_per_step']:.1f} ms ({100 * s['teachers_share']:.0f}%), Orster attention "
                     f"{s['orster_attention_ms_per_step']:.2f} ms ({100 * s['orster_attention_share']:.1f}%)")
        rows.append([stage, f"{s['step_ms_median']:.0f}", f"{s['step_ms_min']:.0f}", f"{s['peak_mem_gib']:.2f}",
                     f"{s['samples_per_s']:.1f}", extra])
    return _table(["stage", "step ms (median)", "step ms (min)", "peak GiB", "samples/s", "stage-2 parts"], rows) + \
        f"\n\nstage 2 / stage 1 = {rep['stage2_over_stage1']:.2f} (target < 3)"


def rasterize(rep: dict) -> str:
    rows = []
    for key, c in rep["cases"].items():
        m = c.get("one_launch", c)
        rows.append([key, f"{m['ours_fwd+bwd_ms']:.2f}", f"{m['ours_ops_fwd+bwd_ms']:.2f}", f"{m['gsplat_fwd+bwd_ms']:.2f}",
                     f"{m['ratio_fwd+bwd']:.2f}", f"{m['ours_ops_fwd+bwd_ms'] / m['gsplat_fwd+bwd_ms']:.2f}",
                     f"{c['correctness']['image_max_abs_err']:.1e}"])
    return _table(["case", "ours fwd+bwd ms", "ours kernels only ms", "gsplat fwd+bwd ms", "ratio", "ratio kernels only",
                   "max image diff vs gsplat"], rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    kinds = {"hexplane": hexplane, "construct": construct, "train": train, "rasterize": rasterize}
    if len(argv) != 2 or argv[0] not in kinds:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        print(kinds[argv[0]](json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
