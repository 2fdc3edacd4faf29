"""What a construction needs: :class:`ConstructConfig`, and :func:`validate_inputs`, which reads and
checks every input before any work starts (raising :class:`InputError`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from orster4d.data.dataset import load_dataset
from orster4d.recon.deformation import load_priors
from orster4d.recon.strategy import DefaultStrategy

__all__ = ["CHECKPOINT", "ConstructConfig", "InputError", "validate_inputs", "resolve_device"]

CHECKPOINT = "checkpoints/last.pt"


@dataclass
class ConstructConfig:
    """Everything :func:`~orster4d.recon.fit.construct` needs; the CLI flags mirror these fields.

    Iteration counts are per phase; ``densify`` is the coarse phase's densification (its steps
    count within the phase); the fine phase densifies up to 60 % of its length, without opacity
    resets, when ``densify_fine``.
    """

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

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "ConstructConfig":
        d = dict(d)
        d["densify"] = DefaultStrategy(**d.get("densify", {}))
        return cls(**d)


class InputError(ValueError):
    """Bad input found before any work starts (the message names the file and the problem)."""


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def validate_inputs(cfg: ConstructConfig, resume: bool = False, overwrite: bool = False) -> Dict:
    """Reads and checks every input; raises :class:`InputError` before any work is done.

    Returns ``{"train": DynamicDataset, "all": DynamicDataset, "static": DynamicDataset|None,
    "eval": DynamicDataset|None, "priors": dict|None}``.
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
