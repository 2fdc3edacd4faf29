#!/usr/bin/env python3
"""What held-out *times* allow: PSNR of the true object posed halfway between its two neighbouring
fitted poses, against the true object at the held-out time.

The construct benchmark (``python -m benchmarks.construct``) fits 12 of 16 times and holds out
times 2, 6, 10, 14, each midway between fitted neighbours two frames apart. A field that knows the fitted
poses exactly but moves linearly in between (the smoothness priors' preference) can do no better
than this bound on those frames. Each Gaussian's mean and scale are averaged between times i-1 and
i+1, its rotation is the normalised mean of the two quaternions; the images are rendered from the
fitted views (the benchmark's ``novel_time`` frames) with the package rasterizer (any device).
Also given: holding the previous fitted pose (nearest neighbour), and a cubic through the four
nearest fitted poses (i-3, i-1, i+1, i+3; a quadratic through three at the ends of the clip),
which is what a prior on the motion's curvature could reach instead of a linear one.

    python -m experiments.heldout_time_bound --out benchmarks/results/heldout_time_bound.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.data import FAMILIES
from orster4d.data.procedural import make_object
from orster4d.data.render import multiview_cameras
from orster4d.metrics import psnr
from orster4d.ops.rasterize import rasterize_gaussians


def render_gaussians(g: dict, vm: torch.Tensor, K: torch.Tensor, size: int, device) -> torch.Tensor:
    """``g`` at one time (means [N, 3], ...) from cameras ``vm [C, 4, 4]`` -> ``[C, H, W, 3]``."""
    bg = torch.ones(vm.shape[0], 3, device=device)
    with torch.no_grad():
        out = rasterize_gaussians(g["means"].to(device), g["quats"].to(device), g["scales"].to(device),
                                  g["opacities"].to(device), g["colors"].to(device), vm.float().to(device),
                                  K.float().to(device), size, size, backgrounds=bg)
    return out.rgb.clamp(0, 1)


def _cubic_weights(i: int, frames: int):
    """Fitted time indices and Lagrange weights that interpolate them at time ``i``."""
    nodes = [j for j in (i - 3, i - 1, i + 1, i + 3) if 0 <= j < frames]
    w = []
    for j in nodes:
        c = 1.0
        for k in nodes:
            if k != j:
                c *= (i - k) / (j - k)
        w.append(c)
    return nodes, w


def bound(family: str, seed: int, frames: int, size: int, views: int, test_views=(3, 6), every: int = 4,
          device="cpu") -> dict:
    obj = make_object(family, seed, 4000)
    traj = OrbitTrajectory(num_frames=frames, elevation_deg=15.0, radius=3.0, fov_deg=40.0, width=size, height=size)
    vm, K = multiview_cameras(views, traj)
    fitted = [v for v in range(views) if v not in test_views]
    vm, K = vm[fitted], K[fitted]
    times = traj.times()
    g = obj.gaussians(times)
    res = {"linear": [], "previous": [], "cubic": []}
    max_dev = 0.0  # scene units: largest distance of a true mean from its halfway linear position
    for i in range(frames):
        if i % every != every // 2 or i == 0 or i == frames - 1:
            continue
        at = lambda j: {k: (g[k][j] if g[k].dim() == 3 else g[k]) for k in g}  # noqa: E731
        q0, q1 = g["quats"][i - 1], g["quats"][i + 1]
        q1 = torch.where(((q0 * q1).sum(-1, keepdim=True) < 0), -q1, q1)
        lin = dict(at(i), means=0.5 * (g["means"][i - 1] + g["means"][i + 1]),
                   scales=0.5 * (g["scales"][i - 1] + g["scales"][i + 1]),
                   quats=torch.nn.functional.normalize(q0 + q1, dim=-1))
        nodes, w = _cubic_weights(i, frames)
        qs = [torch.where((q0 * g["quats"][j]).sum(-1, keepdim=True) < 0, -g["quats"][j], g["quats"][j]) for j in nodes]
        cub = dict(at(i), means=sum(c * g["means"][j] for c, j in zip(w, nodes)),
                   scales=sum(c * g["scales"][j] for c, j in zip(w, nodes)).clamp_min(1e-6),
                   quats=torch.nn.functional.normalize(sum(c * q for c, q in zip(w, qs)), dim=-1))
        max_dev = max(max_dev, float((g["means"][i] - lin["means"]).norm(dim=-1).max()))
        gt = render_gaussians(at(i), vm, K, size, device)
        res["linear"] += psnr(render_gaussians(lin, vm, K, size, device), gt).tolist()
        res["cubic"] += psnr(render_gaussians(cub, vm, K, size, device), gt).tolist()
        res["previous"] += psnr(render_gaussians(at(i - 1), vm, K, size, device), gt).tolist()
    out = {k: {"frames": len(v), "psnr": sum(v) / len(v)} for k, v in res.items()}
    out["max_halfway_deviation"] = max_dev
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="heldout_time_bound.json")
    p.add_argument("--families", nargs="+", default=["hopper", "walker", "pendulum"], help=f"of {FAMILIES}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    rep = {"setup": {k: getattr(a, k) for k in ("seed", "frames", "size", "views")}, "objects": {}}
    for fam in a.families:
        rep["objects"][fam] = bound(fam, a.seed, a.frames, a.size, a.views, device=a.device)
        print(fam, json.dumps(rep["objects"][fam]), flush=True)
    Path(a.out).write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
