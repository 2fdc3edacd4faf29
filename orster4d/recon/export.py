"""The asset folder a construction writes (:func:`write_outputs`); it is read back by
:func:`orster4d.io.asset.read_asset`, whose module docstring is the folder's contract.

Written here: ``gaussians/canonical.ply``, ``gaussians/t_XXXX.ply`` (one per timestamp of the
trajectory or of the data) and ``gaussians/times.json``; ``deformation/`` (the field as a diffusers
model folder); ``config.json`` (the construct configuration with its background and fps, the
field's configuration and bounds, the Gaussian count, SH degree and the schedules followed);
``trajectory.json``; ``condition.json`` when the input names its condition (its own
``condition.json``, or a ``"prompt"`` in ``transforms.json``); ``turntable.gif`` and
``turntable.mp4`` (frame ``i`` of ``n``: azimuth ``360 i / n``, time ``i / (n - 1)``) with
``turntable_trajectory.json``; the viewer-ready exports chosen by ``cfg.exports`` (``viewer.html``
with ``viewer.js`` and ``viewer_data.js``; ``supersplat/``; ``asset.splat``; ``asset.splatv`` with
``splatv_error.json``); ``metrics.json``. Every file is added to the folder's manifest.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

import torch

from orster4d.cameras import OrbitTrajectory, camera_centers, fov_from_intrinsics
from orster4d.data.dataset import DynamicDataset
from orster4d.io.asset import FIELD_FOLDER, export_asset
from orster4d.io.video import mp4_available, write_gif, write_mp4
from orster4d.recon.evaluate import evaluate
from orster4d.recon.initialise import scene_bounds
from orster4d.recon.manifest import record
from orster4d.recon.render import deform, render_frames

__all__ = ["FIELD_FOLDER", "fit_trajectory", "input_condition", "write_outputs"]


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


def input_condition(folder) -> Optional[Dict]:
    """The condition an input dataset folder names: its ``condition.json``, else ``{"kind": "text",
    "prompt": ...}`` from a ``"prompt"`` in its ``transforms.json``, else None."""
    folder = Path(folder)
    for name in ("condition.json", "transforms.json"):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if name == "condition.json":
            return data
        if isinstance(data.get("prompt"), str) and data["prompt"].strip():
            return {"kind": "text", "prompt": data["prompt"]}
    return None


@torch.no_grad()
def write_outputs(run, out: Path, lp, wall: Dict) -> Dict:
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
    sched = run.sched
    schedule = {"scaled": cfg.scale_schedule, "sh_up_every": sched.sh_up_every,
                "coarse_densify": asdict(sched.coarse), "fine_densify": asdict(sched.fine)}
    (out / "config.json").write_text(json.dumps({
        "construct": cfg.to_dict(), "deformation": dict(fld.config), "aabb": fld.aabb.cpu().tolist(),
        "num_gaussians": g.num_gaussians, "sh_degree": g.active_sh_degree, "schedule": schedule}, indent=2))
    cond = input_condition(cfg.input)
    if cond is not None:
        (out / "condition.json").write_text(json.dumps(cond, indent=2))
    record(out, ["gaussians", FIELD_FOLDER, "trajectory.json", "config.json", "condition.json"])
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
    record(out, ["turntable_trajectory.json", "turntable.gif", "turntable.mp4"])
    exports = _write_exports(out, cfg.exports)
    metrics = {
        "iterations": run.iteration, "coarse_iters": cfg.coarse_iters, "fine_iters": cfg.fine_iters,
        **wall, "num_gaussians": g.num_gaussians, "turntable_frames": n,
        "mp4": "turntable.mp4" if ok else None, "mp4_unavailable_reason": None if ok else why,
        "lpips_available": lp.available, "lpips_unavailable_reason": None if lp.available else lp.reason,
        "l_hex": run.use_hex, "l_hex_reason": run.hex_reason or None,
        "initial_train_psnr": run.initial_psnr, "schedule": schedule,
        "exports": exports["files"], "splatv_error": exports.get("splatv_error"),
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
    record(out, ["metrics.json"])
    return metrics


def _write_exports(out: Path, which) -> Dict:
    """The viewer and the exports of :func:`orster4d.io.asset.export_asset` named in ``which``;
    ``{"files": {name: [relative paths]}, "splatv_error": {...}}`` (only what was written)."""
    files: Dict[str, list] = {}
    res: Dict = {"files": files}
    if "viewer" in which:
        from orster4d.viewer import VIEWER_FILES, write_viewer

        write_viewer(out)
        files["viewer"] = [*VIEWER_FILES, "viewer_data.js"]
    formats = [f for f in ("supersplat", "splat", "splatv") if f in which]
    if formats:
        done = export_asset(out, formats)
        for f in formats:
            paths = done[f] if isinstance(done[f], list) else [done[f]]
            files[f] = [Path(p).relative_to(out).as_posix() for p in paths]
        if "splatv" in formats:
            files["splatv"].append("splatv_error.json")
            res["splatv_error"] = done["splatv_error"]
    record(out, [p for v in files.values() for p in v])
    return res
