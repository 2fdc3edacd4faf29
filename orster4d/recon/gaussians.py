"""Static (canonical) 3D Gaussians with 3DGS densification, pruning and opacity reset.

Parameters are stored raw, as 3DGS does: ``means [N, 3]`` (world units), ``quats [N, 4]``
(w, x, y, z, unnormalised), ``log_scales [N, 3]``, ``logit_opacities [N]``, and SH coefficients
split into ``sh_dc [N, 1, 3]`` and ``sh_rest [N, K - 1, 3]`` (``K = (max_sh_degree + 1) ** 2``).
Activations: ``scales = exp(log_scales)``, ``opacities = sigmoid(logit_opacities)``; colours are
``max(SH(dir) + 0.5, 0)`` (rasterizer convention), so a DC coefficient ``c`` gives
``c * 0.28209479 + 0.5``.

Densification follows 3DGS (Kerbl et al. 2023): every ``interval`` iterations between ``start``
and ``stop``, Gaussians whose mean screen-space gradient (NDC) exceeds ``grad_threshold`` are
cloned when small (max scale <= ``percent_dense * extent``) or split in two when large (samples
drawn from the Gaussian, scales divided by 1.6); then Gaussians with opacity under
``min_opacity`` or too large (world scale > ``0.1 * extent``, or screen radius over
``max_screen_size`` after the first opacity reset) are removed. Opacities are reset to 0.01 every
``opacity_reset_interval`` iterations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

SH_C0 = 0.28209479177387814


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient ``[..., 3]`` that renders as colour ``rgb [..., 3]``."""
    return (rgb - 0.5) / SH_C0


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (w, x, y, z; normalised inside)."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


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


@dataclass
class DensifySchedule:
    """3DGS densification schedule (iterations count within the phase that densifies).

    Defaults are 3DGS's (15k of 30k iterations densify), scaled to the 6k-iteration coarse phase.
    """

    start: int = 500
    stop: int = 4500
    interval: int = 100
    opacity_reset_interval: int = 3000
    grad_threshold: float = 0.0002
    percent_dense: float = 0.01
    min_opacity: float = 0.005
    max_screen_size: float = 20.0
    max_gaussians: int = 1_000_000


_PARAM_NAMES = ("means", "quats", "log_scales", "logit_opacities", "sh_dc", "sh_rest")


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

    @classmethod
    def random_in_box(cls, n: int, lo, hi, generator: Optional[torch.Generator] = None,
                      max_sh_degree: int = 3, device=None) -> "GaussianModel":
        """``n`` Gaussians uniform in the box ``[lo, hi]`` (3 numbers each), grey, opacity 0.1."""
        lo = torch.as_tensor(lo, dtype=torch.float32)
        hi = torch.as_tensor(hi, dtype=torch.float32)
        pts = lo + (hi - lo) * torch.rand(n, 3, generator=generator)
        cols = 0.5 + 0.1 * torch.rand(n, 3, generator=generator)
        return cls.from_points(pts.to(device), cols.to(device), max_sh_degree)

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
        """Adam with 3DGS's per-parameter learning rates (``lr_means`` is scaled by ``extent``)."""
        groups = [
            {"params": [self.means], "lr": lr_means * extent, "name": "means"},
            {"params": [self.quats], "lr": lr_rot, "name": "quats"},
            {"params": [self.log_scales], "lr": lr_scale, "name": "log_scales"},
            {"params": [self.logit_opacities], "lr": lr_opacity, "name": "logit_opacities"},
            {"params": [self.sh_dc], "lr": lr_sh, "name": "sh_dc"},
            {"params": [self.sh_rest], "lr": lr_sh / 20.0, "name": "sh_rest"},
        ]
        return torch.optim.Adam(groups, lr=0.0, eps=1e-15)

    def _replace(self, optimizer: Optional[torch.optim.Optimizer], new: Dict[str, torch.Tensor],
                 state_fn) -> None:
        """Swaps every parameter for ``new[name]`` and maps its Adam state with ``state_fn(old_state_tensor)``."""
        for name in _PARAM_NAMES:
            old = getattr(self, name)
            param = nn.Parameter(new[name].contiguous())
            if optimizer is not None:
                for group in optimizer.param_groups:
                    if group["params"][0] is old:
                        st = optimizer.state.pop(old, None)
                        if st is not None:
                            for key in ("exp_avg", "exp_avg_sq"):
                                if key in st:
                                    st[key] = state_fn(st[key])
                            optimizer.state[param] = st
                        group["params"][0] = param
            setattr(self, name, param)

    def _params(self) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, name).detach() for name in _PARAM_NAMES}

    def prune(self, remove: torch.Tensor, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Drops Gaussians where ``remove [N]`` (bool) is True."""
        keep = ~remove
        self._replace(optimizer, {k: v[keep] for k, v in self._params().items()}, lambda s: s[keep])

    def append(self, new: Dict[str, torch.Tensor], optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Appends Gaussians given as raw parameters (same names and trailing shapes); their Adam state is 0."""
        cur = self._params()
        n_new = new["means"].shape[0]
        self._replace(optimizer, {k: torch.cat([cur[k], new[k]], 0) for k in _PARAM_NAMES},
                      lambda s: torch.cat([s, s.new_zeros((n_new,) + s.shape[1:])], 0))

    def reset_opacity(self, optimizer: Optional[torch.optim.Optimizer] = None, value: float = 0.01) -> None:
        """Clamps every opacity to at most ``value`` and zeroes its Adam state (3DGS)."""
        cap = float(torch.logit(torch.tensor(value)))
        # keep the other parameters (and their optimiser state) untouched
        old = self.logit_opacities
        newp = nn.Parameter(old.detach().clamp(max=cap).contiguous())
        if optimizer is not None:
            for group in optimizer.param_groups:
                if group["params"][0] is old:
                    st = optimizer.state.pop(old, None)
                    if st is not None:
                        st["exp_avg"] = torch.zeros_like(st["exp_avg"])
                        st["exp_avg_sq"] = torch.zeros_like(st["exp_avg_sq"])
                        optimizer.state[newp] = st
                    group["params"][0] = newp
        self.logit_opacities = newp

    @torch.no_grad()
    def densify_and_prune(self, mean_grad: torch.Tensor, max_radii: torch.Tensor, schedule: DensifySchedule,
                          extent: float, optimizer: Optional[torch.optim.Optimizer] = None,
                          prune_big_screen: bool = False, generator: Optional[torch.Generator] = None) -> Dict[str, int]:
        """One 3DGS densification step.

        Args:
            mean_grad: ``[N]`` mean screen-space gradient norm (NDC) per visible view.
            max_radii: ``[N]`` largest screen radius seen (px).
            extent: scene radius (world units).
            prune_big_screen: also prune Gaussians with ``max_radii > schedule.max_screen_size``.
        Returns:
            counts ``{"cloned", "split", "pruned"}``.
        """
        n = self.num_gaussians
        if mean_grad.shape != (n,) or max_radii.shape != (n,):
            raise ValueError(f"mean_grad and max_radii must have shape [{n}], got "
                             f"{tuple(mean_grad.shape)} and {tuple(max_radii.shape)}")
        room = max(schedule.max_gaussians - n, 0)
        big_grad = mean_grad >= schedule.grad_threshold
        max_scale = self.scales.max(-1).values
        small = max_scale <= schedule.percent_dense * extent
        clone = big_grad & small
        split = big_grad & ~small
        # respect the budget: split first (each adds 1 net), then clone
        if int(split.sum()) > room:
            idx = split.nonzero()[:, 0][room:]
            split[idx] = False
        room -= int(split.sum())
        if int(clone.sum()) > room:
            idx = clone.nonzero()[:, 0][room:]
            clone[idx] = False
        p = self._params()
        # clone: copies in place
        cloned = {k: v[clone] for k, v in p.items()}
        # split: two samples from each large Gaussian, scales / 1.6; originals removed
        sel = {k: v[split] for k, v in p.items()}
        ns = int(split.sum())
        if ns:
            std = sel["log_scales"].exp().repeat(2, 1)
            rot = quat_to_rotmat(sel["quats"]).repeat(2, 1, 1)
            noise = torch.randn(2 * ns, 3, generator=generator, device="cpu").to(std) * std
            split_new = {k: v.repeat((2,) + (1,) * (v.dim() - 1)) for k, v in sel.items()}
            split_new["means"] = split_new["means"] + (rot @ noise[..., None])[..., 0]
            split_new["log_scales"] = split_new["log_scales"] - torch.log(torch.tensor(1.6))
        else:
            split_new = {k: v[:0] for k, v in sel.items()}
        new = {k: torch.cat([cloned[k], split_new[k]], 0) for k in _PARAM_NAMES}
        n_clone = int(clone.sum())
        self.append(new, optimizer)
        remove = torch.zeros(self.num_gaussians, dtype=torch.bool, device=self.means.device)
        remove[:n] = split
        remove |= self.opacities < schedule.min_opacity
        if prune_big_screen:
            radii = torch.cat([max_radii, max_radii.new_zeros(self.num_gaussians - n)])
            remove |= radii > schedule.max_screen_size
            remove |= self.scales.max(-1).values > 0.1 * extent
        # never prune everything
        if bool(remove.all()):
            remove[self.opacities.argmax()] = False
        n_removed = int(remove.sum())
        self.prune(remove, optimizer)
        return {"cloned": n_clone, "split": ns, "pruned": n_removed - ns}

    # ------------------------------------------------------------------ serialisation
    def state(self) -> Dict:
        """Raw parameters and SH degrees (for checkpoints); see :meth:`from_state`."""
        d = {k: v.clone().cpu() for k, v in self._params().items()}
        d["max_sh_degree"] = self.max_sh_degree
        d["active_sh_degree"] = self.active_sh_degree
        return d

    @classmethod
    def from_state(cls, d: Dict, device=None) -> "GaussianModel":
        model = cls(d["means"].shape[0], d["max_sh_degree"])
        model.active_sh_degree = int(d["active_sh_degree"])
        with torch.no_grad():
            for name in _PARAM_NAMES:
                getattr(model, name).copy_(d[name])
        return model.to(device)
