"""4D construction: coarse static 3DGS, then the deformation field.

:func:`construct` fits canonical Gaussians (:class:`~orster4d.recon.gaussians.GaussianModel`) and a
:class:`~orster4d.recon.deformation.DeformationField` to a dataset folder and writes an asset folder:

* ``gaussians/canonical.ply`` and ``gaussians/t_XXXX.ply`` (one standard 3DGS ``.ply`` per timestamp),
* ``deformation.pt`` (state dict) and ``config.json`` (construct + field configuration, bounds),
* ``trajectory.json`` (the input's, or an orbit fitted to its cameras),
* ``turntable.gif`` and ``turntable.mp4`` (frame ``i`` of ``n``: azimuth ``360 i / n``, time ``i / (n - 1)``)
  with their ``turntable_trajectory.json``,
* ``metrics.json`` (PSNR / SSIM / LPIPS on training frames, and on held-out views and times when
  ground truth exists: the input's ``test`` split or ``eval_data``),
* ``checkpoints/last.pt`` (written every ``checkpoint_every`` iterations, on Ctrl-C and at the end).

Loss (Eq. 18): ``l_l1 * L1 + l_lpips * LPIPS + l_dep * depth smoothness + l_hex * L_hex``, with
L_hex the MSE of the reference-view video at every training time (Eq. 17) plus the 4DGS plane
regularisers in the fine phase. Every fine step deforms the Gaussians at all training timestamps
and renders them in one batched rasterizer call (the reference camera rides along as an extra
camera per timestamp).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from orster4d.cameras import OrbitTrajectory, camera_centers, fov_from_intrinsics
from orster4d.data.dataset import DynamicDataset, load_dataset
from orster4d.recon.deformation import DeformationField, curvature_probe_times, load_priors
from orster4d.recon.gaussians import DensifySchedule, GaussianModel
from orster4d.io.ply import write_ply
from orster4d.io.video import mp4_available, write_gif, write_mp4
from orster4d.recon.losses import depth_smoothness, load_lpips, lpips_distance
from orster4d.metrics import psnr, ssim
from orster4d.ops.rasterize import rasterize_gaussians
from orster4d.recon.strategy import DensifyStats

CHECKPOINT = "checkpoints/last.pt"


@dataclass
class ConstructConfig:
    """Everything :func:`construct` needs; the CLI flags mirror these fields."""

    input: str
    output: str
    static: Optional[str] = None  # static orbital video V' for the coarse phase
    priors: Optional[str] = None  # prior tokens file for ST-HexPlane
    eval_data: Optional[str] = None  # ground truth for held-out metrics (default: input's test split)
    coarse_iters: int = 6000
    fine_iters: int = 3000
    init_points: int = 5000
    max_sh_degree: int = 3
    sh_up_every: int = 1000
    coarse_batch: int = 4
    views_per_time: int = 1
    lambda_l1: float = 1.0
    lambda_lpips: float = 0.2
    lambda_dep: float = 0.01
    lambda_hex: float = 0.5
    plane_tv: float = 1e-4
    time_smoothness: float = 1e-3
    time_l1: float = 1e-4
    motion_curvature: float = 0.0  # weight of DeformationField.motion_curvature (0 = off)
    curvature_points: int = 4096  # Gaussians and ...
    curvature_times: int = 4  # ... times sampled for it per step
    hexplane_channels: int = 32
    hexplane_resolution: List[int] = field(default_factory=lambda: [64, 25])  # (R_xyz, R_t), 4DGS's
    hexplane_multires: List[int] = field(default_factory=lambda: [1, 2])
    mlp_width: int = 64
    hexplane_backend: str = "fused"
    attention_backend: str = "sdpa"
    lr_grid: float = 1.6e-3
    lr_mlp: float = 1.6e-4
    densify: DensifySchedule = field(default_factory=DensifySchedule)
    densify_fine: bool = True
    checkpoint_every: int = 1000
    lpips_net: str = "vgg"
    lpips_weights: Optional[str] = None
    background: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    turntable_frames: Optional[int] = None
    fps: int = 12
    device: str = "auto"
    rasterizer_backend: Optional[str] = None
    seed: int = 0
    eval_max_frames: int = 256
    progress: bool = True

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "ConstructConfig":
        d = dict(d)
        d["densify"] = DensifySchedule(**d.get("densify", {}))
        return cls(**d)


class InputError(ValueError):
    """Bad input found before any work starts (the message names the file and the problem)."""


# ------------------------------------------------------------------------------------------ inputs
def validate_inputs(cfg: ConstructConfig, resume: bool = False, overwrite: bool = False) -> Dict:
    """Reads and checks every input; raises :class:`InputError` before any work is done.

    Returns ``{"train": DynamicDataset, "static": DynamicDataset|None, "eval": DynamicDataset|None,
    "priors": dict|None}``.
    """
    out = Path(cfg.output)
    if out.exists() and not resume:
        if not overwrite and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out}: output folder exists; pass --overwrite to replace it or --resume to continue")
    if resume and not (out / CHECKPOINT).is_file():
        raise InputError(f"{out / CHECKPOINT}: no checkpoint to resume from")
    r = list(cfg.hexplane_resolution)
    if len(r) != 2 or r[0] < 2 or r[1] < 2:
        raise InputError(f"hexplane_resolution must be [R_xyz >= 2, R_t >= 2], got {r}")
    try:
        data = load_dataset(cfg.input, cfg.background)
        static = load_dataset(cfg.static, cfg.background) if cfg.static else None
        evald = load_dataset(cfg.eval_data, cfg.background) if cfg.eval_data else None
        priors = load_priors(cfg.priors) if cfg.priors else None
    except ValueError as e:
        raise InputError(str(e)) from e
    train = data.split("train") if data.has_split("train") else data
    if train.num_frames == 0:
        raise InputError(f"{cfg.input}: no training frames")
    if evald is None and data.has_split("test"):
        evald = data.split("test")
    elif evald is not None and evald.has_split("test"):
        evald = evald.split("test")  # held-out views and times of a ground-truth set
    for name, ds in (("static video", static), ("eval data", evald)):
        if ds is not None and (ds.width, ds.height) != (train.width, train.height):
            raise InputError(f"{ds.files[0]}: {name} resolution {ds.width}x{ds.height} differs from the input's "
                             f"{train.width}x{train.height} ({train.files[0]})")
    return {"train": train, "all": data, "static": static, "eval": evald, "priors": priors}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _scene_bounds(ds: DynamicDataset) -> tuple:
    """Centre ``[3]`` and half-size of the region the cameras look at: the least-squares closest
    point to all optical axes, and the half-width of the view there."""
    vm = ds.viewmats.double()
    c = camera_centers(vm)
    d = vm[:, 2, :3]  # optical axes (third row of R) in world coordinates
    eye = torch.eye(3, dtype=torch.float64)
    P = eye - d[:, :, None] * d[:, None, :]
    A = P.sum(0)
    b = (P @ c[:, :, None]).sum(0)[:, 0]
    centre = torch.linalg.lstsq(A, b).solution if ds.num_frames > 1 else c[0] + 3 * d[0]
    dist = (c - centre).norm(dim=-1).mean()
    half = dist * 0.5 * ds.width / ds.Ks[:, 0, 0].double().mean()
    return centre.float(), float(half)


@torch.no_grad()
def _init_gaussians(ds: DynamicDataset, n: int, max_sh: int, gen: torch.Generator, device) -> GaussianModel:
    """Points carved from the alpha masks (visual hull) when the frames have alpha, else uniform
    in the viewed region; colours averaged from the frames they project into."""
    centre, half = _scene_bounds(ds)
    cand = centre + half * (2 * torch.rand(max(8 * n, 4096), 3, generator=gen) - 1)
    idx = torch.randperm(ds.num_frames, generator=gen)[:64]
    vm, K = ds.viewmats[idx], ds.Ks[idx]
    pc = (vm[:, None, :3, :3] @ cand[None, :, :, None])[..., 0] + vm[:, None, :3, 3]  # [F, P, 3]
    z = pc[..., 2].clamp_min(1e-6)
    u = K[:, None, 0, 0] * pc[..., 0] / z + K[:, None, 0, 2]
    v = K[:, None, 1, 1] * pc[..., 1] / z + K[:, None, 1, 2]
    inside = (pc[..., 2] > 0) & (u >= 0) & (u < ds.width) & (v >= 0) & (v < ds.height)
    ui = u.long().clamp(0, ds.width - 1)
    vi = v.long().clamp(0, ds.height - 1)
    fi = torch.arange(idx.shape[0])[:, None].expand_as(ui)
    cols = ds.images[idx][fi, vi, ui]  # [F, P, 3]
    keep = torch.ones(cand.shape[0], dtype=torch.bool)
    if ds.alphas is not None:
        a = ds.alphas[idx][fi, vi, ui, 0]
        votes = ((a > 0.5) & inside).float().sum(0) / inside.float().sum(0).clamp_min(1)
        keep = votes >= (0.9 if bool((ds.times == ds.times[0]).all()) else 0.5)
        if int(keep.sum()) < 16:
            keep = torch.ones_like(keep)
    pts = cand[keep][:n]
    w = inside[:, keep][:, :n].float()[..., None]
    col = (cols[:, keep][:, :n] * w).sum(0) / w.sum(0).clamp_min(1)
    model = GaussianModel.from_points(pts.to(device), col.clamp(0.02, 0.98).to(device), max_sh)
    return model


class _LPIPS:
    def __init__(self, cfg: ConstructConfig, device):
        self.model, self.reason = load_lpips(cfg.lpips_net, cfg.lpips_weights, device)

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred, target):
        return lpips_distance(self.model, pred, target)


# ------------------------------------------------------------------------------------------ rendering
def deform(gauss: GaussianModel, field: Optional[DeformationField], times: torch.Tensor):
    """Gaussians at ``times [T]``: ``means, quats [T, N, 4], log_scales [T, N, 3]`` (canonical when
    ``field`` is None, broadcast over T)."""
    T = times.shape[0]
    if field is None:
        return (gauss.means.expand(T, -1, -1), gauss.quats.expand(T, -1, -1), gauss.log_scales.expand(T, -1, -1))
    dp, dq, ds = field(gauss.means, times)
    return gauss.means + dp, gauss.quats + dq, gauss.log_scales + ds


def render(gauss: GaussianModel, field: Optional[DeformationField], times: torch.Tensor, viewmats: torch.Tensor,
           Ks: torch.Tensor, width: int, height: int, background, backend=None):
    """Renders the Gaussians deformed to ``times [T]`` from ``viewmats [T, C, 4, 4]`` in one call."""
    means, quats, log_scales = deform(gauss, field, times)
    T, C = viewmats.shape[:2]
    bg = torch.as_tensor(background, dtype=torch.float32, device=means.device).expand(T, C, 3)
    return rasterize_gaussians(means, quats, log_scales.exp(), gauss.opacities, gauss.sh, viewmats, Ks, width,
                               height, sh_degree=gauss.active_sh_degree, backgrounds=bg, backend=backend)


@torch.no_grad()
def render_frames(gauss, field, times, viewmats, Ks, width, height, background, backend=None, chunk: int = 16):
    """``[F, H, W, 3]`` renders of F frames (each its own time and camera), ``chunk`` per call."""
    outs = []
    for s in range(0, times.shape[0], chunk):
        sl = slice(s, s + chunk)
        out = render(gauss, field, times[sl], viewmats[sl, None], Ks[sl, None], width, height, background, backend)
        outs.append(out.rgb[:, 0].clamp(0, 1))
    return torch.cat(outs, 0)


def frame_kinds(view_ids: torch.Tensor, times: torch.Tensor, seen_view_ids: torch.Tensor,
                seen_times: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Kind of each held-out frame: ``view_ids, times [F]`` against the fitted frames' ``[S]``.

    Returns bool masks ``[F]``: ``novel_view`` (a camera not fitted, or unknown (id < 0), at a
    fitted time), ``novel_time`` (a fitted camera at a time not fitted) and ``novel_view_and_time``.
    Frames that are neither (a fitted camera at a fitted time) are in no mask.
    """
    novel_view = ~torch.isin(view_ids, seen_view_ids) | (view_ids < 0)
    novel_time = ~torch.isin(times, seen_times)
    return {"novel_view": novel_view & ~novel_time, "novel_time": novel_time & ~novel_view,
            "novel_view_and_time": novel_view & novel_time}


@torch.no_grad()
def evaluate(gauss, field, ds: DynamicDataset, device, lp: Optional[_LPIPS], max_frames: int, background,
             backend=None, seen: Optional[DynamicDataset] = None) -> Dict:
    """Mean PSNR / SSIM (and LPIPS when available) over up to ``max_frames`` frames of ``ds``.

    With ``seen`` (the fitted frames), the PSNR is also given per kind of held-out frame:
    ``psnr_by_kind`` maps ``novel_view`` (a camera not fitted, at a fitted time), ``novel_time``
    (a fitted camera at a time not fitted) and ``novel_view_and_time`` to ``{"frames", "psnr"}``.
    """
    idx = torch.linspace(0, ds.num_frames - 1, min(max_frames, ds.num_frames)).round().long().unique()
    pred = render_frames(gauss, field, ds.times[idx].to(device), ds.viewmats[idx].to(device), ds.Ks[idx].to(device),
                         ds.width, ds.height, background, backend)
    gt = ds.images[idx].to(device)
    per_frame = psnr(pred, gt).reshape(-1).cpu()
    res = {"frames": int(idx.numel()), "psnr": float(per_frame.mean()), "ssim": float(ssim(pred, gt).mean())}
    if lp is not None and lp.available:
        res["lpips"] = float(torch.cat([lp(pred[s:s + 8], gt[s:s + 8]) for s in range(0, pred.shape[0], 8)]).mean())
    else:
        res["lpips"] = None
    if seen is not None and ds.view_ids is not None and seen.view_ids is not None:
        kinds = frame_kinds(ds.view_ids[idx], ds.times[idx], seen.view_ids, seen.times)
        res["psnr_by_kind"] = {k: {"frames": int(m.sum()), "psnr": float(per_frame[m].mean()) if m.any() else None}
                               for k, m in kinds.items()}
    return res


# ------------------------------------------------------------------------------------------ the run
class _Run:
    """State of one construction (models, optimisers, schedule position); saved as checkpoints."""

    def __init__(self, cfg: ConstructConfig, inputs: Dict, device):
        self.cfg, self.inputs, self.device = cfg, inputs, device
        self.train: DynamicDataset = inputs["train"]
        self.coarse_data: DynamicDataset = inputs["static"] if inputs["static"] is not None else self.train
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.iteration = 0
        self.gauss: Optional[GaussianModel] = None
        self.gopt = None
        self.field: Optional[DeformationField] = None
        self.fopt = None
        self.stats: Optional[DensifyStats] = None
        self.history: List[Dict] = []
        self.initial_psnr: Optional[float] = None
        self._index_times()
        # training tensors live on the device once (no per-step host-to-device copies)
        self._dev = {}
        for name, ds in (("train", self.train), ("coarse", self.coarse_data)):
            self._dev[name] = (ds.images.to(device), ds.viewmats.to(device), ds.Ks.to(device))

    # ---- data indexing
    def _index_times(self):
        tr = self.train
        self.times = torch.unique(tr.times)
        self.frames_at, self.ref_at = [], []
        for t in self.times.tolist():
            at = (tr.times == t).nonzero()[:, 0]
            normal = at[~tr.reference[at]]
            self.frames_at.append(normal if normal.numel() else at)
            ref = at[tr.reference[at]]
            self.ref_at.append(int(ref[0]) if ref.numel() else -1)
        # padded [T, max frames] table of candidate frames per time, for vectorised sampling
        width = max(f.numel() for f in self.frames_at)
        self.cand = torch.stack([torch.cat([f, f.new_full((width - f.numel(),), int(f[0]))]) for f in self.frames_at])
        self.cand_n = torch.tensor([f.numel() for f in self.frames_at])
        self.ref_idx = torch.tensor(self.ref_at)
        self.use_hex = self.cfg.lambda_hex > 0 and all(r >= 0 for r in self.ref_at)
        if self.cfg.lambda_hex > 0 and not self.use_hex:
            self.hex_reason = "L_hex off: the input has no reference-view frame at every training time"
        else:
            self.hex_reason = ""

    # ---- models
    def setup_coarse(self):
        cfg = self.cfg
        self.gauss = _init_gaussians(self.coarse_data, cfg.init_points, cfg.max_sh_degree, self.gen, self.device)
        self.extent = self.gauss.scene_extent()
        self.gopt = self.gauss.make_optimizer(extent=self.extent)
        self.stats = DensifyStats(self.gauss.num_gaussians, self.device)

    def setup_fine(self):
        cfg = self.cfg
        m = self.gauss.means.detach()
        lo, hi = m.min(0).values, m.max(0).values
        pad = 0.2 * (hi - lo).clamp_min(1e-3)
        prior_dims = None
        if self.inputs["priors"] is not None:
            prior_dims = (self.inputs["priors"]["spatial"].shape[1], self.inputs["priors"]["temporal"].shape[1])
        self.field = DeformationField(torch.stack([lo - pad, hi + pad]).cpu(), cfg.hexplane_channels,
                                      cfg.hexplane_resolution, cfg.hexplane_multires, cfg.mlp_width,
                                      cfg.hexplane_backend, prior_dims,
                                      attention_backend=cfg.attention_backend).to(self.device)
        if prior_dims is not None:
            self.field.set_priors(self.inputs["priors"]["spatial"], self.inputs["priors"]["temporal"])
        self.fopt = self._field_optimizer()

    def _field_optimizer(self):
        grid = [p for n, p in self.field.named_parameters() if n.startswith("hexplane.")]
        mlp = [p for n, p in self.field.named_parameters() if not n.startswith("hexplane.")]
        return torch.optim.Adam([{"params": grid, "lr": self.cfg.lr_grid, "name": "grid"},
                                 {"params": mlp, "lr": self.cfg.lr_mlp * self.extent, "name": "mlp"}], eps=1e-15)

    # ---- checkpoints
    def state(self) -> Dict:
        return {
            "iteration": self.iteration, "config": self.cfg.to_dict(), "extent": self.extent,
            "gaussians": self.gauss.state(), "gauss_opt": self.gopt.state_dict(),
            "field_config": None if self.field is None else self.field.config(),
            "field": None if self.field is None else {k: v.cpu() for k, v in self.field.state_dict().items()},
            "field_opt": None if self.fopt is None else self.fopt.state_dict(),
            "stats": [self.stats.grad_norm_sum.cpu(), self.stats.count.cpu(), self.stats.max_radii.cpu()],
            "history": self.history, "initial_psnr": self.initial_psnr, "rng": self.gen.get_state(),
        }

    def save(self, out: Path):
        path = out / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load(self, out: Path):
        st = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        self.iteration = int(st["iteration"])
        self.extent = float(st["extent"])
        self.gauss = GaussianModel.from_state(st["gaussians"], self.device)
        self.gopt = self.gauss.make_optimizer(extent=self.extent)
        self.gopt.load_state_dict(st["gauss_opt"])
        if st["field"] is not None:
            self.field = DeformationField.from_config(st["field_config"], st["field"]["aabb"]).to(self.device)
            self.field.load_state_dict(st["field"])
            self.fopt = self._field_optimizer()
            self.fopt.load_state_dict(st["field_opt"])
        self.stats = DensifyStats(self.gauss.num_gaussians, self.device)
        self.stats.grad_norm_sum.copy_(st["stats"][0])
        self.stats.count.copy_(st["stats"][1])
        self.stats.max_radii.copy_(st["stats"][2])
        self.history = st["history"]
        self.initial_psnr = st["initial_psnr"]
        self.gen.set_state(st["rng"])

    # ---- one step
    def _lr_schedule(self, phase_it: int, phase_len: int):
        frac = min(phase_it / max(phase_len, 1), 1.0)
        decay = 0.01 ** frac  # exponential decay to 1 % over the phase (3DGS: means 1.6e-4 -> 1.6e-6)
        for g in self.gopt.param_groups:
            if g["name"] == "means":
                g["lr"] = 1.6e-4 * self.extent * decay
        if self.fopt is not None:
            for g in self.fopt.param_groups:
                base = self.cfg.lr_grid if g["name"] == "grid" else self.cfg.lr_mlp * self.extent
                g["lr"] = base * (0.1 ** frac)

    def _batch(self, fine: bool):
        """Targets and cameras of one step: ``(times [T], viewmats [T, C, 4, 4], Ks [T, C, 3, 3],
        gt [T, C, H, W, 3], n_views, dataset)``; the last camera of each time is the reference view
        when L_hex is on."""
        if not fine:
            ds = self.coarse_data
            images, vms, Ks = self._dev["coarse"]
            idx = torch.randperm(ds.num_frames, generator=self.gen)[: self.cfg.coarse_batch].to(self.device)
            return torch.zeros(1, device=self.device), vms[idx][None], Ks[idx][None], images[idx][None], idx.numel(), ds
        images, vms, Ks = self._dev["train"]
        T, V = self.times.shape[0], self.cfg.views_per_time
        col = (torch.rand(T, V, generator=self.gen) * self.cand_n[:, None]).long().clamp_max(self.cand.shape[1] - 1)
        idx = self.cand.gather(1, col)  # [T, V]
        if self.use_hex:
            idx = torch.cat([idx, self.ref_idx[:, None]], 1)
        idx = idx.to(self.device)
        return self.times.to(self.device), vms[idx], Ks[idx], images[idx], V, self.train

    def step(self, fine: bool, lp: _LPIPS) -> Dict:
        cfg = self.cfg
        times, vm, K, gt, n_views, ds = self._batch(fine)
        out = render(self.gauss, self.field if fine else None, times, vm, K, ds.width, ds.height, cfg.background,
                     cfg.rasterizer_backend)
        out.means2d.retain_grad()
        rgb = out.rgb[:, :n_views]
        tgt = gt[:, :n_views]
        l1 = (rgb - tgt).abs().mean()
        loss = cfg.lambda_l1 * l1
        logs = {"l1": l1.detach()}
        if cfg.lambda_lpips > 0 and lp.available:
            lv = lp(rgb, tgt).mean()
            loss = loss + cfg.lambda_lpips * lv
            logs["lpips"] = lv.detach()
        if cfg.lambda_dep > 0:
            dep = depth_smoothness(out.depth[:, :n_views], out.alpha[:, :n_views])
            loss = loss + cfg.lambda_dep * dep
            logs["dep"] = dep.detach()
        if fine and self.use_hex:
            hexl = ((out.rgb[:, n_views:] - gt[:, n_views:]) ** 2).mean()
            loss = loss + cfg.lambda_hex * hexl
            logs["hex"] = hexl.detach()
        if fine:
            loss = loss + self.field.regularisation(cfg.plane_tv, cfg.time_smoothness, cfg.time_l1)
            if cfg.motion_curvature > 0:
                curv = self._motion_curvature()
                loss = loss + cfg.motion_curvature * curv
                logs["curv"] = curv.detach()
        self.gopt.zero_grad(set_to_none=True)
        if self.fopt is not None:
            self.fopt.zero_grad(set_to_none=True)
        loss.backward()
        # each image's loss is averaged over the batch; densify on per-image gradients as 3DGS
        out.means2d.grad.mul_(float(out.rgb.shape[0] * out.rgb.shape[1]))
        self.stats.update(out)
        self.gopt.step()
        if fine:
            self.fopt.step()
        logs["loss"] = loss.detach()
        logs["psnr"] = psnr(rgb.detach().clamp(0, 1), tgt).mean()
        return logs  # 0-d tensors: converting them syncs the device, so the caller does it when logging

    def _motion_curvature(self) -> torch.Tensor:
        """The field's motion curvature at random Gaussians and random times between fitted ones."""
        cfg = self.cfg
        idx = torch.randperm(self.gauss.num_gaussians, generator=self.gen)[: cfg.curvature_points].to(self.device)
        times, step = curvature_probe_times(self.times, cfg.curvature_times, self.gen)
        return self.field.motion_curvature(self.gauss.means.detach()[idx], times.to(self.device), step)

    def maybe_densify(self, phase_it: int, fine: bool):
        sch = self.cfg.densify
        if fine:
            if not self.cfg.densify_fine:
                return
            stop = min(sch.stop, int(0.6 * self.cfg.fine_iters))
            start = min(sch.start, stop)
            reset = False
        else:
            start, stop, reset = sch.start, sch.stop, True
        if start <= phase_it < stop and phase_it % sch.interval == 0 and phase_it > 0:
            self.gauss.densify_and_prune(self.stats.mean_grad(), self.stats.max_radii, sch, self.extent, self.gopt,
                                         prune_big_screen=phase_it > sch.opacity_reset_interval, generator=self.gen)
            self.stats = DensifyStats(self.gauss.num_gaussians, self.device)
        if reset and phase_it > 0 and phase_it % sch.opacity_reset_interval == 0 and phase_it < stop:
            self.gauss.reset_opacity(self.gopt)


def _fit_trajectory(ds: DynamicDataset) -> OrbitTrajectory:
    """The input's trajectory, or an orbit with the cameras' mean radius, elevation and field of view."""
    if ds.trajectory is not None:
        return ds.trajectory
    centre, _ = _scene_bounds(ds)
    c = camera_centers(ds.viewmats.double()) - centre.double()
    radius = float(c.norm(dim=-1).mean())
    elev = float(torch.rad2deg(torch.asin((c[:, 2] / c.norm(dim=-1)).clamp(-1, 1))).mean())
    n = int(torch.unique(ds.times).numel())
    return OrbitTrajectory(num_frames=max(n, 2), elevation_deg=elev, radius=radius,
                           fov_deg=fov_from_intrinsics(ds.Ks[0], ds.width), width=ds.width, height=ds.height,
                           center=centre.tolist())


@torch.no_grad()
def write_outputs(run: _Run, out: Path, lp: _LPIPS, wall: float) -> Dict:
    """Writes the asset folder (see the module docstring); returns the metrics dict."""
    cfg, dev, g, fld = run.cfg, run.device, run.gauss, run.field
    all_ds: DynamicDataset = run.inputs["all"]
    traj = _fit_trajectory(all_ds)
    traj.save(out / "trajectory.json")
    times = traj.times() if all_ds.trajectory is not None else torch.unique(all_ds.times)
    (out / "gaussians").mkdir(parents=True, exist_ok=True)
    write_ply(out / "gaussians" / "canonical.ply", g.means, g.quats, g.log_scales, g.logit_opacities, g.sh)
    for i in range(times.shape[0]):
        m, q, s = deform(g, fld, times[i:i + 1].to(dev))
        write_ply(out / "gaussians" / f"t_{i:04d}.ply", m[0], q[0], s[0], g.logit_opacities, g.sh)
    (out / "gaussians" / "times.json").write_text(json.dumps([float(t) for t in times]))
    torch.save({k: v.cpu() for k, v in fld.state_dict().items()}, out / "deformation.pt")
    (out / "config.json").write_text(json.dumps({
        "construct": cfg.to_dict(), "deformation": fld.config(), "aabb": fld.aabb.cpu().tolist(),
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
        "wall_time_s": wall, "num_gaussians": g.num_gaussians, "turntable_frames": n,
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


def construct(cfg: ConstructConfig, resume: bool = False, overwrite: bool = False,
              callback: Optional[Callable[[int, Dict], None]] = None, log: Callable[[str], None] = print) -> Dict:
    """Runs the whole construction; returns the metrics written to ``metrics.json``.

    ``resume`` continues from ``<output>/checkpoints/last.pt`` with the checkpoint's configuration
    (iteration counts may be raised by ``cfg``). ``callback(iteration, logs)`` runs after every
    step. On KeyboardInterrupt a checkpoint is written before the exception propagates.
    """
    out = Path(cfg.output)
    if resume and (out / CHECKPOINT).is_file():
        saved = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)["config"]
        saved.update(coarse_iters=max(saved["coarse_iters"], cfg.coarse_iters) if cfg.coarse_iters != 6000
                     else saved["coarse_iters"],
                     fine_iters=max(saved["fine_iters"], cfg.fine_iters) if cfg.fine_iters != 3000
                     else saved["fine_iters"], progress=cfg.progress)
        cfg = ConstructConfig.from_dict(saved)
    inputs = validate_inputs(cfg, resume, overwrite)
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    lp = _LPIPS(cfg, device)
    if not lp.available:
        log(f"LPIPS term off: {lp.reason}")
    if resume:
        run = _Run(cfg, inputs, device)
        run.load(out)
        log(f"resuming from {out / CHECKPOINT} at iteration {run.iteration}")
    else:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        run = _Run(cfg, inputs, device)
        run.setup_coarse()
        run.initial_psnr = evaluate(run.gauss, None, run.train, device, None, 32, cfg.background,
                                    cfg.rasterizer_backend)["psnr"]
    if run.hex_reason:
        log(run.hex_reason)
    total = cfg.coarse_iters + cfg.fine_iters
    start = time.time()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=run.iteration, disable=not cfg.progress, dynamic_ncols=True)
    try:
        while run.iteration < total:
            it = run.iteration
            fine = it >= cfg.coarse_iters
            phase_it = it - cfg.coarse_iters if fine else it
            if fine and run.field is None:
                run.setup_fine()
            run._lr_schedule(phase_it, cfg.fine_iters if fine else cfg.coarse_iters)
            if cfg.sh_up_every > 0 and it > 0 and it % cfg.sh_up_every == 0:
                run.gauss.oneup_sh_degree()
            logs = run.step(fine, lp)
            run.iteration += 1
            run.maybe_densify(phase_it + 1, fine)
            if run.iteration % 10 == 0 or run.iteration == total:
                logs = {k: float(v) for k, v in logs.items()}
                logs.update(n=run.gauss.num_gaussians, it=run.iteration)
                run.history.append(logs)
                bar.set_postfix({"phase": "fine" if fine else "coarse", "loss": f"{logs['loss']:.4f}",
                                 "psnr": f"{logs['psnr']:.2f}", "N": run.gauss.num_gaussians})
            bar.update(1)
            if callback is not None:
                callback(run.iteration, logs)
            if cfg.checkpoint_every > 0 and run.iteration % cfg.checkpoint_every == 0:
                run.save(out)
    except KeyboardInterrupt:
        bar.close()
        run.save(out)
        log(f"interrupted at iteration {run.iteration}; checkpoint written to {out / CHECKPOINT} "
            f"(continue with --resume)")
        raise
    bar.close()
    if run.field is None:  # no fine iterations: an identity field still gives the asset its format
        run.setup_fine()
    run.save(out)
    return write_outputs(run, out, lp, time.time() - start)
