"""Benchmark shapes and competing implementations of the Orster attention (GPU only).

Shared by ``benchmarks/bench_attention.py`` (pytest-benchmark) and
``scripts/gpu_attention_report.py`` (JSON report). Every method computes the same scores:

- ``ours``: :func:`orster4d.ops.attention.orster_attention` (Triton).
- ``eager``: the formula written in plain PyTorch, materialising the ``Nq x Nk`` scores.
- ``flex``: ``torch.nn.attention.flex_attention`` (compiled). The Gaussian term is supplied the
  strongest way Flex allows: ``pf``/``kf`` are concatenated onto q/k (pairwise mode) and the
  per-key bias is added by ``score_mod``.
- ``sdpa``: ``scaled_dot_product_attention`` with the flash backend on plain attention of the
  same q/k/v shape (no kernel term): the speed-of-light reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from orster4d.ops.attention import GaussianKernelParams, _fold, orster_attention


@dataclass(frozen=True)
class Case:
    name: str
    B: int
    H: int
    Nq: int
    Nk: int
    D: int
    Dk: int = 32

    def flops(self, mode: str, backward: bool = False) -> float:
        """The kernel's own matmul FLOPs (forward, or backward without recomputation)."""
        df = 2 * self.Dk if mode == "pairwise" else 0
        per = 2.0 * self.B * self.H * self.Nq * self.Nk
        if backward:  # recompute S, dV, dP, dQ, dK, dpf, dkf
            return per * (3 * self.D + 3 * df + 2 * self.D)
        return per * (2 * self.D + df)


CASES = [
    Case("spatial_1024", 32, 8, 1024, 1024, 64),
    Case("spatial_4096", 32, 8, 4096, 4096, 64),
    Case("temporal_16", 8 * 64 * 64, 8, 16, 16, 64),
    Case("temporal_24", 8 * 64 * 64, 8, 24, 24, 64),
    Case("joint_16384", 1, 8, 16384, 16384, 64),
    Case("cross_1M_4096", 1, 4, 1_000_000, 4096, 32),
]
METHODS = ("ours", "eager", "flex", "sdpa")


def make_inputs(case: Case, mode: str, dtype, device="cuda", requires_grad=True, seed=0):
    """Random q/k/v and centred kernel features (shared over heads, as in the Orster module)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, std=1.0):
        x = torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * std
        return x.to(dtype).requires_grad_(requires_grad)

    c = case
    inp = dict(q=rnd(c.B, c.H, c.Nq, c.D), k=rnd(c.B, c.H, c.Nk, c.D), v=rnd(c.B, c.H, c.Nk, c.D),
               s_k=rnd(c.B, 1, c.Nk, c.Dk, std=0.3), u_k=rnd(c.B, 1, c.Nk, c.Dk, std=0.3))
    if mode == "pairwise":
        inp["s_q"] = rnd(c.B, 1, c.Nq, c.Dk, std=0.3)
        inp["u_q"] = rnd(c.B, 1, c.Nq, c.Dk, std=0.3)
    params = GaussianKernelParams(c.H, sigma_s=1.5, sigma_t=2.0, sigma_st=1.0, rho=0.3).to(device)
    return inp, params


def run_ours(inp, params, mode):
    return orster_attention(inp["q"], inp["k"], inp["v"], s_k=inp["s_k"], u_k=inp["u_k"],
                            s_q=inp.get("s_q"), u_q=inp.get("u_q"), params=params, mode=mode)


def run_eager(inp, params, mode):
    q, k, v = inp["q"], inp["k"], inp["v"]
    B, H, _, D = q.shape
    pf, kf, bias = _fold(params, inp.get("s_q"), inp.get("u_q"), inp["s_k"], inp["u_k"], mode, None,
                         B, H, k.shape[2], torch.float32)
    scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(D) - bias[:, :, None, :]
    if pf is not None:
        scores = scores + pf @ kf.to(pf.dtype).transpose(-1, -2)
    return torch.softmax(scores, -1).to(v.dtype) @ v


_flex_compiled = None


def run_flex(inp, params, mode):
    global _flex_compiled
    from torch.nn.attention.flex_attention import flex_attention
    if _flex_compiled is None:
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    q, k, v = inp["q"], inp["k"], inp["v"]
    B, H, _, D = q.shape
    pf, kf, bias = _fold(params, inp.get("s_q"), inp.get("u_q"), inp["s_k"], inp["u_k"], mode, None,
                         B, H, k.shape[2], torch.float32)
    bias = bias.detach().contiguous()  # Flex gets no bias gradient to compute
    scale = 1.0 / math.sqrt(D)
    if pf is not None:  # <q, k> * scale + <pf, kf> as one dot product with scale 1
        q = torch.cat([q * scale, pf.to(q.dtype)], -1)
        k = torch.cat([k, kf.expand(B, H, -1, -1).to(k.dtype)], -1)
        scale = 1.0

    def score_mod(score, b, h, qi, kj):
        return score - bias[b, h, kj]

    return _flex_compiled(q, k, v, score_mod=score_mod, scale=scale)


def run_sdpa(inp, params, mode):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(inp["q"], inp["k"], inp["v"])


RUNNERS = dict(ours=run_ours, eager=run_eager, flex=run_flex, sdpa=run_sdpa)


def eager_bytes(case: Case, dtype) -> int:
    """Rough peak memory of the eager formula (several fp32 score-sized buffers)."""
    return 4 * case.B * case.H * case.Nq * case.Nk * 4
