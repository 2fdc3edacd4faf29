"""Deformation field of 4D Gaussian Splatting, with the ST-HexPlane prior attention (Eq. 7-10).

For a canonical Gaussian at ``(x, y, z)`` and a time ``t`` in [0, 1]:

1. normalise: ``x' = 2 (x - lo) / (hi - lo) - 1`` per axis with the scene bounds ``aabb``,
   ``t' = 2 t - 1`` (clamped to [-1, 1] by the HexPlane);
2. ``h = HexPlaneField(x', y', z', t')``, ``[C * L]`` features (Eq. 7);
3. ST-HexPlane (Eq. 8-9), when prior tokens are set: ``V_s = Attn(W_q h, W_k O_s, W_v O_s)`` and
   ``V_t`` likewise over the temporal tokens O_t; the heads read ``[h; V_s; V_t]``. Without
   priors the heads read ``h`` (the plain 4DGS field). The feature layer's columns that read
   ``V_s`` and ``V_t`` start at zero, so the priors' contribution is learned from nothing;
4. a shared layer then three heads give ``dp [3]`` (added to the mean), ``dq [4]`` (added to the raw
   quaternion) and ``ds [3]`` (added to the log-scale), as 4DGS; :class:`OffsetHeads` runs the
   three heads as two matmuls. The heads' last layers start at zero, so an untrained field is the
   identity.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from orster4d.recon.hexplane_field import HexPlaneField

ATTENTION_BACKENDS = ("sdpa", "orster")


def st_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Single-head softmax cross-attention ``softmax(q k^T / sqrt(D)) v``.

    Args:
        query: ``[N, D]``; keys: ``[M, D]``; values: ``[M, Dv]``.
        backend: ``"sdpa"`` (``torch.nn.functional.scaled_dot_product_attention``) or ``"orster"``
            (:func:`orster4d.ops.attention.orster_attention` without kernel features: the same plain
            softmax attention, with memory linear in N and M).
    Returns:
        ``[N, Dv]``.
    """
    if query.dim() != 2 or keys.dim() != 2 or values.dim() != 2:
        raise ValueError(f"query [N, D], keys [M, D], values [M, Dv] expected, got {tuple(query.shape)}, "
                         f"{tuple(keys.shape)}, {tuple(values.shape)}")
    if keys.shape[0] != values.shape[0] or keys.shape[1] != query.shape[1]:
        raise ValueError(f"keys must be [M, D={query.shape[1]}] and values [M, Dv] with the same M, got "
                         f"{tuple(keys.shape)} and {tuple(values.shape)}")
    if backend == "orster":
        from orster4d.ops.attention import orster_attention

        return orster_attention(query[None, None], keys[None, None], values[None, None])[0, 0]
    if backend != "sdpa":
        raise ValueError(f"backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    return torch.nn.functional.scaled_dot_product_attention(query[None], keys[None], values[None])[0]


def load_priors(path, spatial_dim: Optional[int] = None, temporal_dim: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Reads prior tokens saved with ``torch.save({"spatial": O_s [Ns, Ds], "temporal": O_t [Nt, Dt]}, path)``.

    Raises ValueError naming ``path`` when the file cannot be read, a key is missing, a tensor is
    not 2-D floating point with at least one token and channel, or the widths differ from
    ``spatial_dim`` / ``temporal_dim`` when given.
    """
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, not a torch file, or unsafe content
        raise ValueError(f"{path}: cannot read prior tokens ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict with 'spatial' and 'temporal' tensors, got {type(d).__name__}")
    out = {}
    for key, want in (("spatial", spatial_dim), ("temporal", temporal_dim)):
        x = d.get(key)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path}: missing tensor '{key}' (shape [N, D])")
        if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1 or not x.is_floating_point():
            raise ValueError(f"{path}: '{key}' must be a floating-point tensor of shape [N, D] with N, D >= 1, "
                             f"got {x.dtype} {tuple(x.shape)}")
        if want is not None and x.shape[1] != want:
            raise ValueError(f"{path}: '{key}' has width {x.shape[1]}, expected {want}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{path}: '{key}' contains NaN or Inf")
        out[key] = x.float()
    return out


def curvature_probe_times(fitted: torch.Tensor, count: int, generator: Optional[torch.Generator] = None,
                          device=None):
    """Where :meth:`DeformationField.motion_curvature` looks: ``count`` random times ``[count]``
    between the first and last of the ``fitted`` times ``[F]`` (in [0, 1]), and the step, half the
    smallest gap between fitted times (0.5 for a single time), so ``t +- step`` stays in range.

    The times are drawn on ``device`` (default CPU) with ``generator`` (which must live there);
    keep ``fitted`` on the CPU so that nothing waits for the device."""
    t = torch.unique(fitted.detach().cpu().float())
    step = 0.5 * float((t[1:] - t[:-1]).min()) if t.numel() > 1 else 0.5
    lo, hi = float(t[0]) + step, float(t[-1]) - step
    return lo + (hi - lo) * torch.rand(count, generator=generator, device=device), step


HEAD_DIMS = (("pos", 3), ("rot", 4), ("scale", 3))  # the heads' names and output widths, in order


class OffsetHeads(nn.Module):
    """The three 4DGS heads ``ReLU -> Linear(W, W) -> ReLU -> Linear(W, out)`` run as two matmuls.

    The heads' hidden layers are one ``Linear(W, 3 W)``; their output layers are one
    ``Linear(3 W, 10)`` whose weight is block-diagonal (each head reads only its own hidden units:
    the blocks off the diagonal are masked to zero in the forward, so they get no gradient either).
    This is the same function as three separate heads, with one ReLU of the shared features, two
    matmul launches instead of six and one gradient for the shared features instead of three to add.
    The output layer starts at zero, so an untrained field is the identity.

    ``forward(f [M, W]) -> [M, 10]``: ``dp [3]``, ``dq [4]``, ``ds [3]`` side by side.
    """

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.hidden = nn.Linear(width, len(HEAD_DIMS) * width)
        self.out = nn.Linear(len(HEAD_DIMS) * width, sum(d for _, d in HEAD_DIMS))
        mask = torch.zeros_like(self.out.weight)
        row = 0
        for i, (_, dim) in enumerate(HEAD_DIMS):
            mask[row:row + dim, i * width:(i + 1) * width] = 1.0
            row += dim
        self.register_buffer("mask", mask, persistent=False)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        g = torch.relu(self.hidden(torch.relu(f)))
        return nn.functional.linear(g, self.out.weight * self.mask, self.out.bias)

    def head_weight(self, name: str) -> torch.Tensor:
        """The output-layer weight ``[out, W]`` of head ``name`` ("pos", "rot" or "scale"), a view."""
        row = 0
        for i, (n, dim) in enumerate(HEAD_DIMS):
            if n == name:
                return self.out.weight[row:row + dim, i * self.width:(i + 1) * self.width]
            row += dim
        raise KeyError(f"no head {name!r}; heads: {[n for n, _ in HEAD_DIMS]}")

    @staticmethod
    def upgrade_state_dict(state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """Rewrites, in place, the keys of fields saved with three separate heads
        (``{pos,rot,scale}_head.{1,3}.{weight,bias}``) as this module's ``heads.*`` keys."""
        old = [f"{prefix}{name}_head." for name, _ in HEAD_DIMS]
        if not all(p + "1.weight" in state_dict for p in old):
            return
        hw = [state_dict.pop(p + "1.weight") for p in old]
        hb = [state_dict.pop(p + "1.bias") for p in old]
        ow = [state_dict.pop(p + "3.weight") for p in old]
        ob = [state_dict.pop(p + "3.bias") for p in old]
        state_dict[prefix + "heads.hidden.weight"] = torch.cat(hw, 0)
        state_dict[prefix + "heads.hidden.bias"] = torch.cat(hb, 0)
        state_dict[prefix + "heads.out.weight"] = torch.block_diag(*ow)
        state_dict[prefix + "heads.out.bias"] = torch.cat(ob, 0)

    @staticmethod
    def old_layout_names(state_dict: Dict[str, torch.Tensor]) -> List[str]:
        """The keys of the separate heads' parameters in ``state_dict`` (empty for the fused layout)."""
        return [k for k in state_dict if k.split(".")[0] in {f"{n}_head" for n, _ in HEAD_DIMS}]

    @staticmethod
    def upgrade_adam_state(opt_state: Dict, old_groups: Sequence[Sequence[str]],
                           new_groups: Sequence[Sequence[str]]) -> Dict:
        """An Adam ``state_dict`` written for a field with three separate heads, for the fused heads.

        ``old_groups`` / ``new_groups``: the parameter names of each param group, in the optimiser's
        order, before and after. Each head's moments go where :meth:`upgrade_state_dict` puts its
        weights (concatenated hidden layers, block-diagonal output layer); the other parameters'
        moments are kept. Returns a new state dict; ``opt_state`` is not changed.
        """
        flat_old = [n for g in old_groups for n in g]
        by_name = {flat_old[i]: st for i, st in opt_state["state"].items()}
        heads = [f"{n}_head." for n, _ in HEAD_DIMS]

        def combine(suffix, join):
            parts = [by_name.get(h + suffix) for h in heads]
            if any(p is None for p in parts):
                return None
            out = {k: v for k, v in parts[0].items() if k not in ("exp_avg", "exp_avg_sq")}
            for key in ("exp_avg", "exp_avg_sq"):
                if key in parts[0]:
                    out[key] = join([p[key] for p in parts])
            return out

        fused = {"heads.hidden.weight": combine("1.weight", lambda xs: torch.cat(xs, 0)),
                 "heads.hidden.bias": combine("1.bias", lambda xs: torch.cat(xs, 0)),
                 "heads.out.weight": combine("3.weight", lambda xs: torch.block_diag(*xs)),
                 "heads.out.bias": combine("3.bias", lambda xs: torch.cat(xs, 0))}
        state, groups, index = {}, [], 0
        for saved, names in zip(opt_state["param_groups"], new_groups):
            ids = []
            for name in names:
                st = fused[name] if name in fused else by_name.get(name)
                if st is not None:
                    state[index] = st
                ids.append(index)
                index += 1
            groups.append({**saved, "params": ids})
        return {"state": state, "param_groups": groups}


class DeformationField(ModelMixin, ConfigMixin):
    """``(canonical Gaussians, times) -> (dp, dq, ds)``; see the module docstring.

    A diffusers model: the constructor arguments are its config, ``save_pretrained(folder)``
    writes ``folder/config.json`` and the weights (``diffusion_pytorch_model.safetensors``), and
    ``DeformationField.from_pretrained(folder)`` / ``from_config(dict(field.config))`` rebuild it.

    Args:
        aabb: ``[2, 3]`` scene bounds (min, max; world units) used to normalise positions (a tensor
            or nested list; the config keeps it as a list, :attr:`aabb` is a tensor on the field's
            device).
        channels, resolution, multires, backend: the :class:`~orster4d.recon.hexplane_field.HexPlaneField`'s.
        width: MLP width (4DGS: 64).
        prior_dims: ``(Ds, Dt)`` widths of the spatial and temporal prior tokens for ST-HexPlane,
            or None for the plain field.
        attn_dim: width of the attention queries/keys/values.
        attention_backend: see :func:`st_attention`.
        prior_tokens: ``(Ns, Nt)`` token counts of the prior buffers (kept up to date by
            :meth:`set_priors`, so a saved field rebuilds with buffers of the right size).
    """

    @register_to_config
    def __init__(self, aabb=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), channels: int = 32,
                 resolution: Sequence[int] = (64, 25), multires: Sequence[int] = (1, 2), width: int = 64,
                 backend: str = "fused", prior_dims: Optional[Tuple[int, int]] = None, attn_dim: int = 32,
                 attention_backend: str = "sdpa", prior_tokens: Tuple[int, int] = (1, 1)):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb must be [2, 3] (min, max) with max > min, got {aabb.tolist()}")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {attention_backend!r}")
        self.register_to_config(aabb=aabb.tolist(), resolution=[int(r) for r in resolution],
                                multires=[int(m) for m in multires],
                                prior_dims=None if prior_dims is None else [int(d) for d in prior_dims],
                                prior_tokens=[int(n) for n in prior_tokens],
                                # every argument is recorded, also those given by position (which
                                # diffusers would otherwise mark as defaults and drop in from_config)
                                _use_default_values=[])
        self.register_buffer("bounds", aabb.clone(), persistent=False)  # the config's aabb, on the device
        self.hexplane = HexPlaneField(channels, resolution, multires, backend=backend)
        feat = self.hexplane.out_dim
        self.attention_backend = attention_backend
        self.prior_dims = None if prior_dims is None else tuple(int(d) for d in prior_dims)
        if self.prior_dims is not None:
            ds, dt = self.prior_dims
            self.q_proj = nn.Linear(feat, 2 * attn_dim)
            self.ks_proj = nn.Linear(ds, attn_dim)
            self.vs_proj = nn.Linear(ds, attn_dim)
            self.kt_proj = nn.Linear(dt, attn_dim)
            self.vt_proj = nn.Linear(dt, attn_dim)
            self.register_buffer("prior_spatial", torch.zeros(int(prior_tokens[0]), ds))
            self.register_buffer("prior_temporal", torch.zeros(int(prior_tokens[1]), dt))
            feat = feat + 2 * attn_dim
        self.feature_out = nn.Linear(feat, width)
        if self.prior_dims is not None:
            # the columns that read V_s and V_t start at zero: an untrained field's features do not
            # depend on the priors, and the priors' share grows only as far as training finds it useful
            with torch.no_grad():
                self.feature_out.weight[:, self.hexplane.out_dim:].zero_()
        self.heads = OffsetHeads(width)

    def set_priors(self, spatial: torch.Tensor, temporal: torch.Tensor) -> None:
        """Sets ``O_s [Ns, Ds]`` and ``O_t [Nt, Dt]`` (stored as buffers, saved with the weights)."""
        if self.prior_dims is None:
            raise ValueError("this field was built without prior_dims; pass prior_dims=(Ds, Dt) to use priors")
        ds, dt = self.prior_dims
        if spatial.dim() != 2 or spatial.shape[1] != ds:
            raise ValueError(f"spatial priors must have shape [Ns, {ds}], got {tuple(spatial.shape)}")
        if temporal.dim() != 2 or temporal.shape[1] != dt:
            raise ValueError(f"temporal priors must have shape [Nt, {dt}], got {tuple(temporal.shape)}")
        dev = self.bounds.device
        self.prior_spatial = spatial.detach().float().to(dev)
        self.prior_temporal = temporal.detach().float().to(dev)
        self.register_to_config(prior_tokens=[spatial.shape[0], temporal.shape[0]])

    @property
    def aabb(self) -> torch.Tensor:
        """``[2, 3]`` scene bounds (min, max), on the field's device."""
        return self.bounds

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        OffsetHeads.upgrade_state_dict(state_dict, prefix)  # fields saved with three separate heads
        # weights saved before the bounds moved to the config carry them as "aabb"
        if prefix + "aabb" in state_dict:
            self.bounds.copy_(state_dict.pop(prefix + "aabb"))
            self.register_to_config(aabb=self.bounds.tolist())
        # prior buffers change size with the token count: adopt the saved shapes (checkpoints
        # written before the config recorded the counts)
        for name in ("prior_spatial", "prior_temporal"):
            key = prefix + name
            if key in state_dict and hasattr(self, name):
                setattr(self, name, torch.empty_like(state_dict[key]).to(self.bounds.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def normalise(self, means: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """HexPlane inputs ``[T * N, 4]`` in [-1, 1] from ``means [N, 3]`` and ``times [T]``."""
        lo, hi = self.aabb[0], self.aabb[1]
        xyz = (2.0 * (means - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0)
        T, N = times.shape[0], means.shape[0]
        t = (2.0 * times - 1.0).clamp(-1.0, 1.0)
        return torch.cat([xyz.unsqueeze(0).expand(T, N, 3), t.view(T, 1, 1).expand(T, N, 1)], -1).reshape(T * N, 4)

    def forward(self, means: torch.Tensor, times: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Offsets for canonical ``means [N, 3]`` at ``times [T]`` (all times in one pass).

        Returns ``dp [T, N, 3]`` (world units), ``dq [T, N, 4]`` (added to raw quaternions),
        ``ds [T, N, 3]`` (added to log-scales).
        """
        if means.dim() != 2 or means.shape[1] != 3:
            raise ValueError(f"means must have shape [N, 3], got {tuple(means.shape)}")
        if times.dim() != 1:
            raise ValueError(f"times must have shape [T], got {tuple(times.shape)}")
        T, N = times.shape[0], means.shape[0]
        h = self.hexplane(self.normalise(means, times.to(means)))
        if self.prior_dims is not None:
            q_s, q_t = self.q_proj(h).chunk(2, dim=-1)
            v_s = st_attention(q_s, self.ks_proj(self.prior_spatial), self.vs_proj(self.prior_spatial),
                               self.attention_backend)
            v_t = st_attention(q_t, self.kt_proj(self.prior_temporal), self.vt_proj(self.prior_temporal),
                               self.attention_backend)
            h = torch.cat([h, v_s, v_t], -1)
        out = self.heads(self.feature_out(h)).view(T, N, -1)
        dp, dq, ds = out.split([d for _, d in HEAD_DIMS], dim=-1)
        return dp, dq, ds

    def motion_curvature(self, means: torch.Tensor, times: torch.Tensor, step: float) -> torch.Tensor:
        """Mean squared second difference in time of the offsets, a prior on how motion bends.

        For canonical ``means [M, 3]`` (world units) and ``times [K]`` (in [0, 1]), the offsets
        ``f = (dp / extent, dq, ds)`` are taken at ``t - step``, ``t`` and ``t + step``; the result
        is ``mean |f(t - step) - 2 f(t) + f(t + step)|^2`` (dp scaled by the scene box's diagonal,
        so the term has no unit). Fitting frames with it in the loss makes the field's motion
        between fitted times spline-like (bending no more than the data asks) instead of free.
        """
        K = times.shape[0]
        dp, dq, ds = self(means, torch.cat([times - step, times, times + step]))
        extent = (self.aabb[1] - self.aabb[0]).norm()
        f = torch.cat([dp / extent, dq, ds], -1).view(3, K, means.shape[0], 10)
        return (f[0] - 2 * f[1] + f[2]).pow(2).sum(-1).mean()

    def regularisation(self, tv_weight: float = 1e-4, time_smooth_weight: float = 1e-3,
                       time_l1_weight: float = 1e-4) -> torch.Tensor:
        """4DGS plane regularisers: ``tv * TV + ts * time smoothness + l1 * |time planes - 1|``."""
        return self.hexplane.regularisation(tv_weight, time_smooth_weight, time_l1_weight)
