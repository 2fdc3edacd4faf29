"""Orster Gaussian-kernel attention: public entry point, parameters, reference.

For queries ``i`` and keys ``j`` of one (batch, head)::

    score_ij = scale * <q_i, k_j> - 1/2 * Qf(s_i - s_j, u_i - u_j)
    Qf(a, b) = |a|^2 / sigma_s^2 + |b|^2 / sigma_t^2 + 2 * alpha * <a, b> / sigma_st^2
    out_i    = sum_j softmax_j(score_ij) * v_j

``mode="density"`` sets the query-side kernel features to zero (the key's log-kappa, Eq. 11);
``mode="pairwise"`` uses both sides' features (a joint spatial-temporal RBF between tokens).

Folding (the kernel's key idea, see ``docs/kernels.md``): with ``A = 1/sigma_s^2``,
``C = 1/sigma_t^2`` and ``Bx = alpha/sigma_st^2``,

    -1/2 Qf(s_i - s_j, u_i - u_j) = <pf_i, kf_j> - c_j - c_i,
    pf_i = [A s_i + Bx u_i, Bx s_i + C u_i],   kf_j = [s_j, u_j],   c_j = 1/2 Qf(s_j, u_j).

``c_i`` is constant along a softmax row and drops out exactly, so the whole score is one
augmented dot product plus a per-key bias. The per-head scalars enter only through ``pf`` and
``c`` (cheap O(N) tensors built here with autograd), so their gradients are O(N) reductions of the
kernel's ``dpf``/``dc`` outputs.

Backends: Triton (``kernels/orster_attention.py``) for CUDA tensors; an exact chunked eager
PyTorch path (bounded memory, recomputation in backward, float64 arithmetic whatever the
inputs' dtype) on CPU. ``backend="triton"`` on CPU
tensors runs the Triton kernels in the interpreter (``TRITON_INTERPRET=1``).
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = [
    "GaussianKernelParams",
    "orster_attention",
    "orster_attention_reference",
    "quadratic_form_coefficients",
]

LOG2E = 1.4426950408889634
_MODES = ("density", "pairwise")
_RHO_MAX = 0.999  # |correlation| bound that keeps the 2x2 form positive definite


# ---------------------------------------------------------------------------------------------
# Per-head learnable scalars
# ---------------------------------------------------------------------------------------------
class GaussianKernelParams(nn.Module):
    """Per-head kernel scalars ``(sigma_s, sigma_t, sigma_st, alpha)``, each of shape ``[H]``.

    Parametrisation (always positive definite): ``sigma_* = exp(log_sigma_*)`` and
    ``alpha = rho * sigma_st^2 / (sigma_s * sigma_t)`` with ``rho = 0.999 * tanh(rho_raw)``.
    The 2x2 precision ``[[1/sigma_s^2, alpha/sigma_st^2], [alpha/sigma_st^2, 1/sigma_t^2]]`` then
    has determinant ``(1 - rho^2) / (sigma_s^2 sigma_t^2) > 0``, so ``Qf >= 0`` and ``kappa <= 1``.
    (The paper's four scalars are over-complete: only ``alpha / sigma_st^2`` enters Qf.)

    Calling the module returns the tuple ``(sigma_s, sigma_t, sigma_st, alpha)``.
    """

    def __init__(self, num_heads: int, sigma_s: float = 1.0, sigma_t: float = 1.0,
                 sigma_st: float = 1.0, rho: float = 0.0):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        for name, val in (("sigma_s", sigma_s), ("sigma_t", sigma_t), ("sigma_st", sigma_st)):
            if not (val > 0 and math.isfinite(val)):
                raise ValueError(f"{name} must be a finite positive float, got {val!r}")
        if not abs(rho) < _RHO_MAX:
            raise ValueError(f"rho must lie in (-{_RHO_MAX}, {_RHO_MAX}), got {rho!r}")
        self.num_heads = num_heads
        self.log_sigma_s = nn.Parameter(torch.full((num_heads,), math.log(sigma_s)))
        self.log_sigma_t = nn.Parameter(torch.full((num_heads,), math.log(sigma_t)))
        self.log_sigma_st = nn.Parameter(torch.full((num_heads,), math.log(sigma_st)))
        self.rho_raw = nn.Parameter(torch.full((num_heads,), math.atanh(rho / _RHO_MAX)))

    def rho(self) -> Tensor:
        """Correlation coefficient of the kernel's 2x2 precision, ``[H]``, in (-1, 1)."""
        return _RHO_MAX * torch.tanh(self.rho_raw)

    def forward(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        ss, st, sst = self.log_sigma_s.exp(), self.log_sigma_t.exp(), self.log_sigma_st.exp()
        alpha = self.rho() * sst * sst / (ss * st)
        return ss, st, sst, alpha

    def precision(self) -> Tensor:
        """Per-feature-dimension precision matrix ``[H, 2, 2]`` of the kernel (``kappa = exp(-x^T P x / 2)``)."""
        a, b, c = quadratic_form_coefficients(self())
        return torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)

    def covariance(self) -> Tensor:
        """Inverse of :meth:`precision`, ``[H, 2, 2]``: the Gaussian the kernel describes."""
        return torch.linalg.inv(self.precision())


def quadratic_form_coefficients(params) -> Tuple[Tensor, Tensor, Tensor]:
    """``(A, Bx, C) = (1/sigma_s^2, alpha/sigma_st^2, 1/sigma_t^2)``, each ``[H]``."""
    ss, st, sst, alpha = _as_scalars(params)
    return ss.pow(-2), alpha / (sst * sst), st.pow(-2)


def _as_scalars(params) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    if isinstance(params, GaussianKernelParams):
        return params()
    if isinstance(params, (tuple, list)) and len(params) == 4 and all(isinstance(p, Tensor) for p in params):
        return tuple(params)
    raise TypeError("params must be a GaussianKernelParams or a tuple of four [H] tensors "
                    f"(sigma_s, sigma_t, sigma_st, alpha), got {type(params).__name__}")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _check_4d(name: str, x, like: Optional[Tensor] = None):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape [B, H, N, D], got {tuple(x.shape)}")
    if like is not None:
        if x.device != like.device:
            raise ValueError(f"{name} is on {x.device}, expected {like.device} (the device of q)")
        if x.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {x.dtype}, expected {like.dtype} (the dtype of q)")


def _check_feature(name: str, x, q: Tensor, n: int, n_name: str):
    _check_4d(name, x, q)
    B, H = q.shape[:2]
    if x.shape[0] != B or x.shape[1] not in (1, H) or x.shape[2] != n:
        raise ValueError(f"{name} must have shape [{B}, {H} or 1, {n} ({n_name}), D_k], got {tuple(x.shape)}")


def _check_scalar_values(scal):
    ss, st, sst, alpha = (t.detach().double() for t in scal)
    bx = alpha / sst ** 2
    ok = torch.stack([torch.isfinite(torch.stack([ss, st, sst, alpha])).all(),
                      (ss > 0).all() & (st > 0).all() & (sst > 0).all(),
                      (bx * bx < ss.pow(-2) * st.pow(-2)).all()]).tolist()
    if not ok[0]:
        raise ValueError("params must be finite (sigma_s, sigma_t, sigma_st, alpha)")
    if not ok[1]:
        raise ValueError("params sigma_s, sigma_t and sigma_st must be > 0")
    if not ok[2]:
        raise ValueError("params are not positive definite: need (alpha/sigma_st^2)^2 < "
                         "1/(sigma_s^2 sigma_t^2) per head")


def _validate(q, k, v, s_q, u_q, s_k, u_k, params, mode, key_padding_mask, scale, backend):
    _check_4d("q", q)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"q must be float16, bfloat16, float32 or float64, got {q.dtype}")
    _check_4d("k", k, q)
    _check_4d("v", v, q)
    B, H, Nq, D = q.shape
    if k.shape[:2] != (B, H) or k.shape[3] != D:
        raise ValueError(f"k must have shape [{B}, {H}, Nk, {D}] to match q {tuple(q.shape)}, got {tuple(k.shape)}")
    Nk = k.shape[2]
    if v.shape[:3] != (B, H, Nk):
        raise ValueError(f"v must have shape [{B}, {H}, {Nk}, Dv] to match k {tuple(k.shape)}, got {tuple(v.shape)}")
    if Nq == 0 or Nk == 0 or D == 0 or v.shape[3] == 0:
        raise ValueError(f"empty attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if backend not in ("auto", "triton", "eager"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'eager', got {backend!r}")
    if (s_k is None) != (u_k is None):
        raise ValueError("s_k and u_k must be given together (key-side spatial and temporal kernel features)")
    has_kernel = s_k is not None
    if has_kernel:
        _check_feature("s_k", s_k, q, Nk, "Nk")
        _check_feature("u_k", u_k, q, Nk, "Nk")
        if s_k.shape[3] != u_k.shape[3]:
            raise ValueError(f"s_k and u_k must share their width D_k (the cross term <a, b> needs it), "
                             f"got {s_k.shape[3]} and {u_k.shape[3]}")
        if params is None:
            raise ValueError("params (GaussianKernelParams or (sigma_s, sigma_t, sigma_st, alpha)) is "
                             "required when kernel features are given")
        scal = _as_scalars(params)
        want = (H,) if any(t.shape == (H,) for t in scal) else (1,)
        for nm, t in zip(("sigma_s", "sigma_t", "sigma_st", "alpha"), scal):
            if t.shape != want:
                raise ValueError(f"params.{nm} must have shape [{H}] (one per head), or all four [1] (shared "
                                 f"by the heads), got {tuple(t.shape)}")
            if t.device != q.device:
                raise ValueError(f"params.{nm} is on {t.device}, expected {q.device}")
        if not isinstance(params, GaussianKernelParams):
            # explicit scalars are value-checked (one host synchronisation); GaussianKernelParams
            # are positive and positive definite by construction and skip the synchronisation
            _check_scalar_values(scal)
    if mode == "pairwise":
        if not has_kernel:
            raise ValueError("mode='pairwise' needs the key-side kernel features s_k and u_k")
        if s_q is None or u_q is None:
            raise ValueError("mode='pairwise' needs the query-side kernel features s_q and u_q")
        _check_feature("s_q", s_q, q, Nq, "Nq")
        _check_feature("u_q", u_q, q, Nq, "Nq")
        if s_q.shape[3] != s_k.shape[3] or u_q.shape[3] != s_k.shape[3]:
            raise ValueError(f"s_q and u_q must have the width D_k = {s_k.shape[3]} of s_k, "
                             f"got {s_q.shape[3]} and {u_q.shape[3]}")
    elif s_q is not None or u_q is not None:
        raise ValueError("s_q / u_q are only used in mode='pairwise' (density mode has zero query features)")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError("key_padding_mask must be a bool tensor of shape [B, Nk] (True = padded key)")
        if key_padding_mask.shape != (B, Nk):
            raise ValueError(f"key_padding_mask must have shape [{B}, {Nk}], got {tuple(key_padding_mask.shape)}")
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device}, expected {q.device}")
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    if isinstance(scale, Tensor) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite Python float, got {scale!r}")
    return float(scale), (tuple(t.expand(H) for t in scal) if has_kernel else None)


# ---------------------------------------------------------------------------------------------
# Folding of the Gaussian term into augmented features
# ---------------------------------------------------------------------------------------------
def _fold(params, s_q, u_q, s_k, u_k, mode, key_padding_mask, B, H, Nk, dtype):
    """Augmented features and per-key bias, differentiable in every input.

    Returns ``pf [B, H, Nq, 2Dk]`` (``dtype``; None in density mode), ``kf [B, 1 or H, Nk, 2Dk]``
    (the features' own dtype; None in density mode) and ``c [B, H, Nk]`` (``dtype``, ``+inf`` on
    padded keys; None without kernel and mask). ``pf`` is one small matmul per head:
    ``[s_q, u_q] @ kron([[A, Bx], [Bx, C]], I)``. ``dtype`` is float32 or float64.
    """
    pf = kf = bias = None
    if s_k is not None:
        scal = tuple(t.to(dtype) for t in _as_scalars(params))
        a, b, c = (t.view(1, H, 1) for t in quadratic_form_coefficients(scal))
        sk, uk = s_k.to(dtype), u_k.to(dtype)
        bias = 0.5 * (a * sk.pow(2).sum(-1) + c * uk.pow(2).sum(-1) + 2.0 * b * (sk * uk).sum(-1))
        bias = bias.expand(B, H, Nk)
        if mode == "pairwise":
            dk = s_k.shape[-1]
            prec = torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)  # [1,H,1,2,2]
            eye = torch.eye(dk, dtype=dtype, device=a.device)
            mix = (prec.view(H, 2, 1, 2, 1) * eye.view(1, 1, dk, 1, dk)).reshape(1, H, 2 * dk, 2 * dk)
            pf = torch.cat(torch.broadcast_tensors(s_q, u_q), -1).to(dtype) @ mix
            kf = torch.cat(torch.broadcast_tensors(s_k, u_k), -1)
    if key_padding_mask is not None:
        if bias is None:
            bias = torch.zeros(B, H, Nk, dtype=dtype, device=key_padding_mask.device)
        bias = bias.masked_fill(key_padding_mask[:, None, :], float("inf"))
    return pf, kf, bias


def _safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim; rows whose every entry is -inf give all zeros (no NaN)."""
    m = scores.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    e = torch.exp(scores - m)
    den = e.sum(-1, keepdim=True)
    return e / torch.where(den == 0, torch.ones_like(den), den)


# ---------------------------------------------------------------------------------------------
# Float64 reference (direct definition, for tests)
# ---------------------------------------------------------------------------------------------
def orster_attention_reference(q, k, v, *, s_k=None, u_k=None, s_q=None, u_q=None, params=None,
                               mode="density", key_padding_mask=None, scale=None) -> Tensor:
    """Eager float64 evaluation of the defining formula with explicit differences ``s_i - s_j``.

    Materialises ``[B, H, Nq, Nk, D_k]``: tiny inputs only. Returns ``[B, H, Nq, Dv]`` float64.
    """
    scale, _ = _validate(q, k, v, s_q, u_q, s_k, u_k, params, mode, key_padding_mask, scale, "eager")
    q, k, v = q.double(), k.double(), v.double()
    scores = scale * q @ k.transpose(-1, -2)
    if s_k is not None:
        ss, st, sst, alpha = (t.double().view(1, -1, 1, 1) for t in _as_scalars(params))
        sk, uk = s_k.double()[:, :, None], u_k.double()[:, :, None]       # [B,H,1,Nk,Dk]
        if mode == "pairwise":
            da, db = s_q.double()[:, :, :, None] - sk, u_q.double()[:, :, :, None] - uk
        else:
            da, db = -sk, -uk
        qf = (da * da).sum(-1) / ss ** 2 + (db * db).sum(-1) / st ** 2 + 2 * alpha * (da * db).sum(-1) / sst ** 2
        scores = scores - 0.5 * qf
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return _safe_softmax(scores) @ v


# ---------------------------------------------------------------------------------------------
# Eager chunked path (CPU; exact, memory bounded by chunk_size x Nk per (batch, head))
# ---------------------------------------------------------------------------------------------
def _eager_chunk(q, k, v, pf, kf, bias, scale):
    scores = scale * (q @ k.transpose(-1, -2))
    if pf is not None:
        scores = scores + pf @ kf.transpose(-1, -2)
    if bias is not None:
        scores = scores - bias[:, :, None, :]
    return _safe_softmax(scores) @ v


def _eager(q, k, v, pf, kf, bias, scale, chunk_elems: int = 1 << 23):
    # float64 throughout (see orster_attention): in float32 the scalars' gradients, sums over every
    # (query, key) of terms that largely cancel, came out up to ~1e-5 of their scale off;
    # chunk_elems is half its float32 value, so a chunk's scores take the same bytes
    cdt = torch.float64
    qc, kc, vc = q.to(cdt), k.to(cdt), v.to(cdt)
    kf = None if kf is None else kf.to(cdt)
    B, H, Nq, _ = q.shape
    chunk = max(1, min(Nq, chunk_elems // max(1, B * H * k.shape[2])))
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, pf, kf, bias))
    outs = []
    for i0 in range(0, Nq, chunk):
        sl = slice(i0, i0 + chunk)
        pfc = None if pf is None else pf[:, :, sl]
        if grad and chunk < Nq:
            # recompute each chunk's scores in backward: memory stays O(chunk * Nk)
            o = torch.utils.checkpoint.checkpoint(_eager_chunk, qc[:, :, sl], kc, vc, pfc, kf, bias,
                                                  scale, use_reentrant=False)
        else:
            o = _eager_chunk(qc[:, :, sl], kc, vc, pfc, kf, bias, scale)
        outs.append(o)
    return torch.cat(outs, 2).to(q.dtype)


# ---------------------------------------------------------------------------------------------
# Triton path: autograd Function around the kernels
# ---------------------------------------------------------------------------------------------
def _pow2(n: int) -> int:
    return max(16, 1 << (int(n) - 1).bit_length())


def _pad_last(x: Optional[Tensor], width: int) -> Optional[Tensor]:
    if x is None or x.shape[-1] == width:
        return x
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]))


def _tiling(Nq: int, Nk: int, BH: int, has_feat: bool, width: int = 64, itemsize: int = 2):
    """Tile sizes ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` per kernel, and head packing.

    ``width`` is the widest of the (padded) head, value and feature widths; ``itemsize`` the bytes
    of one q/k/v element. Short sequences (the temporal regime) pack ``G`` heads into one tile.
    The sizes for 16-bit inputs and widths up to 64 come from a sweep on an H100
    (``benchmarks/_tune_attention.py``); wider heads get smaller tiles so that the operands fit in
    shared memory (not tuned). float32 inputs take twice the shared memory per tile: the
    backward's 3-stage pipeline with key features asked for 241 KiB on an H200 (its limit is 227),
    so float32 tiles are single-stage, with half-height backward tiles (not tuned)."""
    t = _tiling16(Nq, Nk, BH, has_feat, width)
    if itemsize <= 2 or t["packed"]:
        return t
    out = dict(t)
    for key in ("fwd", "bwd", "dq"):
        bm, bn, nw, _ = t[key]
        out[key] = (max(16, bm // 2) if key == "bwd" else bm, bn, nw, 1)
    return out


def _tiling16(Nq: int, Nk: int, BH: int, has_feat: bool, width: int = 64):
    """:func:`_tiling` for 16-bit inputs."""
    if max(Nq, Nk) <= 32:
        block = 128 if max(Nq, Nk) > 16 else 64
        if width > 128:
            block = 32
        elif width > 64:
            block = min(block, 64)
        g = max(1, min(block // Nq, block // Nk, BH))
        return dict(packed=True, G=g, fwd=(block, block, 4, 2), bwd=(block, block, 4, 2))
    if width > 128:
        return dict(packed=False, G=1, fwd=(32, 32, 4, 1), bwd=(16, 32, 4, 1), dq=(32, 16, 4, 1))
    if width > 64:
        return dict(packed=False, G=1, fwd=(64, 64, 4, 2), bwd=(32, 64, 4, 2), dq=(64, 32, 4, 2))
    if has_feat or Nq > 4 * Nk:
        return dict(packed=False, G=1, fwd=(128, 64, 4, 3), bwd=(64, 128, 8, 3), dq=(128, 64, 8, 3))
    return dict(packed=False, G=1, fwd=(64, 128, 4, 3), bwd=(32, 128, 4, 3), dq=(128, 32, 4, 3))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _AugmentedAttention(torch.autograd.Function):
    """Triton attention over augmented scores (see ``kernels/orster_attention.py``).

    Inputs (widths already powers of two, contiguous): ``q, k [BH, N, D]``, ``v [BH, Nk, DV]``,
    ``pf [BH, Nq, DF]`` float32 or None, ``kf [BH / hdiv, Nk, DF]`` in q's dtype or
    None, ``bias [BH, Nk]`` float32 in log2 units or None; ``hdiv`` heads share one ``kf`` row.
    """

    @staticmethod
    def forward(ctx, q, k, v, pf, kf, bias, scale, hdiv, exact_scalars):
        from orster4d.kernels import orster_attention as K
        BH, Nq, D = q.shape
        Nk, DV = k.shape[1], v.shape[2]
        has_feat, has_bias = pf is not None, bias is not None
        DF = pf.shape[2] if has_feat else 16
        t = _tiling(Nq, Nk, BH, has_feat, max(D, DV, DF if has_feat else 0), q.element_size())
        prec = "ieee" if q.dtype == torch.float32 else "tf32"
        # 16-bit inputs whose kernel scalars take a gradient: the feature dots and P V on two 16-bit
        # halves (see the kernels' file); without that gradient one rounding is as good as q k^T's
        split = exact_scalars and q.dtype != torch.float32
        # 16-bit inputs with a backward to come: the kernel computes P V on the two 16-bit halves of
        # P and writes the output in float32, and the backward's delta_i = <o_i, do_i> reads that
        # copy. With P or o rounded to 16 bits, delta misses sum_j P_ij dP_ij by up to 2^-8 of
        # |o| |do| per row, an error that every dS_ij of the row carries and that the Gaussian
        # kernel's scalar gradients (sums of dS over all pairs, whose exact terms cancel) do not
        # average away.
        keep32 = q.dtype != torch.float32 and any(ctx.needs_input_grad[:6])
        o = torch.empty(BH, Nq, DV, device=q.device, dtype=torch.float32 if keep32 else q.dtype)
        lse = torch.empty(BH, Nq, device=q.device, dtype=torch.float32)
        bm, bn, nw, ns = t["fwd"]
        n_tiles = 1 if t["packed"] else _cdiv(Nq, bm)
        n_heads = _cdiv(BH, t["G"]) if t["packed"] else BH
        even = not t["packed"] and Nq % bm == 0 and Nk % bn == 0
        K.attn_fwd[(n_tiles * n_heads,)](
            q, k, v, pf if has_feat else lse, kf if has_feat else q, bias if has_bias else lse, o, lse,
            Nq, Nk, t["G"], BH, n_tiles, hdiv, scale * LOG2E,
            D=D, DF=DF, DV=DV, HAS_FEAT=has_feat, HAS_BIAS=has_bias, SPLIT=split, P_SPLIT=keep32 and split,
            PACKED=t["packed"], EVEN=even, BLOCK_M=bm, BLOCK_N=bn, PREC=prec, num_warps=nw, num_stages=ns)
        ctx.save_for_backward(q, k, v, pf, kf, bias, o, lse)  # o: the float32 copy when keep32
        ctx.scale, ctx.tiling, ctx.prec, ctx.DF, ctx.hdiv, ctx.split = scale, t, prec, DF, hdiv, split
        return o.to(q.dtype) if keep32 else o

    @staticmethod
    def backward(ctx, do):
        from orster4d.kernels import orster_attention as K
        q, k, v, pf, kf, bias, o, lse = ctx.saved_tensors
        t, prec, DF, scale, hdiv = ctx.tiling, ctx.prec, ctx.DF, ctx.scale, ctx.hdiv
        split = ctx.split
        BH, Nq, D = q.shape
        Nk, DV = k.shape[1], v.shape[2]
        do = do.contiguous()
        delta = torch.empty_like(lse)
        K.attn_bwd_preprocess[(_cdiv(BH * Nq, 128),)](o, do, delta, BH * Nq, DV=DV, BLOCK=128)
        has_feat, has_bias = pf is not None, bias is not None
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dpf = torch.empty_like(pf) if has_feat else lse
        dkf = torch.empty(BH, Nk, DF, device=q.device, dtype=torch.float32) if has_feat else lse
        dbias = torch.empty_like(bias) if has_bias else lse
        pf_, kf_, bias_ = (pf if has_feat else lse), (kf if has_feat else q), (bias if has_bias else lse)
        bm, bn, nw, ns = t["bwd"]
        n_tiles = 1 if t["packed"] else _cdiv(Nk, bn)
        n_heads = _cdiv(BH, t["G"]) if t["packed"] else BH
        even = not t["packed"] and Nq % bm == 0 and Nk % bn == 0
        K.attn_bwd_dkdv[(n_tiles * n_heads,)](
            q, k, v, pf_, kf_, bias_, do, lse, delta, dq, dk, dv, dpf, dkf, dbias,
            Nq, Nk, t["G"], BH, n_tiles, hdiv, scale * LOG2E, scale,
            D=D, DF=DF, DV=DV, HAS_FEAT=has_feat, HAS_BIAS=has_bias, SPLIT=split, PACKED=t["packed"], EVEN=even,
            BLOCK_M=bm, BLOCK_N=bn, PREC=prec, num_warps=nw, num_stages=ns)
        if not t["packed"]:
            bm, bn, nw, ns = t["dq"]
            n_tiles = _cdiv(Nq, bm)
            even = Nq % bm == 0 and Nk % bn == 0
            K.attn_bwd_dq[(n_tiles * BH,)](
                q, k, v, pf_, kf_, bias_, do, lse, delta, dq, dpf,
                Nq, Nk, BH, n_tiles, hdiv, scale * LOG2E, scale,
                D=D, DF=DF, DV=DV, HAS_FEAT=has_feat, HAS_BIAS=has_bias, SPLIT=split, EVEN=even,
                BLOCK_M=bm, BLOCK_N=bn, PREC=prec, num_warps=nw, num_stages=ns)
        if has_feat:
            dkf = dkf.view(BH // hdiv, hdiv, Nk, DF).sum(1).to(kf.dtype)
        return (dq, dk, dv, dpf if has_feat else None, dkf if has_feat else None,
                dbias if has_bias else None, None, None, None)


def _triton(q, k, v, pf, kf, bias, scale, exact_scalars=False):
    if q.dtype == torch.float64:
        raise TypeError("the Triton backend takes float16, bfloat16 or float32 q/k/v, got float64 "
                        "(use backend='eager')")
    B, H, Nq, D = q.shape
    Nk, DV = k.shape[2], v.shape[3]
    Dp, DVp = _pow2(D), _pow2(DV)

    def flat(x, n, width):
        return _pad_last(x, width).reshape(-1, n, width).contiguous()

    qf, kk, vf = flat(q, Nq, Dp), flat(k, Nk, Dp), flat(v, Nk, DVp)
    pf2 = kf2 = bias2 = None
    hdiv = 1
    if pf is not None:
        DFp = _pow2(pf.shape[-1])
        pf2 = flat(pf, Nq, DFp)
        kf2 = flat(kf.to(q.dtype), Nk, DFp)
        hdiv = H if kf.shape[1] == 1 else 1
    if bias is not None:
        bias2 = (bias * LOG2E).reshape(B * H, Nk).contiguous()
    o = _AugmentedAttention.apply(qf, kk, vf, pf2, kf2, bias2, scale, hdiv, exact_scalars)
    return o.reshape(B, H, Nq, DVp)[..., :DV]


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------
def orster_attention(q: Tensor, k: Tensor, v: Tensor, *,
                     s_k: Optional[Tensor] = None, u_k: Optional[Tensor] = None,
                     s_q: Optional[Tensor] = None, u_q: Optional[Tensor] = None,
                     params: Union[GaussianKernelParams, Sequence[Tensor], None] = None,
                     mode: str = "density", key_padding_mask: Optional[Tensor] = None,
                     scale: Optional[float] = None, backend: str = "auto") -> Tensor:
    """Softmax attention with the Orster Gaussian-kernel term added to every score.

    Args:
        q: queries ``[B, H, Nq, D]``; float16, bfloat16, float32 (float64: eager backend only).
        k: keys ``[B, H, Nk, D]``; v: values ``[B, H, Nk, Dv]``; same dtype and device as q.
        s_k, u_k: key-side centred spatial / temporal kernel features ``[B, H or 1, Nk, D_k]``
            (a head dim of 1 is shared by every head). Both None: plain softmax attention.
        s_q, u_q: query-side features ``[B, H or 1, Nq, D_k]``; ``mode="pairwise"`` only.
        params: per-head ``(sigma_s, sigma_t, sigma_st, alpha)`` as a :class:`GaussianKernelParams`
            (positive definite by construction) or a tuple of four ``[H]`` tensors, which are
            checked to be finite, positive and positive definite (one host synchronisation); ``[1]``
            everywhere (e.g. ``GaussianKernelParams(1)``) is one kernel shared by the ``H`` heads.
        mode: ``"density"`` (query features zero: the key's log-kappa, Eq. 11) or ``"pairwise"``.
        key_padding_mask: bool ``[B, Nk]``, True marks a padded key (excluded). A query whose
            keys are all padded gets a zero output.
        scale: multiplier of ``<q, k>``; default ``1/sqrt(D)``.
        backend: ``"auto"`` (Triton on CUDA, eager on CPU), ``"triton"`` (CPU tensors need
            ``TRITON_INTERPRET=1``) or ``"eager"``.

    Returns:
        ``[B, H, Nq, Dv]`` in q's dtype. Differentiable in q, k, v, all kernel features and the
        four scalars; memory is linear in Nq and Nk on every backend.
    """
    scale, scalars = _validate(q, k, v, s_q, u_q, s_k, u_k, params, mode, key_padding_mask, scale, backend)
    if backend == "auto":
        backend = "triton" if q.is_cuda else "eager"
    if backend == "triton" and not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
    B, H, _, _ = q.shape
    Nk = k.shape[2]
    # the eager (CPU) path computes in float64 whatever the inputs' dtype, the fold included
    cdt = torch.float64 if q.dtype == torch.float64 or backend == "eager" else torch.float32
    pf, kf, bias = _fold(scalars, s_q, u_q, s_k, u_k, mode, key_padding_mask, B, H, Nk, cdt)
    if backend == "eager":
        return _eager(q, k, v, pf, kf, bias, scale)
    exact = scalars is not None and torch.is_grad_enabled() and any(t.requires_grad for t in scalars)
    return _triton(q, k, v, pf, kf, bias, scale, exact_scalars=exact)
