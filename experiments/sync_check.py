#!/usr/bin/env python3
"""Counts the host syncs of construct steps (coarse and fine) under ``torch.cuda.set_sync_debug_mode``.

A construct step should read nothing back from the GPU except what the rasterizer's tile
intersection needs (the number of tile hits sizes its buffers). This script renders a small
procedural scene, sets a run up as ``construct`` does (``lambda_hex`` on, the motion-curvature prior
on, all SH bands active), runs a few warm-up steps, then ``--steps`` coarse and ``--steps`` fine
steps at schedule positions where densification does not fire (densification steps change the
Gaussian count and sync by design; so do loss logging and checkpoints, which are not steps).
Every sync warning is recorded with the innermost package frame that caused it; those raised
under ``orster4d/ops/rasterize`` count as the rasterizer's, anything else as unexpected.

    python experiments/sync_check.py [--steps 5] [--size 64] [--out sync.json]

Exit status 1 when an unexpected sync is found. Without CUDA the steps still run (on the CPU), and
the script says that it needs CUDA to check.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orster4d.data import generate_scene  # noqa: E402
from orster4d.recon import ConstructConfig, validate_inputs  # noqa: E402
from orster4d.recon.fit import _Run  # noqa: E402
from orster4d.recon.losses import LPIPSTerm  # noqa: E402

PACKAGE = str(Path(__file__).resolve().parent.parent / "orster4d")
RASTERIZER = str(Path(PACKAGE) / "ops" / "rasterize")


def _where(stack) -> str:
    """``file:line`` of the innermost frame inside the package (else the innermost frame)."""
    for fr in reversed(stack):
        if fr.filename.startswith(PACKAGE):
            return f"{Path(fr.filename).relative_to(Path(PACKAGE).parent)}:{fr.lineno}"
    fr = stack[-1]
    return f"{fr.filename}:{fr.lineno}"


def check(steps: int, size: int, device: torch.device) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sync_check_"))
    generate_scene(tmp / "scene", "walker", seed=0, num_frames=8, width=size, height=size, num_views=4,
                   num_gaussians=2000, device=device)
    cfg = ConstructConfig(input=str(tmp / "scene" / "multiview"), output=str(tmp / "out"),
                          static=str(tmp / "scene" / "static"), init_points=2000, motion_curvature=0.1,
                          curvature_points=512, progress=False, device=str(device))
    run = _Run(cfg, validate_inputs(cfg), device)
    run.setup_coarse()
    run.gauss.active_sh_degree = run.gauss.max_sh_degree
    lp = LPIPSTerm(cfg.lpips_net, cfg.lpips_weights, device)
    # off-schedule positions: past the densification start, never a multiple of the interval
    first = cfg.densify.start + 1
    assert steps + 2 < cfg.densify.interval
    positions = list(range(first, first + steps + 2))

    def phase(fine: bool, record: bool) -> list:
        found = []
        for k, s in enumerate(positions):
            watch = record and k >= 2  # two warm-up steps per phase
            if watch and device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                shown = warnings.showwarning

                def keep(message, category, filename, lineno, file=None, line=None):
                    if watch and "synchroniz" in str(message):
                        found.append(_where(traceback.extract_stack()[:-1]))
                    elif not watch:
                        shown(message, category, filename, lineno, file, line)

                warnings.showwarning = keep
                try:
                    run.step(fine, lp, s)
                finally:
                    warnings.showwarning = shown
                    if device.type == "cuda":
                        torch.cuda.set_sync_debug_mode("default")
        return found

    coarse = phase(False, True)
    run.setup_fine()
    fine = phase(True, True)
    report = {"device": str(device), "steps_per_phase": steps, "size": size, "phases": {}}
    for name, found in (("coarse", coarse), ("fine", fine)):
        where = Counter(found)
        report["phases"][name] = {
            "syncs": len(found),
            "rasterizer": sum(n for w, n in where.items() if w.startswith("orster4d/ops/rasterize")),
            "unexpected": {w: n for w, n in where.items() if not w.startswith("orster4d/ops/rasterize")},
            "by_location": dict(where),
        }
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5, help="checked steps per phase (after 2 warm-up steps)")
    p.add_argument("--size", type=int, default=64, help="image width and height of the scene")
    p.add_argument("--out", help="also write the report as JSON here")
    args = p.parse_args(argv)
    if args.steps < 1 or args.size < 16:
        p.error("--steps must be >= 1 and --size >= 16")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    report = check(args.steps, args.size, device)
    report["checked"] = cuda
    if not cuda:
        report["note"] = "no CUDA device: the steps ran on the CPU, syncs were not checked (needs CUDA)"
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    unexpected = sum(len(ph["unexpected"]) for ph in report["phases"].values())
    return 1 if cuda and unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
