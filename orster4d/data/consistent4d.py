"""Reader for the Consistent4D test set's ground-truth layout (its video-to-4D benchmark).

One object's folder holds one sub-folder per evaluation camera, each with the frames of that
camera's video, named by frame index::

    <object>/eval_0/0.png ... 31.png
    <object>/eval_1/...
    ...

(32 RGBA frames per view in the published set; they are composited on ``background``, white by
default, as the benchmark's scripts do). The files carry no camera parameters, so the cameras
come from a ``cameras.json`` in the object folder (or its parent), or from the ``cameras``
argument: ``{"azimuths_deg": [a_0, a_1, ...], "elevation_deg": e, "radius": r, "fov_deg": f,
"center": [x, y, z]}`` with one azimuth per ``eval_k`` (same orbit convention as
:class:`orster4d.cameras.OrbitTrajectory`). Frame ``i`` of ``n`` is at time ``i / (n - 1)``.
All frames are held-out views (split ``test``); view ``k`` has view id ``k``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch

from orster4d.cameras import intrinsics_from_fov, orbit_viewmats
from orster4d.data.dataset import DynamicDataset, _load_images

_VIEW = re.compile(r"^eval_(\d+)$")
_FRAME = re.compile(r"^(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
CAMERA_KEYS = ("azimuths_deg", "elevation_deg", "radius", "fov_deg")


def is_consistent4d(folder: Union[str, Path]) -> bool:
    """Whether ``folder`` holds ``eval_<k>`` view folders."""
    folder = Path(folder)
    return folder.is_dir() and any(p.is_dir() and _VIEW.match(p.name) for p in folder.iterdir())


def _cameras_file(folder: Path) -> Optional[Path]:
    for p in (folder / "cameras.json", folder.parent / "cameras.json"):
        if p.is_file():
            return p
    return None


def load_consistent4d(folder: Union[str, Path], cameras: Optional[Dict] = None,
                      background: Sequence[float] = (1.0, 1.0, 1.0)) -> DynamicDataset:
    """Reads one object's ground truth (see the module docstring); ValueError names any problem."""
    folder = Path(folder)
    if not is_consistent4d(folder):
        raise ValueError(f"{folder}: not a Consistent4D object folder (no eval_0, eval_1, ... sub-folders)")
    views = sorted((int(_VIEW.match(p.name).group(1)), p) for p in folder.iterdir() if p.is_dir() and _VIEW.match(p.name))
    cam_path = _cameras_file(folder)
    if cam_path is not None:
        try:
            cameras = json.loads(cam_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{cam_path}: cannot read JSON ({e})") from e
    where = cam_path or "the cameras argument"
    if cameras is None:
        raise ValueError(f"{folder}: no cameras.json here or in {folder.parent}, and no cameras given: the "
                         f"Consistent4D frames carry no camera parameters (need {', '.join(CAMERA_KEYS)})")
    missing = [k for k in CAMERA_KEYS if k not in cameras]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    az = [float(a) for a in cameras["azimuths_deg"]]
    if len(az) != len(views):
        raise ValueError(f"{where}: {len(az)} azimuths for {len(views)} eval_* views in {folder}")
    paths, view_ids = [], []
    n = None
    for k, vdir in views:
        frames = sorted(((int(_FRAME.match(p.name).group(1)), p) for p in vdir.iterdir() if _FRAME.match(p.name)))
        if not frames:
            raise ValueError(f"{vdir}: no frames named 0.png, 1.png, ...")
        idx = [i for i, _ in frames]
        if idx != list(range(len(idx))):
            raise ValueError(f"{vdir}: frame indices must be 0..{len(idx) - 1} without gaps, got {idx[:5]}...")
        if n is None:
            n = len(frames)
        elif len(frames) != n:
            raise ValueError(f"{vdir}: {len(frames)} frames, but {views[0][1]} has {n}")
        paths += [p for _, p in frames]
        view_ids += [k] * len(frames)
    images, alphas = _load_images(paths, tuple(background))
    h, w = images.shape[1:3]
    vm = orbit_viewmats(torch.tensor(az, dtype=torch.float64), float(cameras["elevation_deg"]), float(cameras["radius"]),
                        cameras.get("center", (0.0, 0.0, 0.0)))
    K = intrinsics_from_fov(float(cameras["fov_deg"]), w, h)
    V = len(views)
    times = (torch.arange(n, dtype=torch.float32) / max(n - 1, 1)).repeat(V)
    return DynamicDataset(images=images, alphas=alphas, viewmats=vm.repeat_interleave(n, 0), Ks=K.expand(V * n, 3, 3).clone(),
                          times=times, view_ids=torch.tensor(view_ids), splits=["test"] * (V * n),
                          files=[str(p) for p in paths], background=tuple(background))
