"""Reading a 4D asset folder (what ``orster4d-construct`` writes) and rendering it.

Only the per-timestamp Gaussians are read: ``gaussians/t_XXXX.ply`` (standard 3DGS files, one per
timestamp, all with the same Gaussians), ``gaussians/times.json`` (their normalised times; default:
the trajectory's ``i / (T - 1)``) and ``trajectory.json`` (the orbit of the asset's orbital video).
The deformation field is not needed. An optional ``condition.json`` holds metadata such as
``{"kind": "text" | "image" | "static3d", "prompt": "...", "image": "front.png"}`` (paths relative
to the asset folder), used for the CLIP scores and ``--group-by``.

Between two stored timestamps the Gaussians are interpolated linearly (means, log-scales, and the
quaternions after aligning their signs); outside the stored span a time is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch

from orster4d.cameras import OrbitTrajectory
from orster4d.io.ply import read_ply

TIME_TOL = 1e-4


class AssetError(ValueError):
    """A bad asset folder (the message names the file and the problem)."""


@dataclass
class Asset:
    """A 4D asset: ``T`` timestamps of ``N`` Gaussians.

    Attributes:
        folder: the asset folder; ``name`` its name.
        times: ``[T]`` float32 increasing, in [0, 1].
        means, quats, log_scales: ``[T, N, 3]``, ``[T, N, 4]``, ``[T, N, 3]`` (world units).
        logit_opacities: ``[N]``; sh: ``[N, K, 3]`` SH coefficients (``K = (sh_degree + 1)^2``).
        trajectory: the asset's orbit (elevation, radius, field of view, resolution, front azimuth).
        meta: the contents of ``condition.json`` (empty when absent).
    """

    folder: Path
    times: torch.Tensor
    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    logit_opacities: torch.Tensor
    sh: torch.Tensor
    trajectory: OrbitTrajectory
    meta: Dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    @property
    def num_timestamps(self) -> int:
        return self.times.shape[0]

    def check_times(self, times: torch.Tensor, what: str) -> None:
        """Raises :class:`AssetError` unless every time of ``times [F]`` can be rendered."""
        t = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
        lo, hi = float(self.times[0]), float(self.times[-1])
        bad = (t < lo - TIME_TOL) | (t > hi + TIME_TOL)
        if bool(bad.any()):
            n_ref = int(torch.unique(t).numel())
            raise AssetError(f"{self.folder}: {what} has {n_ref} times in [{float(t.min()):.4f}, {float(t.max()):.4f}] "
                             f"but the asset stores {self.num_timestamps} timestamp(s) spanning [{lo:.4f}, {hi:.4f}]; "
                             f"its frames cannot be matched to the asset's")

    def gaussians_at(self, times: torch.Tensor):
        """``means [F, N, 3], quats [F, N, 4], log_scales [F, N, 3]`` at ``times [F]`` (interpolated)."""
        t = torch.as_tensor(times, dtype=torch.float32).reshape(-1).cpu()
        self.check_times(t, "the request")
        if self.num_timestamps == 1:
            f = t.shape[0]
            return self.means.expand(f, -1, -1), self.quats.expand(f, -1, -1), self.log_scales.expand(f, -1, -1)
        hi = torch.searchsorted(self.times, t.clamp(float(self.times[0]), float(self.times[-1]))).clamp(1, self.num_timestamps - 1)
        lo = hi - 1
        w = ((t - self.times[lo]) / (self.times[hi] - self.times[lo])).clamp(0, 1)[:, None, None]
        q0, q1 = self.quats[lo], self.quats[hi]
        q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)
        lerp = lambda a, b: a + w * (b - a)  # noqa: E731
        return (lerp(self.means[lo], self.means[hi]), lerp(q0, q1),
                lerp(self.log_scales[lo], self.log_scales[hi]))

    @torch.no_grad()
    def render(self, times: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
               background: Sequence[float] = (1.0, 1.0, 1.0), device=None, backend: Optional[str] = None,
               chunk: int = 16) -> torch.Tensor:
        """Renders the asset at ``times [F]`` from ``viewmats [F, C, 4, 4]`` (or ``[F, 4, 4]``) with
        ``Ks`` of the same leading shape: ``[F, C, H, W, 3]`` (or ``[F, H, W, 3]``) in [0, 1], on ``device``
        (CPU by default)."""
        from orster4d.ops.rasterize import rasterize_gaussians

        times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
        single = viewmats.dim() == 3
        vm = viewmats[:, None] if single else viewmats
        K = Ks[:, None] if single else Ks
        F_ = times.shape[0]
        if vm.shape[0] != F_ or vm.shape[-2:] != (4, 4) or K.shape[:2] != vm.shape[:2] or K.shape[-2:] != (3, 3):
            raise ValueError(f"viewmats [F={F_}, C, 4, 4] and Ks [F, C, 3, 3] expected, got "
                             f"{tuple(viewmats.shape)} and {tuple(Ks.shape)}")
        device = torch.device(device) if device is not None else torch.device("cpu")
        opac = torch.sigmoid(self.logit_opacities).to(device)
        sh = self.sh.to(device)
        outs = []
        for s in range(0, F_, chunk):
            m, q, ls = (x.to(device) for x in self.gaussians_at(times[s:s + chunk]))
            c = vm.shape[1]
            bg = torch.as_tensor(background, dtype=torch.float32, device=device).expand(m.shape[0], c, 3)
            out = rasterize_gaussians(m, q, ls.exp(), opac, sh, vm[s:s + chunk].float().to(device),
                                      K[s:s + chunk].float().to(device), width, height, sh_degree=self.sh_degree,
                                      backgrounds=bg, backend=backend)
            outs.append(out.rgb.clamp(0, 1))
        rgb = torch.cat(outs)
        return rgb[:, 0] if single else rgb


def load_asset(folder: Union[str, Path]) -> Asset:
    """Reads and checks an asset folder (see the module docstring); raises :class:`AssetError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetError(f"{folder}: asset folder not found")
    gdir = folder / "gaussians"
    plys = sorted(gdir.glob("t_*.ply")) if gdir.is_dir() else []
    if not plys:
        raise AssetError(f"{folder}: no per-timestamp Gaussians (expected {gdir}/t_0000.ply, t_0001.ply, ...)")
    traj_path = folder / "trajectory.json"
    if not traj_path.is_file():
        raise AssetError(f"{folder}: missing trajectory.json (the asset's orbit: elevation, radius, field of view)")
    try:
        traj = OrbitTrajectory.load(traj_path)
    except ValueError as e:
        raise AssetError(str(e)) from e
    times_path = gdir / "times.json"
    if times_path.is_file():
        try:
            times = torch.tensor([float(t) for t in json.loads(times_path.read_text())], dtype=torch.float32)
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            raise AssetError(f"{times_path}: cannot read the list of times ({e})") from e
    elif len(plys) == traj.num_frames:
        times = traj.times()
    elif len(plys) == 1:
        times = torch.zeros(1)
    else:
        raise AssetError(f"{gdir}: {len(plys)} PLYs, no times.json, and the trajectory has {traj.num_frames} frames")
    if times.numel() != len(plys):
        raise AssetError(f"{times_path}: {times.numel()} times for {len(plys)} PLY files")
    if bool((times < 0).any() or (times > 1).any()) or (times.numel() > 1 and bool((times[1:] <= times[:-1]).any())):
        raise AssetError(f"{times_path}: times must increase strictly within [0, 1], got {times.tolist()}")
    per = []
    for p in plys:
        try:
            g = read_ply(p)
        except (ValueError, OSError) as e:
            raise AssetError(str(e)) from e
        for k, v in g.items():
            if not bool(torch.isfinite(v).all()):
                raise AssetError(f"{p}: property {k} contains NaN or Inf")
        if per and (g["means"].shape != per[0]["means"].shape or g["sh"].shape != per[0]["sh"].shape):
            raise AssetError(f"{p}: {g['means'].shape[0]} Gaussians / SH {tuple(g['sh'].shape[1:])} differ from "
                             f"{plys[0]}'s {per[0]['means'].shape[0]} / {tuple(per[0]['sh'].shape[1:])}")
        per.append(g)
    meta = {}
    cond_path = folder / "condition.json"
    if cond_path.is_file():
        try:
            meta = json.loads(cond_path.read_text())
        except json.JSONDecodeError as e:
            raise AssetError(f"{cond_path}: cannot read JSON ({e})") from e
        if not isinstance(meta, dict):
            raise AssetError(f"{cond_path}: expected an object")
    return Asset(folder=folder, times=times, means=torch.stack([g["means"] for g in per]),
                 quats=torch.stack([g["quats"] for g in per]), log_scales=torch.stack([g["log_scales"] for g in per]),
                 logit_opacities=per[0]["logit_opacities"], sh=per[0]["sh"], trajectory=traj, meta=meta)


def write_procedural_asset(folder: Union[str, Path], family: str = "hopper", seed: int = 0, num_frames: int = 16,
                           num_gaussians: int = 2000, trajectory: Optional[OrbitTrajectory] = None,
                           meta: Optional[Dict] = None) -> Path:
    """Writes a procedural object (:func:`orster4d.data.make_object`) as an asset folder: its exact
    Gaussians at the trajectory's ``num_frames`` times (degree-0 SH). For tests and timing."""
    from orster4d.data.procedural import make_object
    from orster4d.io.ply import write_ply
    from orster4d.recon.gaussians import rgb_to_sh_dc

    folder = Path(folder)
    traj = trajectory or OrbitTrajectory(num_frames=num_frames)
    obj = make_object(family, seed, num_gaussians)
    times = traj.times()
    g = obj.gaussians(times)
    (folder / "gaussians").mkdir(parents=True, exist_ok=True)
    logit = torch.logit(g["opacities"].clamp(1e-4, 1 - 1e-4))
    sh = rgb_to_sh_dc(g["colors"])[:, None, :]
    for i in range(times.shape[0]):
        write_ply(folder / "gaussians" / f"t_{i:04d}.ply", g["means"][i], g["quats"][i], g["scales"][i].log(), logit, sh)
    (folder / "gaussians" / "times.json").write_text(json.dumps([float(t) for t in times]))
    traj.save(folder / "trajectory.json")
    if meta is not None:
        (folder / "condition.json").write_text(json.dumps(meta, indent=2))
    return folder
