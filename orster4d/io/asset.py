"""The asset folder: the one reader (:func:`read_asset`, one :class:`Asset` type) and its
viewer-ready exports (:func:`export_asset`).

Layout of an asset folder (what ``orster4d-construct`` writes; files marked *required* are what
:func:`read_asset` needs, the rest are optional or read on demand):

* ``gaussians/t_XXXX.ply`` (*required*): one standard 3DGS ``.ply`` per timestamp, numbered
  0..T-1 without gaps, all with the same Gaussians in the same order (raw parameters: means,
  unnormalised quaternions, log-scales, logit opacities, SH coefficients);
* ``gaussians/times.json``: the T normalised times, strictly increasing in [0, 1] (absent: the
  trajectory's ``i / (T - 1)`` when it has T frames, ``[0]`` for a single PLY);
* ``trajectory.json`` (*required*): the orbital camera path (elevation, radius, field of view,
  resolution, front azimuth);
* ``config.json``: ``{"construct": {..., "background": [r, g, b], "fps": n}, ...}`` (defaults:
  white, 12 fps);
* ``condition.json``: metadata such as ``{"kind": "text" | "image" | "static3d", "prompt": ...,
  "image": "front.png"}`` (paths relative to the folder), used by ``orster4d-eval``;
* ``gaussians/canonical.ply`` and ``deformation/`` (a diffusers model folder; older assets:
  ``deformation.pt`` with the field's settings in ``config.json``): the canonical Gaussians and the
  deformation field, read by :meth:`Asset.canonical` and :meth:`Asset.deformation_field`.

Construct also writes the turntable videos, ``metrics.json``, logs and the exports below; the
reader ignores them.

:func:`export_asset` writes the exports that other viewers open:

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.io.ply import read_ply
from orster4d.sh import rgb_to_sh_dc, sh_dc_to_rgb

__all__ = ["Asset", "AssetError", "AssetFileMissing", "read_asset", "frame_paths", "export_asset",
           "export_supersplat_sequence", "EXPORT_FORMATS", "FIELD_FOLDER",
           "rgb_to_sh_dc", "sh_dc_to_rgb"]

FIELD_FOLDER = "deformation"
EXPORT_FORMATS = ("supersplat", "splat", "splatv")
TIME_TOL = 1e-4
_FRAME_RE = re.compile(r"^t_(\d+)\.ply$")


class AssetError(ValueError):
    """A bad asset folder (the message names the file and the problem)."""


class AssetFileMissing(AssetError, FileNotFoundError):
    """An asset folder lacks a file it needs (the message names it)."""


@dataclass
class Asset:
    """A 4D asset: ``T`` timestamps of ``N`` Gaussians, as stored (float32, CPU).

    Attributes:
        folder: the asset folder (``name``: its name).
        times: ``[T]`` strictly increasing, in [0, 1].
        means: ``[T, N, 3]`` world units; quats: ``[T, N, 4]`` (w, x, y, z), unit;
        log_scales: ``[T, N, 3]`` (log of standard deviations in world units);
        logit_opacities: ``[T, N]``; sh: ``[T, N, K, 3]`` SH coefficients, ``K = (sh_degree + 1)^2``.
        trajectory: the asset's orbit (:class:`~orster4d.cameras.OrbitTrajectory`).
        background: RGB in [0, 1]; fps: turntable frame rate.
        meta: the contents of ``condition.json`` (empty when absent).
        paths: the T source PLYs.

    Activated views: ``scales [T, N, 3]``, ``opacities [T, N]`` in (0, 1), ``colors [T, N, 3]``
    (SH degree-0 RGB, ``max(SH_C0 * dc + 0.5, 0)`` as the rasterizer).
    """

    folder: Path
    times: torch.Tensor
    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    logit_opacities: torch.Tensor
    sh: torch.Tensor
    trajectory: OrbitTrajectory
    background: tuple = (1.0, 1.0, 1.0)
    fps: int = 12
    meta: Dict = field(default_factory=dict)
    paths: List[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def num_frames(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[1])

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[2] ** 0.5)) - 1

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.logit_opacities)

    @property
    def colors(self) -> torch.Tensor:
        return sh_dc_to_rgb(self.sh[:, :, 0]).clamp_min(0.0)

    def check_times(self, times: torch.Tensor, what: str) -> None:
        """Raises :class:`AssetError` unless every time of ``times [F]`` lies in the stored span
        (within 1e-4), i.e. can be rendered by interpolating stored timestamps."""
        t = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
        lo, hi = float(self.times[0]), float(self.times[-1])
        bad = (t < lo - TIME_TOL) | (t > hi + TIME_TOL)
        if bool(bad.any()):
            n_ref = int(torch.unique(t).numel())
            raise AssetError(f"{self.folder}: {what} has {n_ref} times in [{float(t.min()):.4f}, {float(t.max()):.4f}] "
                             f"but the asset stores {self.num_frames} timestamp(s) spanning [{lo:.4f}, {hi:.4f}]; "
                             f"its frames cannot be matched to the asset's")

    def canonical(self, device=None):
        """The canonical Gaussians ``gaussians/canonical.ply`` as a
        :class:`~orster4d.recon.gaussians.GaussianModel` on ``device``."""
        from orster4d.recon.gaussians import GaussianModel

        path = self.folder / "gaussians" / "canonical.ply"
        if not path.is_file():
            raise AssetFileMissing(f"{path}: missing (the canonical Gaussians; written by orster4d-construct)")
        return GaussianModel.load_ply(path, device)

    def deformation_field(self, device=None):
        """The deformation field (:class:`~orster4d.recon.deformation.DeformationField`, eval mode)
        on ``device``: ``deformation/`` or, in older assets, ``deformation.pt`` + ``config.json``."""
        from orster4d.recon.deformation import DeformationField

        folder = self.folder
        if (folder / FIELD_FOLDER / "config.json").is_file():
            fld = DeformationField.from_pretrained(folder / FIELD_FOLDER)
        elif (folder / "deformation.pt").is_file() and (folder / "config.json").is_file():
            cfg = json.loads((folder / "config.json").read_text())
            fld = DeformationField.from_config({**cfg["deformation"], "aabb": cfg["aabb"]})
            fld.load_state_dict(torch.load(folder / "deformation.pt", map_location="cpu", weights_only=True))
        else:
            raise AssetFileMissing(f"{folder / FIELD_FOLDER}: the deformation field is missing "
                                   f"(neither {FIELD_FOLDER}/config.json nor deformation.pt)")
        return fld.eval().to(device)


def frame_paths(folder: Union[str, Path]) -> List[Path]:
    """The per-timestamp PLYs ``gaussians/t_XXXX.ply`` of an asset folder, in frame order.

    Raises :class:`AssetError` naming the folder when there are none or the numbering has gaps.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetFileMissing(f"{folder}: asset folder not found (no 'gaussians/' directory)")
    gdir = folder / "gaussians"
    if not gdir.is_dir():
        raise AssetFileMissing(f"{folder}: no per-timestamp Gaussians (no 'gaussians/' directory: neither "
                               f"gaussians/t_0000.ply, t_0001.ply, ... nor gaussians/canonical.ply)")
    found = sorted((int(m.group(1)), p) for p in gdir.iterdir() if (m := _FRAME_RE.match(p.name)))
    if not found:
        raise AssetFileMissing(f"{folder}: no per-timestamp Gaussians (expected {gdir}/t_0000.ply, t_0001.ply, ...)")
    idx = [i for i, _ in found]
    if idx != list(range(len(idx))):
        raise AssetError(f"{gdir}: frame numbers must run 0..{len(idx) - 1} without gaps, got {idx}")
    return [p for _, p in found]


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AssetError(f"{path}: cannot read {what} ({e})") from e


def _times(gdir: Path, n: int, traj: OrbitTrajectory) -> torch.Tensor:
    path = gdir / "times.json"
    if path.is_file():
        raw = _read_json(path, "the list of times")
        try:
            times = torch.tensor([float(t) for t in raw], dtype=torch.float32)
        except (ValueError, TypeError) as e:
            raise AssetError(f"{path}: cannot read the list of times ({e})") from e
    elif n == traj.num_frames:
        times = traj.times()
    elif n == 1:
        times = torch.zeros(1)
    else:
        raise AssetError(f"{gdir}: {n} PLYs, no times.json, and the trajectory has {traj.num_frames} frames")
    if times.numel() != n:
        raise AssetError(f"{path}: {times.numel()} times for {n} PLY files")
    if bool((times < 0).any() or (times > 1).any()) or (n > 1 and bool((times[1:] <= times[:-1]).any())):
        raise AssetError(f"{path}: times must increase strictly within [0, 1], got {times.tolist()}")
    return times


def read_asset(folder: Union[str, Path]) -> Asset:
    """Reads and checks an asset folder (layout in the module docstring); raises :class:`AssetError`
    (:class:`AssetFileMissing` for a missing file) naming the file and the problem."""
    folder = Path(folder)
    paths = frame_paths(folder)
    traj_path = folder / "trajectory.json"
    if not traj_path.is_file():
        raise AssetFileMissing(f"{folder}: missing trajectory.json (the asset's orbit: elevation, radius, "
                               f"field of view)")
    try:
        traj = OrbitTrajectory.load(traj_path)
    except ValueError as e:
        raise AssetError(str(e)) from e
    times = _times(folder / "gaussians", len(paths), traj)
    frames = []
    for p in paths:
        try:
            g = read_ply(p)
        except (ValueError, OSError) as e:
            raise AssetError(str(e)) from e
        for k, v in g.items():
            if not bool(torch.isfinite(v).all()):
                raise AssetError(f"{p}: property {k} contains NaN or Inf")
        f0 = frames[0] if frames else g
        if g["means"].shape != f0["means"].shape or g["sh"].shape != f0["sh"].shape:
            raise AssetError(f"{p}: {g['means'].shape[0]} Gaussians with SH {tuple(g['sh'].shape[1:])}; "
                             f"{paths[0].name} has {f0['means'].shape[0]} with {tuple(f0['sh'].shape[1:])} "
                             f"(all frames must match)")
        frames.append(g)
    background, fps = (1.0, 1.0, 1.0), 12
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        construct = _read_json(cfg_path, "JSON").get("construct", {})
        background = tuple(float(c) for c in construct.get("background", background))
        fps = int(construct.get("fps", fps))
    meta = {}
    cond_path = folder / "condition.json"
    if cond_path.is_file():
        meta = _read_json(cond_path, "JSON")
        if not isinstance(meta, dict):
            raise AssetError(f"{cond_path}: expected an object")
    stack = {k: torch.stack([f[k] for f in frames]) for k in frames[0]}
    quats = stack["quats"] / stack["quats"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return Asset(folder=folder, times=times, means=stack["means"], quats=quats, log_scales=stack["log_scales"],
                 logit_opacities=stack["logit_opacities"], sh=stack["sh"], trajectory=traj,
                 background=background, fps=fps, meta=meta, paths=paths)


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


def export_asset(folder: Union[str, Path], formats: Sequence[str] = EXPORT_FORMATS,
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

    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; expected some of {sorted(EXPORT_FORMATS)}")
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
