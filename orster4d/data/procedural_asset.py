"""Asset folders written straight from a procedural object's own Gaussians, without training: the
exact answer a construction of that object aims at, for tests, demos and timing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.data.procedural import make_object
from orster4d.io.ply import write_ply
from orster4d.sh import rgb_to_sh_dc

def write_procedural_asset(folder: Union[str, Path], family: str = "hopper", seed: int = 0, num_frames: int = 8,
                           num_gaussians: int = 2000, size: int = 256, trajectory: Optional[OrbitTrajectory] = None,
                           meta: Optional[Dict] = None, background=(1.0, 1.0, 1.0)) -> Path:
    """Writes an asset folder straight from a procedural object's own Gaussians (no training).

    ``gaussians/t_XXXX.ply`` hold the object (:func:`orster4d.data.procedural.make_object`, degree-0
    SH) at the trajectory's times ``i / (T - 1)``, with ``times.json``, ``trajectory.json``
    (``trajectory``, default: the default orbit with ``num_frames`` frames at ``size`` x ``size``
    pixels), a ``config.json`` with the background and, when ``meta`` is given, ``condition.json``:
    the layout ``orster4d-construct`` writes, minus the canonical Gaussians, the deformation field
    and the videos. For tests, demos and timing. Returns ``folder``.
    """
    folder = Path(folder)
    traj = trajectory or OrbitTrajectory(num_frames=num_frames, width=size, height=size)
    times = traj.times()
    g = make_object(family, seed, num_gaussians).gaussians(times)
    (folder / "gaussians").mkdir(parents=True, exist_ok=True)
    logit = torch.logit(g["opacities"], eps=1e-6)
    sh = rgb_to_sh_dc(g["colors"]).unsqueeze(1)
    for i in range(times.shape[0]):
        write_ply(folder / "gaussians" / f"t_{i:04d}.ply", g["means"][i], g["quats"][i], g["scales"][i].log(),
                  logit, sh)
    (folder / "gaussians" / "times.json").write_text(json.dumps([float(t) for t in times]))
    traj.save(folder / "trajectory.json")
    (folder / "config.json").write_text(json.dumps({"construct": {"background": list(background), "fps": 12},
                                                    "procedural": {"family": family, "seed": seed}}, indent=2))
    if meta is not None:
        (folder / "condition.json").write_text(json.dumps(meta, indent=2))
    return folder
