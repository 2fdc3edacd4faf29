"""The asset folder a construction writes, and :func:`load_asset`, which reads one back.

Layout (``<output>/``):

* ``gaussians/canonical.ply`` and ``gaussians/t_XXXX.ply`` (standard 3DGS ``.ply``, one per
  timestamp of the trajectory or of the data), ``gaussians/times.json`` (those times, in [0, 1]);
* ``deformation/``: the deformation field as a diffusers model folder (``config.json`` and
  ``diffusion_pytorch_model.safetensors``; ``DeformationField.from_pretrained``);
* ``config.json``: the construct configuration, the field's configuration, its bounds, the
  Gaussian count and SH degree;
* ``trajectory.json`` (the input's, or an orbit fitted to its cameras);
* ``turntable.gif`` / ``turntable.mp4`` (frame ``i`` of ``n``: azimuth ``360 i / n``, time
  ``i / (n - 1)``) with ``turntable_trajectory.json``;
* ``metrics.json``; ``checkpoints/last.pt`` (written by the run, not here).

Assets written before the field became a diffusers folder hold ``deformation.pt`` (a state dict)
instead; :func:`load_asset` reads both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import torch

from orster4d.cameras import OrbitTrajectory, camera_centers, fov_from_intrinsics
from orster4d.data.dataset import DynamicDataset
from orster4d.io.video import mp4_available, write_gif, write_mp4
from orster4d.recon.deformation import DeformationField
from orster4d.recon.evaluate import evaluate
from orster4d.recon.gaussians import GaussianModel
from orster4d.recon.initialise import scene_bounds
from orster4d.recon.render import deform, render_frames

__all__ = ["FIELD_FOLDER", "fit_trajectory", "write_outputs", "load_asset"]

FIELD_FOLDER = "deformation"


def fit_trajectory(ds: DynamicDataset) -> OrbitTrajectory:
    """The input's trajectory, or an orbit with the cameras' mean radius, elevation and field of view."""
    if ds.trajectory is not None:
        return ds.trajectory
    centre, _ = scene_bounds(ds)
    c = camera_centers(ds.viewmats.double()) - centre.double()
    radius = float(c.norm(dim=-1).mean())
    elev = float(torch.rad2deg(torch.asin((c[:, 2] / c.norm(dim=-1)).clamp(-1, 1))).mean())
    n = int(torch.unique(ds.times).numel())
    return OrbitTrajectory(num_frames=max(n, 2), elevation_deg=elev, radius=radius,
                           fov_deg=fov_from_intrinsics(ds.Ks[0], ds.width), width=ds.width, height=ds.height,
                           center=centre.tolist())


@torch.no_grad()
def write_outputs(run, out: Path, lp, wall: Dict[str, float]) -> Dict:
    """Writes the asset folder of a finished run (see the module docstring); returns the metrics
    dict, also written to ``metrics.json``. ``wall``: ``{"wall_time_s", ...}`` (seconds) merged into it."""
    cfg, dev, g, fld = run.cfg, run.device, run.gauss, run.field
    all_ds: DynamicDataset = run.inputs["all"]
    traj = fit_trajectory(all_ds)
    traj.save(out / "trajectory.json")
    times = traj.times() if all_ds.trajectory is not None else torch.unique(all_ds.times)
    (out / "gaussians").mkdir(parents=True, exist_ok=True)
    g.save_ply(out / "gaussians" / "canonical.ply")
    for i in range(times.shape[0]):
        m, q, s = deform(g, fld, times[i:i + 1].to(dev))
        g.save_ply(out / "gaussians" / f"t_{i:04d}.ply", m[0], q[0], s[0])
    (out / "gaussians" / "times.json").write_text(json.dumps([float(t) for t in times]))
    fld.save_pretrained(out / FIELD_FOLDER)
    (out / "config.json").write_text(json.dumps({
        "construct": cfg.to_dict(), "deformation": dict(fld.config), "aabb": fld.aabb.cpu().tolist(),
        "num_gaussians": g.num_gaussians, "sh_degree": g.active_sh_degree}, indent=2))
    # turntable: the camera orbits while time runs
    n = cfg.turntable_frames or max(traj.num_frames, 2)
    tt = OrbitTrajectory(num_frames=n, elevation_deg=traj.elevation_deg, radius=traj.radius, fov_deg=traj.fov_deg,
                         width=traj.width, height=traj.height, center=traj.center,
                         azimuth_offset_deg=traj.azimuth_offset_deg)
    tt.save(out / "turntable_trajectory.json")
    frames = render_frames(g, fld, tt.times().to(dev), tt.viewmats().to(dev), tt.Ks().to(dev), tt.width, tt.height,
                           cfg.background, cfg.rasterizer_backend).cpu()
    write_gif(out / "turntable.gif", frames, cfg.fps)
    ok, why = mp4_available()
    if ok:
        write_mp4(out / "turntable.mp4", frames, cfg.fps)
    metrics = {
        "iterations": run.iteration, "coarse_iters": cfg.coarse_iters, "fine_iters": cfg.fine_iters,
        **wall, "num_gaussians": g.num_gaussians, "turntable_frames": n,
        "mp4": "turntable.mp4" if ok else None, "mp4_unavailable_reason": None if ok else why,
        "lpips_available": lp.available, "lpips_unavailable_reason": None if lp.available else lp.reason,
        "l_hex": run.use_hex, "l_hex_reason": run.hex_reason or None,
        "initial_train_psnr": run.initial_psnr,
        "train": evaluate(g, fld, run.train, dev, lp, cfg.eval_max_frames, cfg.background, cfg.rasterizer_backend),
    }
    ev = run.inputs["eval"]
    if ev is not None and ev.num_frames:
        metrics["heldout"] = evaluate(g, fld, ev, dev, lp, cfg.eval_max_frames, cfg.background, cfg.rasterizer_backend,
                                      seen=run.train)
    else:
        metrics["heldout"] = None
        metrics["heldout_reason"] = "no held-out ground truth (no 'test' split and no eval data)"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_asset(folder, device=None) -> Tuple[GaussianModel, DeformationField, torch.Tensor]:
    """``(canonical Gaussians, deformation field, times [T])`` of an asset folder, on ``device``.

    Raises FileNotFoundError naming the first missing file.
    """
    folder = Path(folder)
    for name in ("gaussians/canonical.ply", "gaussians/times.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: not a construct asset folder (file missing)")
    gauss = GaussianModel.load_ply(folder / "gaussians" / "canonical.ply", device)
    times = torch.tensor(json.loads((folder / "gaussians" / "times.json").read_text()), dtype=torch.float32)
    if (folder / FIELD_FOLDER / "config.json").is_file():
        field = DeformationField.from_pretrained(folder / FIELD_FOLDER)
    elif (folder / "deformation.pt").is_file() and (folder / "config.json").is_file():  # older assets
        cfg = json.loads((folder / "config.json").read_text())
        field = DeformationField.from_config({**cfg["deformation"], "aabb": cfg["aabb"]})
        field.load_state_dict(torch.load(folder / "deformation.pt", map_location="cpu", weights_only=True))
    else:
        raise FileNotFoundError(f"{folder / FIELD_FOLDER}: the deformation field is missing "
                                f"(neither {FIELD_FOLDER}/config.json nor deformation.pt)")
    return gauss, field.eval().to(device), times.to(device)
