"""4D construction's training loop: coarse static 3DGS, then the deformation field.

:func:`construct` fits canonical Gaussians (:class:`~orster4d.recon.gaussians.GaussianModel`) and a
:class:`~orster4d.recon.deformation.DeformationField` to a dataset folder and writes the asset
folder described in :mod:`orster4d.recon.export`, plus ``checkpoints/last.pt`` (every
``checkpoint_every`` iterations, on Ctrl-C and at the end), the logs of :mod:`orster4d.logs`
and the manifest of :mod:`orster4d.recon.manifest`. Every input is checked, and the first
evaluation made, before the output folder is created or anything in it is removed.

Schedules (SH bands, densification) follow :func:`~orster4d.recon.config.schedules`: by default
written for the paper's 6000 + 3000 iterations and scaled to the run's phase lengths. Before the
export, Gaussians under the densification's ``min_opacity`` (0.005) are pruned.

Loss (Eq. 18): ``l_l1 * L1 + l_lpips * LPIPS + l_dep * depth smoothness + l_hex * L_hex``, with
L_hex the MSE of the reference-view video at every training time (Eq. 17) plus the 4DGS plane
regularisers in the fine phase. Every fine step deforms the Gaussians at all training timestamps
and renders them in one batched rasterizer call (the reference camera rides along as an extra
camera per timestamp). Densification is :class:`~orster4d.recon.strategy.DefaultStrategy`'s.

A step reads nothing back from the device except what the rasterizer's tile intersection needs:
the training tensors, the candidate tables and the background live on the device, and per-step
random draws are made there (on the CPU the step generator is the run's generator, so results
match earlier versions exactly; on a GPU it is a generator on the device, seeded alike). Losses
are read back every ``log_every`` steps; densification steps (which change the Gaussian count)
and checkpoints sync.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from orster4d.data.dataset import DynamicDataset
from orster4d.logs import CURVES, RunLog, write_curves
from orster4d.metrics import psnr
from orster4d.recon.config import (CHECKPOINT, PAPER_ITERS, ConstructConfig, fine_strategy, resolve_device,
                                    schedules, validate_inputs)
from orster4d.recon.deformation import DeformationField, OffsetHeads, curvature_probe_times
from orster4d.recon.evaluate import evaluate
from orster4d.recon.export import write_outputs
from orster4d.recon.gaussians import GaussianModel
from orster4d.recon.initialise import init_gaussians
from orster4d.recon.losses import LPIPSTerm, depth_smoothness
from orster4d.recon.manifest import record, remove_written
from orster4d.recon.optim import adam, match_device
from orster4d.recon.render import render, render_frames
from orster4d.recon.strategy import _STATE_TENSORS, DefaultStrategy, remove

__all__ = ["construct", "fine_strategy", "prune_invisible"]


@torch.no_grad()
def _field_groups(names: List[str]) -> List[List[str]]:
    """The deformation field's parameter names as its optimiser's groups: ``[grid, mlp]``."""
    return [[n for n in names if n.startswith("hexplane.")], [n for n in names if not n.startswith("hexplane.")]]


def prune_invisible(gauss: GaussianModel, optimizer, state: Optional[Dict], min_opacity: float) -> int:
    """Removes the Gaussians with opacity < ``min_opacity`` (never all of them), with their Adam
    moments and densification statistics; returns how many were removed."""
    drop = gauss.opacities < min_opacity
    if bool(drop.all()):
        drop[gauss.opacities.argmax()] = False
    n = int(drop.sum())
    if n:
        remove(gauss, optimizer, drop)
        if state is not None:
            for k in _STATE_TENSORS:
                state[k] = state[k][~drop]
    return n


class _Run:
    """State of one construction (models, optimisers, densification state, schedule position,
    random generators); saved as checkpoints."""

    def __init__(self, cfg: ConstructConfig, inputs: Dict, device):
        self.cfg, self.inputs, self.device = cfg, inputs, torch.device(device)
        self.train: DynamicDataset = inputs["train"]
        self.coarse_data: DynamicDataset = inputs["static"] if inputs["static"] is not None else self.train
        self.gen = torch.Generator().manual_seed(cfg.seed)  # CPU: initialisation, split samples
        # per-step draws are made where they are used; on the CPU that is the same generator
        self.step_gen = (self.gen if self.device.type == "cpu"
                         else torch.Generator(self.device).manual_seed(cfg.seed))
        self.iteration = 0
        self.gauss: Optional[GaussianModel] = None
        self.gopt = None
        self.field: Optional[DeformationField] = None
        self.fopt = None
        self.sched = schedules(cfg)
        self.strategies = {False: self.sched.coarse, True: self.sched.fine}  # by phase: fine?
        self.wall_before = 0.0  # seconds spent in earlier sessions (resumed runs)
        self.session_start = time.time()
        self.resumed_at: Optional[int] = None
        self.densify_state: Optional[Dict] = None
        self.history: List[Dict] = []
        self.initial_psnr: Optional[float] = None
        self._index_times()
        # everything a step reads lives on the device once (no per-step host-to-device copies)
        self._dev = {}
        for name, ds in (("train", self.train), ("coarse", self.coarse_data)):
            self._dev[name] = (ds.images.to(device), ds.viewmats.to(device), ds.Ks.to(device))
        self.background = torch.tensor(cfg.background, dtype=torch.float32, device=device)

    # ---- data indexing
    def _index_times(self):
        tr = self.train
        self.times = torch.unique(tr.times)  # [T] on the CPU (host-side bookkeeping)
        frames_at, ref_at = [], []
        for t in self.times.tolist():
            at = (tr.times == t).nonzero()[:, 0]
            normal = at[~tr.reference[at]]
            frames_at.append(normal if normal.numel() else at)
            ref = at[tr.reference[at]]
            ref_at.append(int(ref[0]) if ref.numel() else -1)
        # padded [T, max frames] table of candidate frames per time, for vectorised sampling
        width = max(f.numel() for f in frames_at)
        dev = self.device
        self.cand = torch.stack([torch.cat([f, f.new_full((width - f.numel(),), int(f[0]))]) for f in frames_at]).to(dev)
        self.cand_n = torch.tensor([f.numel() for f in frames_at], device=dev)
        self.ref_idx = torch.tensor(ref_at, device=dev)
        self.times_dev = self.times.to(dev)
        self.use_hex = self.cfg.lambda_hex > 0 and all(r >= 0 for r in ref_at)
        if self.cfg.lambda_hex > 0 and not self.use_hex:
            self.hex_reason = "L_hex off: the input has no reference-view frame at every training time"
        else:
            self.hex_reason = ""

    # ---- models
    def setup_coarse(self):
        cfg = self.cfg
        self.gauss = init_gaussians(self.coarse_data, cfg.init_points, cfg.max_sh_degree, self.gen, self.device)
        self.extent = self.gauss.scene_extent()
        self.gopt = self.gauss.make_optimizer(extent=self.extent)
        self.densify_state = DefaultStrategy.initialize_state(self.gauss.num_gaussians, self.extent, self.device)

    def setup_fine(self):
        cfg = self.cfg
        m = self.gauss.means.detach()
        lo, hi = m.min(0).values, m.max(0).values
        pad = 0.2 * (hi - lo).clamp_min(1e-3)
        prior_dims = None
        if self.inputs["priors"] is not None:
            prior_dims = (self.inputs["priors"]["spatial"].shape[1], self.inputs["priors"]["temporal"].shape[1])
        self.field = DeformationField(torch.stack([lo - pad, hi + pad]).cpu(), channels=cfg.hexplane_channels,
                                      resolution=cfg.hexplane_resolution, multires=cfg.hexplane_multires,
                                      width=cfg.mlp_width, backend=cfg.hexplane_backend, prior_dims=prior_dims,
                                      attention_backend=cfg.attention_backend).to(self.device)
        if prior_dims is not None:
            self.field.set_priors(self.inputs["priors"]["spatial"], self.inputs["priors"]["temporal"])
        self.fopt = self._field_optimizer()

    def _field_optimizer(self):
        params = dict(self.field.named_parameters())
        grid, mlp = ([params[n] for n in names] for names in _field_groups(list(params)))
        return adam([{"params": grid, "lr": self.cfg.lr_grid, "name": "grid"},
                     {"params": mlp, "lr": self.cfg.lr_mlp * self.extent, "name": "mlp"}], eps=1e-15)

    # ---- checkpoints
    def state(self) -> Dict:
        return {
            "iteration": self.iteration, "config": self.cfg.to_dict(), "extent": self.extent,
            "gaussians": self.gauss.state(), "gauss_opt": self.gopt.state_dict(),
            "field_config": None if self.field is None else dict(self.field.config),
            "field": None if self.field is None else {k: v.cpu() for k, v in self.field.state_dict().items()},
            "field_opt": None if self.fopt is None else self.fopt.state_dict(),
            "strategy": DefaultStrategy.state_to(self.densify_state, "cpu"),
            "history": self.history, "initial_psnr": self.initial_psnr, "rng": self.gen.get_state(),
            "step_rng": None if self.step_gen is self.gen else self.step_gen.get_state(),
            "wall_time_s": self.elapsed(),
        }

    def elapsed(self) -> float:
        """Wall time of the run so far (s): earlier sessions plus this one."""
        return self.wall_before + time.time() - self.session_start

    def learning_rates(self) -> Dict[str, float]:
        lrs = {g["name"]: float(g["lr"]) for g in self.gopt.param_groups if g["name"] == "means"}
        if self.fopt is not None:
            lrs.update({g["name"]: float(g["lr"]) for g in self.fopt.param_groups})
        return lrs

    def save(self, out: Path):
        path = out / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        record(out, [CHECKPOINT])

    def load(self, out: Path):
        st = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        self.iteration = int(st["iteration"])
        self.extent = float(st["extent"])
        self.gauss = GaussianModel.from_state(st["gaussians"], self.device)
        self.gopt = self.gauss.make_optimizer(extent=self.extent)
        self.gopt.load_state_dict(st["gauss_opt"])
        match_device(self.gopt)
        if st["field"] is not None:
            fcfg = dict(st["field_config"])
            if "aabb" not in fcfg:  # checkpoints written before the bounds joined the config
                fcfg["aabb"] = st["field"]["aabb"].tolist()
            self.field = DeformationField.from_config(fcfg).to(self.device)
            self.field.load_state_dict(st["field"])
            self.fopt = self._field_optimizer()
            field_opt = st["field_opt"]
            old_heads = OffsetHeads.old_layout_names(st["field"])
            if old_heads:  # a checkpoint written before the heads were fused: move their Adam moments too
                params = [n for n in st["field"] if n in dict(self.field.named_parameters()) or n in old_heads]
                field_opt = OffsetHeads.upgrade_adam_state(field_opt, _field_groups(params),
                                                           _field_groups([n for n, _ in self.field.named_parameters()]))
            self.fopt.load_state_dict(field_opt)
            match_device(self.fopt)
        if "strategy" in st:
            self.densify_state = DefaultStrategy.state_to(st["strategy"], self.device)
        else:  # older checkpoints: the statistics as a list
            names = ("grad_norm_sum", "count", "max_radii")
            self.densify_state = {"scene_scale": self.extent,
                                  **{k: v.to(self.device) for k, v in zip(names, st["stats"])}}
        self.history = st["history"]
        self.initial_psnr = st["initial_psnr"]
        self.wall_before = float(st.get("wall_time_s", 0.0))
        self.gen.set_state(st["rng"])
        if self.step_gen is not self.gen and st.get("step_rng") is not None:
            self.step_gen.set_state(st["step_rng"])

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
        gt [T, C, H, W, 3], n_views, dataset)``, all on the device; the last camera of each time
        is the reference view when L_hex is on."""
        dev, gen = self.device, self.step_gen
        if not fine:
            ds = self.coarse_data
            images, vms, Ks = self._dev["coarse"]
            idx = torch.randperm(ds.num_frames, generator=gen, device=dev)[: self.cfg.coarse_batch]
            return torch.zeros(1, device=dev), vms[idx][None], Ks[idx][None], images[idx][None], idx.numel(), ds
        images, vms, Ks = self._dev["train"]
        T, V = self.times.shape[0], self.cfg.views_per_time
        col = (torch.rand(T, V, generator=gen, device=dev) * self.cand_n[:, None]).long().clamp_max(
            self.cand.shape[1] - 1)
        idx = self.cand.gather(1, col)  # [T, V]
        if self.use_hex:
            idx = torch.cat([idx, self.ref_idx[:, None]], 1)
        return self.times_dev, vms[idx], Ks[idx], images[idx], V, self.train

    def step(self, fine: bool, lp: LPIPSTerm, phase_step: Optional[int] = None) -> Dict:
        """One optimisation step; ``phase_step`` (1-based position in the phase after this step)
        drives densification (None: statistics only). Returns 0-d device tensors (reading them
        syncs the device, so the caller does it only when logging)."""
        cfg = self.cfg
        strategy = self.strategies[fine]
        times, vm, K, gt, n_views, ds = self._batch(fine)
        out = render(self.gauss, self.field if fine else None, times, vm, K, ds.width, ds.height, self.background,
                     cfg.rasterizer_backend)
        # each image's loss is averaged over the batch; densify on per-image gradients as 3DGS
        info = {"means2d": out.means2d, "radii": out.radii, "width": ds.width, "height": ds.height,
                "n_images": out.rgb.shape[0] * out.rgb.shape[1]}
        strategy.step_pre_backward(self.gauss, self.gopt, self.densify_state, phase_step, info)
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
        self.gopt.step()
        if fine:
            self.fopt.step()
        logs["loss"] = loss.detach()
        logs["psnr"] = psnr(rgb.detach().clamp(0, 1), tgt).mean()
        if phase_step is None:
            DefaultStrategy.update_state(self.densify_state, info)
        else:
            strategy.step_post_backward(self.gauss, self.gopt, self.densify_state, phase_step, info,
                                        generator=self.gen)
        return logs

    def _motion_curvature(self) -> torch.Tensor:
        """The field's motion curvature at random Gaussians and random times between fitted ones."""
        cfg = self.cfg
        idx = torch.randperm(self.gauss.num_gaussians, generator=self.step_gen, device=self.device)
        times, step = curvature_probe_times(self.times, cfg.curvature_times, self.step_gen, self.device)
        return self.field.motion_curvature(self.gauss.means.detach()[idx[: cfg.curvature_points]], times, step)


def _resumed_config(cfg: ConstructConfig, out: Path) -> ConstructConfig:
    """The checkpoint's configuration; iteration counts may be raised by ``cfg`` (non-defaults)."""
    saved = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)["config"]
    saved.setdefault("scale_schedule", False)  # checkpoints from before scaled schedules ran theirs as given
    saved.update(coarse_iters=max(saved["coarse_iters"], cfg.coarse_iters) if cfg.coarse_iters != PAPER_ITERS[0]
                 else saved["coarse_iters"],
                 fine_iters=max(saved["fine_iters"], cfg.fine_iters) if cfg.fine_iters != PAPER_ITERS[1]
                 else saved["fine_iters"], progress=cfg.progress)
    return ConstructConfig.from_dict(saved)


def construct(cfg: ConstructConfig, resume: bool = False, overwrite: bool = False,
              callback: Optional[Callable[[int, Dict], None]] = None, log: Callable[[str], None] = print) -> Dict:
    """Runs the whole construction; returns the metrics written to ``metrics.json``.

    ``resume`` continues from ``<output>/checkpoints/last.pt`` with the checkpoint's configuration
    (iteration counts may be raised by ``cfg``). ``overwrite`` replaces an earlier construction's
    files (only those: see :mod:`orster4d.recon.manifest`). ``callback(iteration, logs)`` runs after
    every step (``logs`` holds floats on logging steps, device tensors otherwise). On
    KeyboardInterrupt a checkpoint is written before the exception propagates.
    """
    out = Path(cfg.output)
    if resume and (out / CHECKPOINT).is_file():
        cfg = _resumed_config(cfg, out)
    inputs = validate_inputs(cfg, resume, overwrite)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    lp = LPIPSTerm(cfg.lpips_net, cfg.lpips_weights, device)
    if not lp.available:
        log(f"LPIPS term off: {lp.reason}")
    run = _Run(cfg, inputs, device)
    if resume:
        run.load(out)
        run.resumed_at = run.iteration
        log(f"resuming from {out / CHECKPOINT} at iteration {run.iteration}")
    else:
        run.setup_coarse()
        run.initial_psnr = evaluate(run.gauss, None, run.train, device, None, 32, cfg.background,
                                    cfg.rasterizer_backend)["psnr"]
        if out.exists():
            remove_written(out)  # validate_inputs made sure nothing else is there
        out.mkdir(parents=True, exist_ok=True)
        record(out, [])
    if run.hex_reason:
        log(run.hex_reason)
    total = cfg.coarse_iters + cfg.fine_iters
    logger = RunLog(out, cfg.tensorboard, log, resumed_at=run.resumed_at)
    record(out, _log_files())
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=run.iteration, disable=not cfg.progress, dynamic_ncols=True)
    sh_every = run.sched.sh_up_every
    try:
        while run.iteration < total:
            it = run.iteration
            fine = it >= cfg.coarse_iters
            phase_it = it - cfg.coarse_iters if fine else it
            if fine and run.field is None:
                run.setup_fine()
            run._lr_schedule(phase_it, cfg.fine_iters if fine else cfg.coarse_iters)
            if sh_every > 0 and it > 0 and it % sh_every == 0:
                run.gauss.oneup_sh_degree()
            logs = run.step(fine, lp, phase_it + 1)
            run.iteration += 1
            if run.iteration % max(cfg.log_every, 1) == 0 or run.iteration == total:
                logs = {k: float(v) for k, v in logs.items()}
                logs.update(n=run.gauss.num_gaussians, it=run.iteration)
                run.history.append(logs)
                logger.scalars(run.iteration, {**logs, "lr": run.learning_rates(),
                                               "phase": "fine" if fine else "coarse"})
                bar.set_postfix({"phase": "fine" if fine else "coarse", "loss": f"{logs['loss']:.4f}",
                                 "psnr": f"{logs['psnr']:.2f}", "N": run.gauss.num_gaussians})
            if cfg.preview_every > 0 and (run.iteration % cfg.preview_every == 0 or run.iteration == total):
                _preview(run, logger, fine)
            bar.update(1)
            if callback is not None:
                callback(run.iteration, logs)
            if cfg.checkpoint_every > 0 and run.iteration % cfg.checkpoint_every == 0:
                run.save(out)
    except KeyboardInterrupt:
        bar.close()
        logger.close()
        run.save(out)
        log(f"interrupted at iteration {run.iteration}; checkpoint written to {out / CHECKPOINT} "
            f"(continue with --resume)")
        raise
    bar.close()
    logger.close()
    if run.field is None:  # no fine iterations: an identity field still gives the asset its format
        run.setup_fine()
    pruned = prune_invisible(run.gauss, run.gopt, run.densify_state, run.sched.coarse.min_opacity)
    if pruned:
        log(f"pruned {pruned} invisible Gaussians (opacity < {run.sched.coarse.min_opacity}) before the export")
    run.save(out)
    wall = {"wall_time_s": run.elapsed(),
            "wall_time_resumed_s": None if run.resumed_at is None else time.time() - run.session_start,
            "resumed_at_iteration": run.resumed_at, "pruned_before_export": pruned}
    write_curves(run.history, out / CURVES, cfg.coarse_iters)
    metrics = write_outputs(run, out, lp, wall)
    record(out, _log_files() + [CURVES])
    return metrics


def _log_files():
    from orster4d.logs import JSONL, TB_FOLDER

    return [JSONL, TB_FOLDER]


@torch.no_grad()
def _preview(run: _Run, logger: RunLog, fine: bool) -> None:
    """Logs the render and ground truth of the first training frame (of the phase's data)."""
    if logger.writer is None:
        return
    ds = run.train if fine else run.coarse_data
    images, vms, Ks = run._dev["train" if fine else "coarse"]
    t = ds.times[:1].to(run.device) if fine else torch.zeros(1, device=run.device)
    rgb = render_frames(run.gauss, run.field if fine else None, t, vms[:1], Ks[:1], ds.width, ds.height,
                        run.background, run.cfg.rasterizer_backend)
    logger.image(run.iteration, rgb[0], images[0])
