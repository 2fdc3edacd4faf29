"""Reading a 4D asset folder (what ``orster4d-construct`` writes) and writing its viewer-ready exports.

An asset folder holds ``gaussians/t_XXXX.ply`` (one standard 3DGS PLY per timestamp, all with the
same Gaussians in the same order), ``gaussians/times.json`` (the normalised times, in [0, 1]),
``gaussians/canonical.ply`` with ``deformation.pt`` (the static Gaussians and the deformation
field's weights), ``trajectory.json`` (the orbital camera path), ``config.json`` (with the
background colour) and the turntable videos.

:func:`read_asset` gathers the per-timestamp Gaussians as activated parameters (the rasterizer's
inputs); :func:`export_asset` writes the exports that other viewers open:

* ``supersplat/frame_XXXX.ply``: the per-timestamp PLYs under names that SuperSplat recognises as
  an animation (a shared prefix followed by a frame number; hard links where the file system
  allows, copies otherwise);
* ``asset.splat``: one timestamp in the 32-byte-per-splat ``.splat`` layout;
* ``asset.splatv``: the motion in the splaTV ``.splatv`` layout (an approximation: see
  :mod:`orster4d.io.splatv`), with the approximation error in ``splatv_error.json``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from orster4d.io.ply import read_ply

SH_C0 = 0.28209479177387814
_FRAME_RE = re.compile(r"^t_(\d+)\.ply$")


def sh_dc_to_rgb(sh_dc: torch.Tensor) -> torch.Tensor:
    """Degree-0 colour ``max(SH_C0 * dc + 0.5, 0)`` ``[..., 3]`` of DC coefficients ``[..., 3]`` (the rasterizer's rule)."""
    return torch.clamp(SH_C0 * sh_dc + 0.5, min=0.0)


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficients ``[..., 3]`` whose degree-0 colour is ``rgb [..., 3]`` (inverse of :func:`sh_dc_to_rgb` for rgb >= 0)."""
    return (rgb - 0.5) / SH_C0


@dataclass
class Asset:
    """Per-timestamp Gaussians of a 4D asset, activated (float32, CPU).

    ``means [T, N, 3]`` (world units), ``quats [T, N, 4]`` (w, x, y, z, unit), ``scales [T, N, 3]``
    (standard deviations, world units), ``opacities [T, N]`` in (0, 1), ``colors [T, N, 3]`` (SH
    degree-0 RGB), ``sh [T, N, K, 3]`` (all coefficients), ``times [T]`` in [0, 1], the source
    ``paths`` of the T PLYs, and the asset's ``trajectory`` (an :class:`~orster4d.cameras.OrbitTrajectory`
    or None), ``background`` (RGB) and ``fps``.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    sh: torch.Tensor
    times: torch.Tensor
    paths: List[Path]
    trajectory: object = None
    background: tuple = (1.0, 1.0, 1.0)
    fps: int = 12

    @property
    def num_frames(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[1])


def frame_paths(folder: Union[str, Path]) -> List[Path]:
    """The per-timestamp PLYs ``gaussians/t_XXXX.ply`` of an asset folder, in frame order.

    Raises ValueError naming the folder when there are none or the numbering has gaps.
    """
    gdir = Path(folder) / "gaussians"
    if not gdir.is_dir():
        raise ValueError(f"{folder}: not an asset folder (no 'gaussians/' directory)")
    found = sorted((int(m.group(1)), p) for p in gdir.iterdir() if (m := _FRAME_RE.match(p.name)))
    if not found:
        raise ValueError(f"{gdir}: no per-timestamp PLYs named t_XXXX.ply")
    idx = [i for i, _ in found]
    if idx != list(range(len(idx))):
        raise ValueError(f"{gdir}: frame numbers must run 0..{len(idx) - 1} without gaps, got {idx}")
    return [p for _, p in found]


def read_asset(folder: Union[str, Path]) -> Asset:
    """Reads the per-timestamp Gaussians, times, trajectory, background and fps of an asset folder."""
    from orster4d.cameras import OrbitTrajectory

    folder = Path(folder)
    paths = frame_paths(folder)
    frames = [read_ply(p) for p in paths]
    n = frames[0]["means"].shape[0]
    for p, f in zip(paths, frames):
        if f["means"].shape[0] != n or f["sh"].shape != frames[0]["sh"].shape:
            raise ValueError(f"{p}: {f['means'].shape[0]} Gaussians with SH {tuple(f['sh'].shape)}; "
                             f"{paths[0].name} has {n} with {tuple(frames[0]['sh'].shape)} (all frames must match)")
    times_path = folder / "gaussians" / "times.json"
    if times_path.is_file():
        times = torch.tensor(json.loads(times_path.read_text()), dtype=torch.float32)
        if times.shape != (len(paths),):
            raise ValueError(f"{times_path}: {times.numel()} times for {len(paths)} frames")
    else:
        times = torch.linspace(0.0, 1.0, len(paths)) if len(paths) > 1 else torch.zeros(1)
    traj_path = folder / "trajectory.json"
    trajectory = OrbitTrajectory.load(traj_path) if traj_path.is_file() else None
    background, fps = (1.0, 1.0, 1.0), 12
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        construct = json.loads(cfg_path.read_text()).get("construct", {})
        background = tuple(float(c) for c in construct.get("background", background))
        fps = int(construct.get("fps", fps))
    stack = {k: torch.stack([f[k] for f in frames]) for k in frames[0]}
    quats = stack["quats"] / stack["quats"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return Asset(means=stack["means"], quats=quats, scales=stack["log_scales"].exp(),
                 opacities=torch.sigmoid(stack["logit_opacities"]), colors=sh_dc_to_rgb(stack["sh"][:, :, 0]),
                 sh=stack["sh"], times=times, paths=paths, trajectory=trajectory, background=background, fps=fps)


def export_supersplat_sequence(folder: Union[str, Path], out_dir: Optional[Union[str, Path]] = None,
                               prefix: str = "frame_") -> List[Path]:
    """Puts the per-timestamp PLYs under ``out_dir`` (default ``<folder>/supersplat``) as
    ``<prefix>0000.ply, <prefix>0001.ply, ...``: dropped together onto SuperSplat they load as one
    animation (its timeline steps through them in frame-number order).

    Files are hard-linked to ``gaussians/t_XXXX.ply`` where the file system allows, else copied.
    Returns the written paths in frame order.
    """
    if not re.fullmatch(r"[A-Za-z_\-]*", prefix):
        raise ValueError(f"prefix must be letters, '_' or '-' (a digit would merge with the frame number), got {prefix!r}")
    src = frame_paths(folder)
    out_dir = Path(out_dir) if out_dir is not None else Path(folder) / "supersplat"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, p in enumerate(src):
        dst = out_dir / f"{prefix}{i:04d}.ply"
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        try:
            os.link(p, dst)
        except OSError:
            shutil.copyfile(p, dst)
        written.append(dst)
    return written


def export_asset(folder: Union[str, Path], formats: Sequence[str] = ("supersplat", "splat", "splatv"),
                 splat_frame: int = 0, splatv_segments: int = 1) -> Dict[str, object]:
    """Writes the viewer-ready exports of an asset folder (see the module docstring).

    Args:
        formats: any of ``"supersplat"``, ``"splat"``, ``"splatv"``.
        splat_frame: the timestamp index written to ``asset.splat``.
        splatv_segments: time segments of the ``.splatv`` motion fit (see :func:`orster4d.io.splatv.fit_splatv`).

    Returns a dict with the written paths per format and, for ``"splatv"``, the approximation error.
    """
    from orster4d.io.splat import write_splat
    from orster4d.io.splatv import write_splatv

    unknown = set(formats) - {"supersplat", "splat", "splatv"}
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; expected some of ['splat', 'splatv', 'supersplat']")
    folder = Path(folder)
    asset = read_asset(folder)
    if not 0 <= splat_frame < asset.num_frames:
        raise ValueError(f"splat_frame must be in [0, {asset.num_frames}), got {splat_frame}")
    out: Dict[str, object] = {}
    if "supersplat" in formats:
        out["supersplat"] = export_supersplat_sequence(folder)
    if "splat" in formats:
        path = folder / "asset.splat"
        f = splat_frame
        write_splat(path, asset.means[f], asset.quats[f], asset.scales[f], asset.opacities[f], asset.colors[f])
        out["splat"] = path
    if "splatv" in formats:
        path = folder / "asset.splatv"
        err = write_splatv(path, asset.means, asset.quats, asset.scales, asset.opacities[0], asset.colors[0],
                           asset.times, segments=splatv_segments, trajectory=asset.trajectory)
        (folder / "splatv_error.json").write_text(json.dumps(err, indent=2))
        out["splatv"] = path
        out["splatv_error"] = err
    return out


def write_procedural_asset(folder: Union[str, Path], family: str = "hopper", seed: int = 0, num_frames: int = 8,
                           num_gaussians: int = 2000, size: int = 256, background=(1.0, 1.0, 1.0)) -> Path:
    """Writes an asset folder straight from a procedural object's own Gaussians (no training).

    ``gaussians/t_XXXX.ply`` hold the object (:func:`orster4d.data.procedural.make_object`) at the
    trajectory's times ``i / (T - 1)``, with ``times.json``, ``trajectory.json`` (the default orbit at
    ``size`` x ``size`` pixels) and a ``config.json`` with the background: the layout
    ``orster4d-construct`` writes, minus the deformation weights and videos. Returns ``folder``.
    """
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data.procedural import make_object
    from orster4d.io.ply import write_ply

    folder = Path(folder)
    traj = OrbitTrajectory(num_frames=num_frames, width=size, height=size)
    g = make_object(family, seed, num_gaussians).gaussians(traj.times())
    (folder / "gaussians").mkdir(parents=True, exist_ok=True)
    op = g["opacities"].clamp(1e-6, 1 - 1e-6)
    for i in range(num_frames):
        write_ply(folder / "gaussians" / f"t_{i:04d}.ply", g["means"][i], g["quats"][i], g["scales"][i].log(),
                  torch.log(op / (1 - op)), rgb_to_sh_dc(g["colors"]).unsqueeze(1))
    (folder / "gaussians" / "times.json").write_text(json.dumps([float(t) for t in traj.times()]))
    traj.save(folder / "trajectory.json")
    (folder / "config.json").write_text(json.dumps({"construct": {"background": list(background), "fps": 12},
                                                    "procedural": {"family": family, "seed": seed}}, indent=2))
    return folder
