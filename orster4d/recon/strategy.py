"""3DGS densification as one strategy object: :class:`DefaultStrategy`.

The strategy holds the schedule and thresholds; everything that changes during a run lives in a
plain ``state`` dict (checkpointed with the run, so a resumed run densifies exactly as an
uninterrupted one). Per step::

    state = strategy.initialize_state(model.num_gaussians, scene_scale, device)   # once
    out = rasterize_gaussians(...)
    info = {"means2d": out.means2d, "radii": out.radii, "width": W, "height": H}
    strategy.step_pre_backward(model, optimizer, state, step, info)   # keeps the 2D gradient
    loss.backward()
    optimizer.step()
    strategy.step_post_backward(model, optimizer, state, step, info)  # statistics, then densify

``step`` counts within the phase that densifies (1 after its first optimiser step).

What happens (Kerbl et al. 2023): every step adds, for every view in which a Gaussian is visible
(radius > 0), the norm of the gradient of its projected centre, in normalised device coordinates
(pixel gradient times ``(W / 2, H / 2)``), and keeps its largest screen radius. Every
``interval`` steps in ``[start, stop)``, Gaussians whose mean gradient per visible view reaches
``grad_threshold`` are cloned when small (largest scale <= ``percent_dense * scene_scale``) or
split in two when large (two samples drawn from the Gaussian, scales divided by 1.6, the parent
removed), within the budget ``max_gaussians``; then Gaussians with opacity under ``min_opacity``
are removed, and, after the first opacity reset, also those wider than ``max_screen_size`` pixels
or ``0.1 * scene_scale`` world units. With ``opacity_reset``, every ``opacity_reset_interval``
steps before ``stop`` every opacity is capped at 0.01 and its Adam moments are zeroed.

Parameter surgery that keeps an Adam optimiser aligned with the model (:func:`remove`,
:func:`append`, :func:`reset_opacity`) is here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from orster4d.quaternions import quat_to_rotmat
from orster4d.recon.gaussians import PARAM_NAMES, GaussianModel

__all__ = ["DefaultStrategy", "remove", "append", "reset_opacity"]

_STATE_TENSORS = ("grad_norm_sum", "count", "max_radii")


# ------------------------------------------------------------------------------ parameter surgery
def _swap(model: GaussianModel, optimizer: Optional[torch.optim.Optimizer], name: str, value: torch.Tensor,
          state_fn) -> None:
    """Replaces parameter ``name`` by ``value`` and maps its Adam moments with ``state_fn``."""
    old = getattr(model, name)
    param = nn.Parameter(value.contiguous())
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
    setattr(model, name, param)


def remove(model: GaussianModel, optimizer: Optional[torch.optim.Optimizer], mask: torch.Tensor) -> None:
    """Drops the Gaussians where ``mask [N]`` (bool) is True, with their Adam moments."""
    keep = ~mask
    for name, value in model.raw_parameters().items():
        _swap(model, optimizer, name, value[keep], lambda s: s[keep])


def append(model: GaussianModel, optimizer: Optional[torch.optim.Optimizer], new: Dict[str, torch.Tensor]) -> None:
    """Appends Gaussians given as raw parameters ``new[name] [M, ...]``; their Adam moments start at 0."""
    m = new["means"].shape[0]
    for name, value in model.raw_parameters().items():
        _swap(model, optimizer, name, torch.cat([value, new[name]], 0),
              lambda s: torch.cat([s, s.new_zeros((m,) + s.shape[1:])], 0))


def reset_opacity(model: GaussianModel, optimizer: Optional[torch.optim.Optimizer], value: float = 0.01) -> None:
    """Caps every opacity at ``value`` and zeroes its Adam moments (3DGS); other parameters untouched."""
    cap = float(torch.logit(torch.tensor(value)))
    _swap(model, optimizer, "logit_opacities", model.logit_opacities.detach().clamp(max=cap), torch.zeros_like)


# ------------------------------------------------------------------------------ the strategy
@dataclass
class DefaultStrategy:
    """3DGS densification, pruning and opacity reset; see the module docstring.

    Steps count within the phase that densifies. Defaults are 3DGS's (15k of 30k iterations
    densify) scaled to a 6k-iteration phase.
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
    opacity_reset: bool = True

    def __post_init__(self):
        for name in ("start", "stop", "opacity_reset_interval", "max_gaussians"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"densify {name} must be >= 0, got {getattr(self, name)}")
        if self.interval < 1:
            raise ValueError(f"densify interval must be >= 1, got {self.interval}")
        for name in ("grad_threshold", "percent_dense", "min_opacity", "max_screen_size"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"densify {name} must be >= 0, got {getattr(self, name)}")

    # ---- state
    @staticmethod
    def initialize_state(num_gaussians: int, scene_scale: float, device=None) -> Dict:
        """Fresh state: ``grad_norm_sum [N]`` float32 (NDC), ``count [N]`` int32 (visible views),
        ``max_radii [N]`` int32 (px), ``scene_scale`` (world units, the scene's radius)."""
        if isinstance(num_gaussians, bool) or not isinstance(num_gaussians, int) or num_gaussians < 0:
            raise ValueError(f"num_gaussians must be an int >= 0, got {num_gaussians!r}")
        state = {"scene_scale": float(scene_scale)}
        DefaultStrategy.reset_state(state, num_gaussians, device)
        return state

    @staticmethod
    def reset_state(state: Dict, num_gaussians: int, device=None) -> None:
        """Zeroes the statistics for ``num_gaussians`` Gaussians (after a densification step)."""
        state["grad_norm_sum"] = torch.zeros(num_gaussians, dtype=torch.float32, device=device)
        state["count"] = torch.zeros(num_gaussians, dtype=torch.int32, device=device)
        state["max_radii"] = torch.zeros(num_gaussians, dtype=torch.int32, device=device)

    @staticmethod
    def state_to(state: Dict, device) -> Dict:
        """A copy of ``state`` with its tensors on ``device`` (``"cpu"`` for a checkpoint)."""
        return {k: (v.to(device) if k in _STATE_TENSORS else v) for k, v in state.items()}

    @staticmethod
    def mean_grad(state: Dict) -> torch.Tensor:
        """``[N]`` mean NDC gradient norm per visible view (0 where never visible)."""
        return state["grad_norm_sum"] / state["count"].clamp(min=1).to(state["grad_norm_sum"].dtype)

    # ---- hooks
    def step_pre_backward(self, model: GaussianModel, optimizer, state: Dict, step: int, info: Dict) -> None:
        """Keeps the gradient of ``info["means2d"]`` (call before ``backward()``)."""
        info["means2d"].retain_grad()

    def step_post_backward(self, model: GaussianModel, optimizer, state: Dict, step: int, info: Dict,
                           generator: Optional[torch.Generator] = None) -> None:
        """Adds this render's views to the statistics, then densifies / prunes / resets opacities
        when the schedule says so at ``step``. Call after ``backward()`` and the optimiser step
        (densification replaces the parameters). ``generator`` (CPU) draws the split samples."""
        self.update_state(state, info)
        if self.start <= step < self.stop and step % self.interval == 0 and step > 0:
            self.densify_and_prune(model, optimizer, self.mean_grad(state), state["max_radii"], state["scene_scale"],
                                   prune_big_screen=step > self.opacity_reset_interval, generator=generator)
            self.reset_state(state, model.num_gaussians, model.means.device)
        if (self.opacity_reset and step > 0 and step % max(self.opacity_reset_interval, 1) == 0
                and step < self.stop):
            reset_opacity(model, optimizer)

    @staticmethod
    def update_state(state: Dict, info: Dict) -> None:
        """Accumulates one render's views of the same N Gaussians.

        ``info``: ``means2d [..., C, N, 2]`` (its ``.grad`` set by backward), ``radii [..., C, N]``
        (px), ``width``, ``height`` (px), and ``n_images`` (optional, default 1): the loss is the
        mean over that many images, so the gradient is multiplied back by it to be per image, as
        3DGS's. Every (leading index, camera) pair with radius > 0 counts as one view. No host sync.
        """
        means2d, radii = info["means2d"], info["radii"]
        n = state["count"].shape[0]
        if means2d.grad is None:
            raise ValueError("info['means2d'] has no gradient: call step_pre_backward (retain_grad) before backward()")
        if means2d.shape[-2] != n:
            raise ValueError(f"means2d must have shape [..., C, {n}, 2], got {tuple(means2d.shape)}")
        grad = means2d.grad.detach()
        scale = info.get("n_images", 1)
        if scale != 1:
            grad = grad * float(scale)
        grad = grad.reshape(-1, n, 2).to(torch.float32)
        grad = torch.stack([grad[..., 0] * (0.5 * info["width"]), grad[..., 1] * (0.5 * info["height"])], -1)
        visible = radii.reshape(-1, n) > 0
        norms = torch.where(visible, grad.norm(dim=-1), torch.zeros((), device=grad.device))
        state["grad_norm_sum"] += norms.sum(0)
        state["count"] += visible.sum(0).to(torch.int32)
        if visible.shape[0] > 0:
            r = torch.where(visible, radii.reshape(-1, n), torch.zeros((), dtype=radii.dtype, device=radii.device))
            state["max_radii"] = torch.maximum(state["max_radii"], r.amax(0).to(state["max_radii"]))

    @torch.no_grad()
    def densify_and_prune(self, model: GaussianModel, optimizer, mean_grad: torch.Tensor, max_radii: torch.Tensor,
                          scene_scale: float, prune_big_screen: bool = False,
                          generator: Optional[torch.Generator] = None) -> Dict[str, int]:
        """One 3DGS densification step (syncs with the host: the Gaussian count changes).

        Args:
            mean_grad: ``[N]`` mean NDC screen-space gradient norm per visible view.
            max_radii: ``[N]`` largest screen radius seen (px).
            scene_scale: scene radius (world units).
            prune_big_screen: also prune Gaussians wider than ``max_screen_size`` px or
                ``0.1 * scene_scale``.
        Returns:
            counts ``{"cloned", "split", "pruned"}``.
        """
        n = model.num_gaussians
        if mean_grad.shape != (n,) or max_radii.shape != (n,):
            raise ValueError(f"mean_grad and max_radii must have shape [{n}], got "
                             f"{tuple(mean_grad.shape)} and {tuple(max_radii.shape)}")
        room = max(self.max_gaussians - n, 0)
        big_grad = mean_grad >= self.grad_threshold
        small = model.scales.max(-1).values <= self.percent_dense * scene_scale
        clone = big_grad & small
        split = big_grad & ~small
        # respect the budget: split first (each adds 1 net), then clone
        if int(split.sum()) > room:
            split[split.nonzero()[:, 0][room:]] = False
        room -= int(split.sum())
        if int(clone.sum()) > room:
            clone[clone.nonzero()[:, 0][room:]] = False
        p = model.raw_parameters()
        cloned = {k: v[clone] for k, v in p.items()}  # copies in place
        sel = {k: v[split] for k, v in p.items()}
        ns = int(split.sum())
        if ns:  # two samples from each large Gaussian, scales / 1.6; the originals are removed below
            std = sel["log_scales"].exp().repeat(2, 1)
            rot = quat_to_rotmat(sel["quats"]).repeat(2, 1, 1)
            noise = torch.randn(2 * ns, 3, generator=generator, device="cpu").to(std) * std
            split_new = {k: v.repeat((2,) + (1,) * (v.dim() - 1)) for k, v in sel.items()}
            split_new["means"] = split_new["means"] + (rot @ noise[..., None])[..., 0]
            split_new["log_scales"] = split_new["log_scales"] - torch.log(torch.tensor(1.6))
        else:
            split_new = {k: v[:0] for k, v in sel.items()}
        n_clone = int(clone.sum())
        append(model, optimizer, {k: torch.cat([cloned[k], split_new[k]], 0) for k in PARAM_NAMES})
        drop = torch.zeros(model.num_gaussians, dtype=torch.bool, device=model.means.device)
        drop[:n] = split
        drop |= model.opacities < self.min_opacity
        if prune_big_screen:
            radii = torch.cat([max_radii, max_radii.new_zeros(model.num_gaussians - n)])
            drop |= radii > self.max_screen_size
            drop |= model.scales.max(-1).values > 0.1 * scene_scale
        if bool(drop.all()):  # never prune everything
            drop[model.opacities.argmax()] = False
        n_removed = int(drop.sum())
        remove(model, optimizer, drop)
        return {"cloned": n_clone, "split": ns, "pruned": n_removed - ns}

