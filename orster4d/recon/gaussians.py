"""Static (canonical) 3D Gaussians: parameters, activations and serialisation.

Parameters are stored raw, as 3DGS does: ``means [N, 3]`` (world units), ``quats [N, 4]``
(w, x, y, z, unnormalised), ``log_scales [N, 3]``, ``logit_opacities [N]``, and SH coefficients
split into ``sh_dc [N, 1, 3]`` and ``sh_rest [N, K - 1, 3]`` (``K = (max_sh_degree + 1) ** 2``).
Activations: ``scales = exp(log_scales)``, ``opacities = sigmoid(logit_opacities)``; colours are
``max(SH(dir) + 0.5, 0)`` (rasterizer convention), so a DC coefficient ``c`` gives
``c * 0.28209479 + 0.5``.

Densification, pruning and opacity reset live in :mod:`orster4d.recon.strategy`.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from orster4d.recon.optim import adam
from orster4d.sh import rgb_to_sh_dc


def _knn_distance(points: torch.Tensor, k: int = 3, chunk: int = 4096) -> torch.Tensor:
    """``[N]`` mean distance of each point to its ``k`` nearest neighbours (0.01 for a lone point)."""
    n = points.shape[0]
    if n < 2:
        return torch.full((n,), 0.01, device=points.device)
    k = min(k, n - 1)
    out = []
    for s in range(0, n, chunk):
        d = torch.cdist(points[s:s + chunk], points)
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float("inf")
        out.append(d.topk(k, largest=False).values.mean(-1))
    return torch.cat(out).clamp_min(1e-4)


PARAM_NAMES = ("means", "quats", "log_scales", "logit_opacities", "sh_dc", "sh_rest")


class GaussianModel(nn.Module):
    """N canonical Gaussians; see the module docstring for the parametrisation."""

    def __init__(self, num_gaussians: int = 0, max_sh_degree: int = 3):
        super().__init__()
        if not 0 <= max_sh_degree <= 3:
            raise ValueError(f"max_sh_degree must be in 0..3, got {max_sh_degree}")
        n = int(num_gaussians)
        k = (max_sh_degree + 1) ** 2
        self.max_sh_degree = max_sh_degree
        self.active_sh_degree = 0
        self.means = nn.Parameter(torch.zeros(n, 3))
        self.quats = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1))
        self.log_scales = nn.Parameter(torch.zeros(n, 3))
        self.logit_opacities = nn.Parameter(torch.zeros(n))
        self.sh_dc = nn.Parameter(torch.zeros(n, 1, 3))
        self.sh_rest = nn.Parameter(torch.zeros(n, k - 1, 3))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_points(cls, points: torch.Tensor, colors: torch.Tensor, max_sh_degree: int = 3,
                    scale: Optional[float] = None, opacity: float = 0.1) -> "GaussianModel":
        """Isotropic Gaussians at ``points [N, 3]`` with colours ``colors [N, 3]`` in [0, 1].

        ``scale`` (world units) defaults to the mean distance to the 3 nearest neighbours.
        """
        if points.dim() != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape [N, 3], got {tuple(points.shape)}")
        if colors.shape != points.shape:
            raise ValueError(f"colors must have shape {tuple(points.shape)}, got {tuple(colors.shape)}")
        n = points.shape[0]
        model = cls(n, max_sh_degree).to(points.device)
        with torch.no_grad():
            model.means.copy_(points)
            if scale is None:
                model.log_scales.copy_(_knn_distance(points).log()[:, None].expand(n, 3))
            else:
                model.log_scales.fill_(float(torch.log(torch.tensor(scale))))
            model.logit_opacities.fill_(float(torch.logit(torch.tensor(opacity))))
            model.sh_dc.copy_(rgb_to_sh_dc(colors)[:, None, :])
        return model

    # ------------------------------------------------------------------ activations
    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.logit_opacities)

    @property
    def sh(self) -> torch.Tensor:
        """``[N, K, 3]`` all SH coefficients."""
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    def oneup_sh_degree(self) -> None:
        """Activates one more SH band (3DGS does this every 1000 iterations)."""
        self.active_sh_degree = min(self.active_sh_degree + 1, self.max_sh_degree)

    def scene_extent(self) -> float:
        """Radius of the Gaussians' bounding sphere around their mean (world units)."""
        if self.num_gaussians == 0:
            return 1.0
        m = self.means.detach()
        return float((m - m.mean(0)).norm(dim=-1).max().clamp_min(1e-3))

    # ------------------------------------------------------------------ optimiser
    def make_optimizer(self, lr_means: float = 1.6e-4, extent: float = 1.0, lr_sh: float = 2.5e-3,
                       lr_opacity: float = 0.05, lr_scale: float = 5e-3, lr_rot: float = 1e-3) -> torch.optim.Adam:
        """Adam with 3DGS's per-parameter learning rates (``lr_means`` is scaled by ``extent``); fused on CUDA."""
        groups = [
            {"params": [self.means], "lr": lr_means * extent, "name": "means"},
            {"params": [self.quats], "lr": lr_rot, "name": "quats"},
            {"params": [self.log_scales], "lr": lr_scale, "name": "log_scales"},
            {"params": [self.logit_opacities], "lr": lr_opacity, "name": "logit_opacities"},
            {"params": [self.sh_dc], "lr": lr_sh, "name": "sh_dc"},
            {"params": [self.sh_rest], "lr": lr_sh / 20.0, "name": "sh_rest"},
        ]
        return adam(groups, lr=0.0, eps=1e-15)

    def raw_parameters(self) -> Dict[str, torch.Tensor]:
        """The raw parameters by name (detached; see the module docstring for shapes)."""
        return {name: getattr(self, name).detach() for name in PARAM_NAMES}

    # ------------------------------------------------------------------ serialisation
    def state(self) -> Dict:
        """Raw parameters and SH degrees (for checkpoints); see :meth:`from_state`."""
        d = {k: v.clone().cpu() for k, v in self.raw_parameters().items()}
        d["max_sh_degree"] = self.max_sh_degree
        d["active_sh_degree"] = self.active_sh_degree
        return d

    @classmethod
    def from_state(cls, d: Dict, device=None) -> "GaussianModel":
        """The model saved by :meth:`state`, on ``device``."""
        model = cls(d["means"].shape[0], d["max_sh_degree"])
        model.active_sh_degree = int(d["active_sh_degree"])
        with torch.no_grad():
            for name in PARAM_NAMES:
                getattr(model, name).copy_(d[name])
        return model.to(device)

    def save_ply(self, path, means: Optional[torch.Tensor] = None, quats: Optional[torch.Tensor] = None,
                 log_scales: Optional[torch.Tensor] = None) -> None:
        """Writes a standard 3DGS ``.ply``; ``means [N, 3]``, ``quats [N, 4]``, ``log_scales [N, 3]``
        replace the canonical ones when given (a deformed copy at one time)."""
        from orster4d.io.ply import write_ply

        write_ply(path, self.means if means is None else means, self.quats if quats is None else quats,
                  self.log_scales if log_scales is None else log_scales, self.logit_opacities, self.sh)

    @classmethod
    def load_ply(cls, path, device=None) -> "GaussianModel":
        """Gaussians read from a 3DGS ``.ply`` (SH degree from its coefficient count; all bands active)."""
        from orster4d.io.ply import read_ply

        d = read_ply(path)
        deg = int(round(d["sh"].shape[1] ** 0.5)) - 1
        state = {k: d[k] for k in ("means", "quats", "log_scales", "logit_opacities")}
        state.update(sh_dc=d["sh"][:, :1], sh_rest=d["sh"][:, 1:], max_sh_degree=deg, active_sh_degree=deg)
        return cls.from_state(state, device)
