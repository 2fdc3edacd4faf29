"""What a construction needs: :class:`ConstructConfig`, its iteration schedules (:func:`schedules`),
and :func:`validate_inputs`, which reads and checks every input before any work starts (raising
:class:`InputError`) and before the output folder is created."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import torch

from orster4d.data.dataset import load_dataset
from orster4d.recon.deformation import load_priors
from orster4d.recon.strategy import DefaultStrategy

__all__ = ["CHECKPOINT", "EXPORTS", "PAPER_ITERS", "PRIOR_SIDES", "ConstructConfig", "InputError", "Schedules",
           "schedules", "fine_strategy", "select_prior_sides", "validate_inputs", "resolve_device"]

CHECKPOINT = "checkpoints/last.pt"
PAPER_ITERS = (6000, 3000)  # (coarse, fine): the paper's schedule, which the schedule fields are written for
EXPORTS = ("viewer", "supersplat", "splat", "splatv")  # viewer-ready outputs construct can write
PRIOR_SIDES = ("spatial", "temporal")  # the two prior token sets of ST-HexPlane (Eq. 8)


@dataclass
class ConstructConfig:
    """Everything :func:`~orster4d.recon.fit.construct` needs; the CLI flags mirror these fields.

    Iteration counts are per phase; ``densify`` is the coarse phase's densification (its steps
    count within the phase); the fine phase densifies up to 60 % of its length, without opacity
    resets, when ``densify_fine``. With ``scale_schedule`` (default) ``sh_up_every`` and the
    densification steps are those of the paper's 6000 + 3000 iterations and are scaled by the
    actual phase lengths (:func:`schedules`); without it they are used as given.

    ``prior_sides``: which prior token sets of ``priors`` the ST-HexPlane attends to (both by
    default); a side left out is switched off as :func:`select_prior_sides` describes.
    """

    input: str
    output: str
    static: Optional[str] = None  # static orbital video V' for the coarse phase
    priors: Optional[str] = None  # prior tokens file for ST-HexPlane
    prior_sides: List[str] = field(default_factory=lambda: list(PRIOR_SIDES))  # sides of the priors used (Eq. 8)
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
    densify: DefaultStrategy = field(default_factory=DefaultStrategy)
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
    log_every: int = 10  # steps between loss logs (each one reads the device)
    scale_schedule: bool = True  # scale sh_up_every and densify's steps by the phase lengths (see schedules)
    exports: List[str] = field(default_factory=lambda: list(EXPORTS))  # subset of EXPORTS
    tensorboard: bool = True  # TensorBoard event files in <output>/tensorboard (when the package is installed)
    preview_every: int = 500  # steps between TensorBoard preview images (0: none)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "ConstructConfig":
        d = dict(d)
        d["densify"] = DefaultStrategy(**d.get("densify", {}))
        return cls(**d)


def fine_strategy(cfg: ConstructConfig) -> DefaultStrategy:
    """The fine phase's densification from ``cfg.densify`` as given: up to 60 % of the phase, no
    opacity resets (none at all without ``densify_fine``)."""
    sch = cfg.densify
    stop = min(sch.stop, int(0.6 * cfg.fine_iters)) if cfg.densify_fine else 0
    return replace(sch, start=min(sch.start, stop), stop=stop, opacity_reset=False)


class Schedules(NamedTuple):
    """The iteration schedules of a run: ``sh_up_every`` (one more SH band every that many
    iterations, counted over both phases), and the ``coarse`` and ``fine`` densification."""

    sh_up_every: int
    coarse: DefaultStrategy
    fine: DefaultStrategy


def _scaled(s: DefaultStrategy, r: float) -> DefaultStrategy:
    return replace(s, start=int(round(s.start * r)), stop=int(round(s.stop * r)),
                   interval=max(1, int(round(s.interval * r))),
                   opacity_reset_interval=max(1, int(round(s.opacity_reset_interval * r))))


def schedules(cfg: ConstructConfig) -> Schedules:
    """The schedules :func:`~orster4d.recon.fit.construct` follows.

    With ``cfg.scale_schedule`` every iteration-based setting is read as written for the paper's
    phases (6000 coarse, 3000 fine) and scaled by ``r_c = coarse_iters / 6000`` (``sh_up_every``,
    the coarse densification's start, stop, interval and opacity-reset interval) or
    ``r_f = fine_iters / 3000`` (the fine phase's densification, derived at 3000 iterations by
    :func:`fine_strategy`), rounded, intervals at least 1. At 600 + 300 iterations: a new SH band
    every 100 iterations, coarse densification every 10 steps from 50 to 450 with opacity resets
    every 300, fine densification every 10 steps from 50 to 180. The learning-rate decays already
    run over each phase's length. Without ``scale_schedule`` the settings are used as given.
    """
    if not cfg.scale_schedule:
        return Schedules(cfg.sh_up_every, cfg.densify, fine_strategy(cfg))
    rc, rf = cfg.coarse_iters / PAPER_ITERS[0], cfg.fine_iters / PAPER_ITERS[1]
    fine = _scaled(fine_strategy(replace(cfg, fine_iters=PAPER_ITERS[1])), rf)
    sh = max(1, int(round(cfg.sh_up_every * rc))) if cfg.sh_up_every > 0 else 0
    return Schedules(sh, _scaled(cfg.densify, rc), fine)


class InputError(ValueError):
    """Bad input found before any work starts (the message names the file and the problem)."""


def select_prior_sides(priors: Dict[str, torch.Tensor], sides) -> Dict[str, torch.Tensor]:
    """The prior tokens the field attends to: ``priors`` (``{"spatial": O_s [Ns, Ds], "temporal":
    O_t [Nt, Dt]}``) with every side not in ``sides`` replaced by one zero token ``[1, D]``.

    Attention over a single token gives weight 1 to it, so the switched-off side's output is
    the constant ``W_v 0 + b_v = b_v`` for every query: no information from that side's tokens
    reaches the field (its cross-attention is off; the constant only adds to the heads' bias),
    while the field keeps the ``[h; V_s; V_t]`` layout of Eq. 8.
    """
    bad = [s for s in sides if s not in PRIOR_SIDES]
    if bad or not sides or len(set(sides)) != len(sides):
        raise InputError(f"prior_sides: expected one or both of {list(PRIOR_SIDES)} without repeats, got {list(sides)}")
    return {k: v if k in sides else v.new_zeros(1, v.shape[1]) for k, v in priors.items()}


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_replaceable(out: Path, overwrite: bool) -> None:
    """Raises :class:`InputError` unless ``out`` may be written: absent, an empty folder, or (with
    ``overwrite``) a folder holding only files construct wrote there (its manifest)."""
    from orster4d.recon.manifest import MANIFEST, foreign_entries

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not overwrite:
        raise InputError(f"{out}: output folder exists; pass --overwrite to replace it or --resume to continue")
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        why = ("it has no " + MANIFEST + " (not written by this version of orster4d-construct)"
               if not (out / MANIFEST).is_file() else "they were not written by orster4d-construct")
        raise InputError(f"{out}: --overwrite removes only what orster4d-construct wrote there, but the folder also "
                         f"holds {shown} ({why}); move them away or choose another output folder")


def check_device(device: str, backend: Optional[str]) -> None:
    """Raises :class:`InputError` when ``device`` cannot be used or ``backend`` does not run on it."""
    try:
        dev = resolve_device(device)
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise InputError(f"device {device!r} cannot be used ({type(e).__name__}: {e})") from e
    if backend == "cuda" and dev.type != "cuda":
        raise InputError(f"rasterizer backend 'cuda' needs a CUDA device, but the device is {dev}")
    if backend == "cpu" and dev.type != "cpu":
        raise InputError(f"rasterizer backend 'cpu' runs on the CPU, but the device is {dev}")


def validate_inputs(cfg: ConstructConfig, resume: bool = False, overwrite: bool = False) -> Dict:
    """Reads and checks every input; raises :class:`InputError` before any work is done.

    Returns ``{"train": DynamicDataset, "all": DynamicDataset, "static": DynamicDataset|None,
    "eval": DynamicDataset|None, "priors": dict|None}``; ``priors`` has the sides of
    ``cfg.prior_sides`` (:func:`select_prior_sides`).
    """
    out = Path(cfg.output)
    if out.exists() and not resume:
        check_replaceable(out, overwrite)
    if resume and not (out / CHECKPOINT).is_file():
        raise InputError(f"{out / CHECKPOINT}: no checkpoint to resume from")
    unknown = sorted(set(cfg.exports) - set(EXPORTS))
    if unknown:
        raise InputError(f"exports: unknown {unknown}; expected some of {list(EXPORTS)}")
    check_device(cfg.device, cfg.rasterizer_backend)
    sides = list(cfg.prior_sides)
    select_prior_sides({}, sides)  # checks the names
    if not cfg.priors and sorted(sides) != sorted(PRIOR_SIDES):
        raise InputError(f"prior_sides={sides}: selects prior token sets, but no priors file is given")
    r = list(cfg.hexplane_resolution)
    if len(r) != 2 or r[0] < 2 or r[1] < 2:
        raise InputError(f"hexplane_resolution must be [R_xyz >= 2, R_t >= 2], got {r}")
    try:
        data = load_dataset(cfg.input, cfg.background)
        static = load_dataset(cfg.static, cfg.background) if cfg.static else None
        evald = load_dataset(cfg.eval_data, cfg.background) if cfg.eval_data else None
        priors = select_prior_sides(load_priors(cfg.priors), sides) if cfg.priors else None
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
