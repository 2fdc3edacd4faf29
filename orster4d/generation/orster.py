"""Orster transfer (paper Eq. 11-14).

Takes aligned teacher features (the 3D-aware teacher's spatial features ``f3d_s`` and the video
teacher's temporal features ``fv_t``, same noised video, same timestep, token for token) and the
student's features (``f4d_s`` from the spatial channel's spatial blocks, ``f4d_t`` from the
temporal channel's temporal blocks), all in the video layout ``[B, C, F, h, w]``, and returns

    L_orster = lambda_o * |f4d_s - fbar_s| + (1 - lambda_o) * |f4d_t - fbar_t|      (mean absolute error)

with the detached targets ``fbar_s = SptAttn(f3d_s, kappa, f3d_s)`` (attention over the ``h*w``
tokens of each frame) and ``fbar_t = TmprAttn(fv_t, kappa, fv_t)`` (over the ``F`` frames at each
position), both computed by :func:`orster4d.ops.attention.orster_attention`.

Kernel features and the distributional fit:
- ``s = P_s f3d_s`` and ``u = P_t fv_t`` are learned 1x1 projections to the kernel width
  ``kernel_dim``, centred by their token means ``g_s``, ``g_t`` (per sample, over ``F*h*w``) and
  scaled to unit root-mean-square per channel. The scaling makes the fit scale-free: without it
  the likelihood could be raised without bound by shrinking the projections.
- The kernel scalars (and the projections) are fitted by the Gaussian negative log-likelihood of
  the centred pairs ``(s, u)`` under ``N(0, Lambda^-1 (x) I)``, ``Lambda`` the kernel's 2x2
  precision: ``nll = mean_tokens Qf(s, u) / (2 D_k) - log det Lambda / 2`` per feature dimension.
  Its minimiser is ``Lambda^-1 = `` the empirical 2x2 covariance of ``(s, u)``; with the
  projections learned as well it is a canonical-correlation fit of the two teachers.
- Targets are computed under ``torch.no_grad`` from detached features and scalars: nothing the
  loss could update moves its own target. Only the student features (and the optional student
  adapters mapping student widths to teacher widths) receive gradients from ``L_orster``.

Ablation switches (paper Table 3): ``use_kernel=False`` (plain attention), ``spatial_attention=False``
/ ``temporal_attention=False`` (raw teacher features as targets), ``lambda_o`` in [0, 1].
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from orster4d.generation.models.base import SavedModel
from orster4d.ops.attention import GaussianKernelParams, orster_attention, quadratic_form_coefficients

__all__ = ["OrsterTransfer", "gaussian_nll", "centre_and_scale"]


def gaussian_nll(s: Tensor, u: Tensor, params) -> Tensor:
    """Mean Gaussian NLL per feature dimension of centred pairs ``(s, u)`` under the kernel.

    Args:
        s, u: ``[..., N, D_k]`` centred spatial / temporal kernel features (leading dims are
            flattened into tokens).
        params: :class:`GaussianKernelParams` with one head, or a tuple of four ``[1]`` tensors.
    Returns:
        scalar ``mean(Qf(s, u)) / (2 D_k) - log(det Lambda) / 2`` (plus the constant ``log 2 pi``).
    """
    if s.shape != u.shape:
        raise ValueError(f"s and u must have the same shape, got {tuple(s.shape)} and {tuple(u.shape)}")
    a, b, c = quadratic_form_coefficients(params)
    if a.numel() != 1:
        raise ValueError(f"gaussian_nll fits one kernel (params of shape [1]), got {a.numel()} heads")
    dk = s.shape[-1]
    qf = a * s.pow(2).sum(-1) + c * u.pow(2).sum(-1) + 2 * b * (s * u).sum(-1)
    logdet = torch.log(a * c - b * b)
    return (qf.mean() / (2 * dk) - 0.5 * logdet + math.log(2 * math.pi)).squeeze()


def centre_and_scale(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``[B, T, D]`` tokens minus their mean over T, divided by the per-channel RMS over T."""
    x = x - x.mean(1, keepdim=True)
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + eps)


def _tokens(x: Tensor) -> Tensor:
    """``[B, C, F, h, w] -> [B, F*h*w, C]``."""
    return x.flatten(2).transpose(1, 2)


class OrsterTransfer(SavedModel):
    """The Orster loss: kernel fit, detached SptAttn / TmprAttn targets, ``L_orster``.

    A saved model (``save_pretrained`` / ``from_pretrained``): its folder holds the constructor's
    arguments in ``config.json`` and the projections, kernel scalars and adapters.

    Args:
        spatial_channels: channels of ``f3d_s`` (spatial teacher features).
        temporal_channels: channels of ``fv_t`` (temporal teacher features).
        kernel_dim: width ``D_k`` of the kernel features ``s`` and ``u``.
        num_heads: attention heads of SptAttn / TmprAttn (must divide both channel counts). Default
            None: ``C // 64`` heads of width 64 for each of the two attentions where 64 divides the
            channel count ``C``, else one head. The kernel scalars are shared by the heads (one
            joint distribution).
        lambda_o: weight of the spatial term, in [0, 1].
        mode: ``"density"`` (Eq. 11 as written) or ``"pairwise"``, see :mod:`orster4d.ops.attention`.
        use_kernel, spatial_attention, temporal_attention: ablation switches.
        student_spatial_channels, student_temporal_channels: student widths when they differ from
            the teachers'; a learned 1x1 adapter then maps the student's features to the teacher's.
    """

    @register_to_config
    def __init__(self, spatial_channels: int, temporal_channels: int, *, kernel_dim: int = 32,
                 num_heads: Optional[int] = None, lambda_o: float = 0.5, mode: str = "density",
                 use_kernel: bool = True, spatial_attention: bool = True, temporal_attention: bool = True,
                 student_spatial_channels: Optional[int] = None,
                 student_temporal_channels: Optional[int] = None):
        super().__init__()
        if not 0.0 <= lambda_o <= 1.0:
            raise ValueError(f"lambda_o must lie in [0, 1], got {lambda_o!r}")
        if mode not in ("density", "pairwise"):
            raise ValueError(f"mode must be 'density' or 'pairwise', got {mode!r}")
        for name, ch in (("spatial_channels", spatial_channels), ("temporal_channels", temporal_channels)):
            if num_heads is not None and (num_heads < 1 or ch % num_heads):
                raise ValueError(f"num_heads={num_heads} must divide {name}={ch}")
        self.spatial_channels, self.temporal_channels = spatial_channels, temporal_channels
        self.heads_s = num_heads or (spatial_channels // 64 if spatial_channels % 64 == 0 else 1)
        self.heads_t = num_heads or (temporal_channels // 64 if temporal_channels % 64 == 0 else 1)
        self.lambda_o, self.mode = float(lambda_o), mode
        self.use_kernel, self.spatial_attention, self.temporal_attention = use_kernel, spatial_attention, temporal_attention
        self.proj_s = nn.Linear(spatial_channels, kernel_dim, bias=False)
        self.proj_t = nn.Linear(temporal_channels, kernel_dim, bias=False)
        with torch.no_grad():  # start from the same directions where widths allow
            nn.init.orthogonal_(self.proj_s.weight)
            if temporal_channels == spatial_channels:
                self.proj_t.weight.copy_(self.proj_s.weight)
            else:
                nn.init.orthogonal_(self.proj_t.weight)
        self.kernel = GaussianKernelParams(1)
        self.adapt_s = self._adapter(student_spatial_channels, spatial_channels)
        self.adapt_t = self._adapter(student_temporal_channels, temporal_channels)

    @staticmethod
    def _adapter(student: Optional[int], teacher: int) -> nn.Module:
        if student is None or student == teacher:
            return nn.Identity()
        return nn.Linear(student, teacher)

    # -------------------------------------------------------------------------------------
    def kernel_features(self, f3d_s: Tensor, fv_t: Tensor):
        """Centred, unit-RMS kernel features ``s, u [B, F*h*w, D_k]`` (differentiable)."""
        s = centre_and_scale(self.proj_s(_tokens(f3d_s).float()))
        u = centre_and_scale(self.proj_t(_tokens(fv_t).float()))
        return s, u

    def _attend(self, x: Tensor, s: Tensor, u: Tensor, use_kernel: bool, H: int) -> Tensor:
        """``H``-head self-attention of ``x [G, N, C]`` with kernel features ``s, u [G, N, D_k]``."""
        G, N, C = x.shape
        xh = x.view(G, N, H, C // H).transpose(1, 2)
        kw = {}
        if use_kernel:  # one kernel shared by the H heads (GaussianKernelParams: no host-side value check)
            kw = dict(s_k=s[:, None].to(x.dtype), u_k=u[:, None].to(x.dtype), params=self.kernel, mode=self.mode)
            if self.mode == "pairwise":
                kw.update(s_q=kw["s_k"], u_q=kw["u_k"])
        out = orster_attention(xh, xh, xh, **kw)
        return out.transpose(1, 2).reshape(G, N, C)

    @torch.no_grad()
    def targets(self, f3d_s: Tensor, fv_t: Tensor, need_spatial: bool = True, need_temporal: bool = True):
        """Detached targets ``fbar_s``, ``fbar_t`` in the layout ``[B, C, F, h, w]`` (None if unneeded)."""
        B, _, F, h, w = f3d_s.shape
        s = u = None
        if self.use_kernel and ((need_spatial and self.spatial_attention) or (need_temporal and self.temporal_attention)):
            s, u = self.kernel_features(f3d_s, fv_t)
            s, u = s.view(B, F, h * w, -1), u.view(B, F, h * w, -1)
        fbar_s = fbar_t = None
        if need_spatial:
            fbar_s = f3d_s
            if self.spatial_attention:  # SptAttn: the h*w tokens of each frame
                x = f3d_s.permute(0, 2, 3, 4, 1).reshape(B * F, h * w, -1)
                ks = (s.reshape(B * F, h * w, -1), u.reshape(B * F, h * w, -1)) if s is not None else (None, None)
                y = self._attend(x, *ks, use_kernel=s is not None, H=self.heads_s)
                fbar_s = y.view(B, F, h, w, -1).permute(0, 4, 1, 2, 3)
        if need_temporal:
            fbar_t = fv_t
            if self.temporal_attention:  # TmprAttn: the F frames at each position
                x = fv_t.permute(0, 3, 4, 2, 1).reshape(B * h * w, F, -1)
                ks = (None, None)
                if s is not None:
                    ks = tuple(t.view(B, F, h * w, -1).transpose(1, 2).reshape(B * h * w, F, -1) for t in (s, u))
                y = self._attend(x, *ks, use_kernel=s is not None, H=self.heads_t)
                fbar_t = y.view(B, h, w, F, -1).permute(0, 4, 3, 1, 2)
        return fbar_s.detach() if fbar_s is not None else None, fbar_t.detach() if fbar_t is not None else None

    def forward(self, f4d_s: Tensor, f4d_t: Tensor, f3d_s: Tensor, fv_t: Tensor) -> Dict[str, Tensor]:
        """Losses of one step.

        Args:
            f4d_s: student spatial features ``[B, C_s', F, h, w]``; f4d_t: student temporal
                features ``[B, C_t', F, h, w]``.
            f3d_s: spatial teacher features ``[B, C_s, F, h, w]``; fv_t: temporal teacher
                features ``[B, C_t, F, h, w]`` (aligned token for token with f3d_s).
        Returns:
            dict with ``"orster"`` (L_orster, trains the student), ``"spatial"`` and ``"temporal"``
            (its two unweighted terms), ``"nll"`` (kernel fit; trains the kernel scalars and
            projections; zero without kernel) and ``"loss" = orster + nll``.
        """
        self._check(f4d_s, f4d_t, f3d_s, fv_t)
        lam = self.lambda_o
        need_s, need_t = lam > 0, lam < 1
        fbar_s, fbar_t = self.targets(f3d_s, fv_t, need_s, need_t)
        zero = f4d_s.new_zeros(()).float()
        l_s = (self._to_teacher(self.adapt_s, f4d_s) - fbar_s).abs().mean() if need_s else zero
        l_t = (self._to_teacher(self.adapt_t, f4d_t) - fbar_t).abs().mean() if need_t else zero
        orster = lam * l_s + (1 - lam) * l_t
        nll = zero
        if self.use_kernel:
            s, u = self.kernel_features(f3d_s.detach(), fv_t.detach())
            nll = gaussian_nll(s, u, self.kernel)
        return {"loss": orster + nll, "orster": orster, "spatial": l_s, "temporal": l_t, "nll": nll}

    @staticmethod
    def _to_teacher(adapter: nn.Module, x: Tensor) -> Tensor:
        if isinstance(adapter, nn.Identity):
            return x
        return adapter(x.movedim(1, -1)).movedim(-1, 1)

    def _check(self, f4d_s, f4d_t, f3d_s, fv_t):
        for name, x in (("f4d_s", f4d_s), ("f4d_t", f4d_t), ("f3d_s", f3d_s), ("fv_t", fv_t)):
            if not isinstance(x, Tensor) or x.dim() != 5:
                raise ValueError(f"{name} must be a [B, C, F, h, w] tensor, got "
                                 f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        B, _, F, h, w = f3d_s.shape
        if f3d_s.shape[1] != self.spatial_channels:
            raise ValueError(f"f3d_s must have {self.spatial_channels} channels, got {f3d_s.shape[1]}")
        if fv_t.shape[1] != self.temporal_channels:
            raise ValueError(f"fv_t must have {self.temporal_channels} channels, got {fv_t.shape[1]}")
        for name, x, ch in (("fv_t", fv_t, None), ("f4d_s", f4d_s, self._student_ch(self.adapt_s, self.spatial_channels)),
                            ("f4d_t", f4d_t, self._student_ch(self.adapt_t, self.temporal_channels))):
            if (x.shape[0],) + tuple(x.shape[2:]) != (B, F, h, w):
                raise ValueError(f"{name} must be aligned with f3d_s: shape [{B}, C, {F}, {h}, {w}], got {tuple(x.shape)}")
            if ch is not None and x.shape[1] != ch:
                raise ValueError(f"{name} must have {ch} channels, got {x.shape[1]}")

    @staticmethod
    def _student_ch(adapter, teacher):
        return adapter.in_features if isinstance(adapter, nn.Linear) else teacher
