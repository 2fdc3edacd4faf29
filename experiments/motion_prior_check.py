#!/usr/bin/env python3
"""How the deformation field moves between fitted times, with and without the motion-curvature prior.

The construct benchmark's novel-time frames (times 2, 6, 10, 14 of 16, held out) are where its
held-out PSNR falls short. This check isolates that step from image fitting: the field
(``DeformationField``, the construct defaults: 32 channels, 64^3 x 25, two levels, 64-wide heads,
the 4DGS plane regularisers) is fitted straight to the true offsets of a procedural object at the
12 fitted times (canonical pose: time 0; ``--points`` random Gaussians a step), once per
``--curvature`` weight. Each fitted field then poses the true object at the held-out times; the
renders from the fitted views are scored against the true object there (PSNR, as the benchmark's
``novel_time`` kind), beside the linear and cubic interpolation of the true poses
(``experiments/heldout_time_bound.py``). CPU is enough (deterministic for a seed).

    python -m experiments.motion_prior_check --out benchmarks/results/motion_prior_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.data.procedural import make_object
from orster4d.data.render import multiview_cameras
from orster4d.metrics import psnr
from orster4d.recon.deformation import DeformationField, curvature_probe_times

try:
    from experiments.heldout_time_bound import bound, render_gaussians
except ImportError:  # run as a plain script: its own folder is on sys.path, the repository root is not
    from heldout_time_bound import bound, render_gaussians


def fit_field(g: dict, fit: list, steps: int, points: int, curvature: float, seed: int, device) -> DeformationField:
    """A field fitted to the offsets of ``g`` (time-major true Gaussians) at time indices ``fit``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    means0 = g["means"][0].to(device)
    lo, hi = means0.min(0).values, means0.max(0).values
    pad = 0.2 * (hi - lo).clamp_min(1e-3)
    field = DeformationField(torch.stack([lo - pad, hi + pad]).cpu(), backend="fused").to(device)
    extent = float((field.aabb[1] - field.aabb[0]).norm())
    times = g["times"].to(device)
    fit_t = times[fit]
    target = torch.cat([(g["means"][fit] - g["means"][0]).to(device) / extent,
                        (g["quats"][fit] - g["quats"][0]).to(device),
                        (g["scales"][fit].log() - g["scales"][0].log()).to(device)], -1)  # [F, N, 10]
    grid = [p for n, p in field.named_parameters() if n.startswith("hexplane.")]
    mlp = [p for n, p in field.named_parameters() if not n.startswith("hexplane.")]
    opt = torch.optim.Adam([{"params": grid, "lr": 1.6e-3}, {"params": mlp, "lr": 1.6e-4 * extent}], eps=1e-15)
    for it in range(steps):
        for grp, base in zip(opt.param_groups, (1.6e-3, 1.6e-4 * extent)):
            grp["lr"] = base * 0.1 ** (it / steps)
        idx = torch.randperm(means0.shape[0], generator=gen)[:points].to(device)
        dp, dq, ds = field(means0[idx], fit_t)
        loss = (torch.cat([dp / extent, dq, ds], -1) - target[:, idx]).pow(2).sum(-1).mean() + field.regularisation()
        if curvature > 0:
            t, step = curvature_probe_times(fit_t, 4, gen)
            loss = loss + curvature * field.motion_curvature(means0[idx], t.to(device), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return field


def check(family: str, seed: int, frames: int, size: int, views: int, steps: int, points: int, weights, device,
          test_views=(3, 6), every: int = 4) -> dict:
    obj = make_object(family, seed, 4000)
    traj = OrbitTrajectory(num_frames=frames, elevation_deg=15.0, radius=3.0, fov_deg=40.0, width=size, height=size)
    vm, K = multiview_cameras(views, traj)
    shown = [v for v in range(views) if v not in test_views]
    vm, K = vm[shown], K[shown]
    g = obj.gaussians(traj.times())
    g["times"] = traj.times().float()
    held = [i for i in range(frames) if i % every == every // 2]
    fit = [i for i in range(frames) if i not in held]
    out = {}
    for w in weights:
        t0 = time.time()
        field = fit_field(g, fit, steps, points, w, seed, device)
        scores = {"heldout": [], "fitted": []}
        with torch.no_grad():
            means0, quats0, logs0 = (x.to(device) for x in (g["means"][0], g["quats"][0], g["scales"][0].log()))
            for i in range(frames):
                dp, dq, ds = field(means0, g["times"][i:i + 1].to(device))
                posed = dict(means=means0 + dp[0], quats=quats0 + dq[0], scales=(logs0 + ds[0]).exp(),
                             opacities=g["opacities"], colors=g["colors"])
                true = {k: (g[k][i] if g[k].dim() == 3 else g[k]) for k in ("means", "quats", "scales",
                                                                             "opacities", "colors")}
                p = psnr(render_gaussians(posed, vm, K, size, device),
                         render_gaussians(true, vm, K, size, device)).tolist()
                scores["heldout" if i in held else "fitted"] += p
        out[f"curvature_{w:g}"] = {k: sum(v) / len(v) for k, v in scores.items()} | {"seconds": time.time() - t0}
        print(family, w, json.dumps(out[f"curvature_{w:g}"]), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="motion_prior_check.json")
    p.add_argument("--families", nargs="+", default=["hopper", "walker", "pendulum"])
    p.add_argument("--curvature", nargs="+", type=float, default=[0.0, 1.0, 10.0, 100.0])
    p.add_argument("--steps", type=int, default=3000, help="fitting steps (construct's fine phase: 3000)")
    p.add_argument("--points", type=int, default=2048, help="Gaussians per step (data term and prior)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    rep = {"setup": {k: getattr(a, k) for k in ("seed", "frames", "size", "views", "steps", "points", "device")},
           "objects": {}}
    for fam in a.families:
        entry = check(fam, a.seed, a.frames, a.size, a.views, a.steps, a.points, a.curvature, a.device)
        b = bound(fam, a.seed, a.frames, a.size, a.views, device=a.device)
        entry["true_poses_linear"] = b["linear"]["psnr"]
        entry["true_poses_cubic"] = b["cubic"]["psnr"]
        rep["objects"][fam] = entry
        Path(a.out).write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
