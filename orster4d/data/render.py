"""Rendering procedural objects with the package rasterizer, and writing whole scenes.

A scene folder written by :func:`generate_scene` holds three datasets in the NeRF-style layout of
:mod:`orster4d.data.dataset`:

* ``orbital/``: the orbital video (its ``transforms.json`` also names the object's text
  ``prompt``, from :func:`~orster4d.data.procedural.object_prompt`, and ``"static": "../static"``) (frame ``i`` from azimuth ``360 i / T`` at time ``i / (T - 1)``,
  with ``trajectory.json``) plus the fixed reference-view video (azimuth 0, every time, frames
  marked ``"reference": true``) that drives L_hex;
* ``static/``: the static orbital video V' (the object frozen at t = 0, same trajectory);
* ``multiview/``: ground truth from ``num_views`` cameras x ``T`` times; frames whose view or
  time is held out are in split ``test``, the rest ``train``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch

from orster4d.cameras import OrbitTrajectory, intrinsics_from_fov, orbit_viewmats
from orster4d.ops.rasterize import rasterize_gaussians
from orster4d.data.dataset import DynamicDataset, write_dataset
from orster4d.data.procedural import ProceduralObject, make_object, object_prompt


def render_object(obj: ProceduralObject, times: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                  width: int, height: int, background: Sequence[float] = (1.0, 1.0, 1.0),
                  device=None, backend: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Renders ``obj`` at ``times [T]`` from cameras ``viewmats [T, C, 4, 4]``, ``Ks [T, C, 3, 3]``.

    All T timestamps go through one batched rasterizer call. Returns ``rgb [T, C, H, W, 3]``
    (composited on ``background``) and ``alpha [T, C, H, W, 1]``, float32 on the CPU.
    """
    times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
    T = times.shape[0]
    if viewmats.shape[:1] != (T,) or viewmats.shape[-2:] != (4, 4) or viewmats.dim() != 4:
        raise ValueError(f"viewmats must have shape [T={T}, C, 4, 4], got {tuple(viewmats.shape)}")
    if Ks.shape[:2] != viewmats.shape[:2] or Ks.shape[-2:] != (3, 3):
        raise ValueError(f"Ks must have shape {list(viewmats.shape[:2]) + [3, 3]}, got {tuple(Ks.shape)}")
    g = obj.gaussians(times)
    C = viewmats.shape[1]
    bg = torch.tensor(background, dtype=torch.float32).expand(T, C, 3)
    with torch.no_grad():
        out = rasterize_gaussians(g["means"].to(device), g["quats"].to(device), g["scales"].to(device),
                                  g["opacities"].to(device), g["colors"].to(device),
                                  viewmats.float().to(device), Ks.float().to(device), width, height,
                                  backgrounds=bg.to(device), backend=backend)
    return {"rgb": out.rgb.clamp(0, 1).cpu(), "alpha": out.alpha.clamp(0, 1).cpu()}


def _dataset(rgb, alpha, viewmats, Ks, times, view_ids, splits, reference, background, trajectory=None):
    return DynamicDataset(images=rgb, alphas=alpha, viewmats=viewmats, Ks=Ks, times=times, view_ids=view_ids,
                          splits=splits, reference=reference, trajectory=trajectory, background=tuple(background))


def render_orbital(obj: ProceduralObject, trajectory: OrbitTrajectory, background=(1.0, 1.0, 1.0),
                   static: bool = False, with_reference: bool = True, device=None,
                   backend: Optional[str] = None) -> DynamicDataset:
    """The orbital video of ``obj`` (``static``: frozen at t = 0, times still ``i / (T - 1)``),
    followed by the reference-view video (camera of frame 0 at every time) when ``with_reference``."""
    T = trajectory.num_frames
    times = trajectory.times()
    vm = trajectory.viewmats()
    K = trajectory.Ks()
    render_times = torch.zeros(T) if static else times
    if with_reference:
        # one call: camera 0 is the orbit's frame, camera 1 the fixed reference view
        vms = torch.stack([vm, vm[:1].expand(T, 4, 4)], 1)
        Ks = torch.stack([K, K[:1].expand(T, 3, 3)], 1)
    else:
        vms, Ks = vm[:, None], K[:, None]
    out = render_object(obj, render_times, vms, Ks, trajectory.width, trajectory.height, background, device, backend)
    C = vms.shape[1]
    # frame order: the T orbital frames, then the T reference frames
    rgb = out["rgb"].transpose(0, 1).reshape(C * T, trajectory.height, trajectory.width, 3)
    alpha = out["alpha"].transpose(0, 1).reshape(C * T, trajectory.height, trajectory.width, 1)
    ref = torch.zeros(C * T, dtype=torch.bool)
    ref[T:] = True
    view_ids = torch.cat([torch.arange(T), torch.full((T,), 0)])[: C * T] if C == 2 else torch.arange(T)
    return _dataset(rgb, alpha, vms.transpose(0, 1).reshape(-1, 4, 4), Ks.transpose(0, 1).reshape(-1, 3, 3),
                    times.repeat(C), view_ids, ["train"] * (C * T), ref, background, trajectory)


def multiview_cameras(num_views: int, trajectory: OrbitTrajectory, elevations: Sequence[float] = (0.0, 15.0, 30.0)):
    """``num_views`` cameras on the trajectory's sphere: view 0 is the reference view (azimuth 0 at the
    trajectory's elevation); the others spread over azimuth with elevations cycling through ``elevations``."""
    az = torch.tensor([trajectory.azimuth_offset_deg + 360.0 * v / num_views + (17.0 if v else 0.0)
                       for v in range(num_views)], dtype=torch.float64)
    el = torch.tensor([trajectory.elevation_deg if v == 0 else elevations[v % len(elevations)]
                       for v in range(num_views)], dtype=torch.float64)
    vm = orbit_viewmats(az, el, trajectory.radius, trajectory.center)
    K = intrinsics_from_fov(trajectory.fov_deg, trajectory.width, trajectory.height).expand(num_views, 3, 3)
    return vm, K.clone()


def render_multiview(obj: ProceduralObject, trajectory: OrbitTrajectory, num_views: int = 8,
                     test_views: Sequence[int] = (3, 6), test_every_time: int = 4, background=(1.0, 1.0, 1.0),
                     device=None, backend: Optional[str] = None) -> DynamicDataset:
    """Multi-view ground truth: ``num_views`` cameras x the trajectory's ``T`` times, one batched call.

    A frame is ``test`` when its view is in ``test_views`` or its time index ``i`` has
    ``i % test_every_time == test_every_time // 2`` (held-out timestamps; 0 disables); else ``train``.
    Frames are ordered time-major (all views of time 0, then time 1, ...).
    """
    T = trajectory.num_frames
    times = trajectory.times()
    vm, K = multiview_cameras(num_views, trajectory)
    vms = vm[None].expand(T, -1, -1, -1).contiguous()
    Ks = K[None].expand(T, -1, -1, -1).contiguous()
    out = render_object(obj, times, vms, Ks, trajectory.width, trajectory.height, background, device, backend)
    H, W = trajectory.height, trajectory.width
    splits = []
    for i in range(T):
        held_time = test_every_time > 0 and i % test_every_time == test_every_time // 2
        for v in range(num_views):
            splits.append("test" if (v in test_views or held_time) else "train")
    return _dataset(out["rgb"].reshape(T * num_views, H, W, 3), out["alpha"].reshape(T * num_views, H, W, 1),
                    vms.reshape(-1, 4, 4), Ks.reshape(-1, 3, 3), times.repeat_interleave(num_views),
                    torch.arange(num_views).repeat(T), splits, torch.arange(num_views).repeat(T) == 0, background)


def generate_scene(folder: Union[str, Path], family: str = "hopper", seed: int = 0, num_frames: int = 16,
                   width: int = 256, height: int = 256, num_views: int = 8, num_gaussians: int = 4000,
                   elevation_deg: float = 15.0, radius: float = 3.0, fov_deg: float = 40.0,
                   background=(1.0, 1.0, 1.0), device=None, backend: Optional[str] = None) -> Dict[str, Path]:
    """Writes ``orbital/``, ``static/`` and ``multiview/`` (see the module docstring) under ``folder``
    and a ``scene.json`` describing the object; returns the three dataset folders."""
    folder = Path(folder)
    obj = make_object(family, seed, num_gaussians)
    traj = OrbitTrajectory(num_frames=num_frames, elevation_deg=elevation_deg, radius=radius, fov_deg=fov_deg,
                           width=width, height=height)
    paths = {"orbital": folder / "orbital", "static": folder / "static", "multiview": folder / "multiview"}
    prompt = object_prompt(obj)
    orbital = render_orbital(obj, traj, background, device=device, backend=backend)
    orbital.metadata.update(prompt=prompt, static="../static")
    write_dataset(paths["orbital"], orbital)
    write_dataset(paths["static"], render_orbital(obj, traj, background, static=True, with_reference=False,
                                                  device=device, backend=backend))
    write_dataset(paths["multiview"], render_multiview(obj, traj, num_views, background=background, device=device,
                                                       backend=backend))
    (folder / "scene.json").write_text(json.dumps({
        "family": family, "seed": seed, "prompt": prompt, "num_gaussians": num_gaussians, "num_frames": num_frames,
        "num_views": num_views, "trajectory": traj.to_dict(), "background": list(background)}, indent=2))
    return paths
