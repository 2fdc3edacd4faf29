"""Float64 emulation of the Orster attention kernels' roundings: what each one does to the gradient
of the Gaussian kernel's four scalars.

    python -m benchmarks.attention_precision --json report.json [--seeds 48] [--dtype bfloat16]

For random inputs of the bf16 CUDA test's shapes (``B=2, H=2``, 1024 queries, 512 keys, ``D=32``,
``D_k=8``, pairwise mode; the inputs themselves rounded to ``--dtype``) it evaluates the
kernels' backward formulas in float64 (``P``, ``dP = do v^T``, ``delta = <o, do>``,
``dS = P (dP - delta)``, ``dpf = dS kf``, ``dbias = -colsum dS``; the scalars' gradients by
autograd through the fold) with one rounding at a time switched on:

- ``pf``: ``pf`` rounded to the dtype in the scores (the kernels before the split);
- ``P``: ``P`` rounded to the dtype in the forward's ``P V`` (so in ``o`` and ``delta``);
- ``pf+P``: both, as the kernels of commit c550824 did;
- ``split``: ``pf``, ``P`` and ``dS`` (in ``dpf``) each as the sum of two rounded halves, as the
  kernels now do when the scalars take a gradient.

The error of a variant is ``max_theta |g - g_exact| / max |g_exact|`` over the four scalars
(``g_exact``: no rounding beyond the inputs'). CPU only; about a second per draw.
"""
from __future__ import annotations

import sys

import torch

from benchmarks.timing import python_version, report_parser, write_json
from orster4d.ops.attention import _fold

LOG2E = 1.4426950408889634
VARIANTS = ("pf", "P", "pf+P", "split")


def _round(x: torch.Tensor, dtype, split: bool = False) -> torch.Tensor:
    hi = x.to(dtype).double()
    return hi + (x - hi).to(dtype).double() if split else hi


def scalar_grad_errors(seed: int, dtype=torch.bfloat16, B=2, H=2, Nq=1024, Nk=512, D=32, Dk=8) -> dict:
    """``{variant: relative error}`` of the scalars' gradient for one random draw."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0):
        return (torch.randn(*shape, generator=g) * std).to(dtype).double()

    q, k, v = rnd(B, H, Nq, D), rnd(B, H, Nk, D), rnd(B, H, Nk, D)
    s_k, u_k, s_q, u_q = rnd(B, 1, Nk, Dk, std=0.7), rnd(B, H, Nk, Dk, std=0.7), rnd(B, H, Nq, Dk, std=0.7), \
        rnd(B, 1, Nq, Dk, std=0.7)
    do = rnd(B, H, Nq, D)
    ss, st, sst = (torch.rand(H, generator=g, dtype=torch.float64) + 0.6 for _ in range(3))
    alpha = (torch.rand(H, generator=g, dtype=torch.float64) * 2 - 1) * 0.9 * sst ** 2 / (ss * st)
    scal = tuple(t.requires_grad_() for t in (ss, st, sst, alpha))
    pf, kf, bias = _fold(scal, s_q, u_q, s_k, u_k, "pairwise", None, B, H, Nk, torch.float64)
    kf = kf.expand(B, H, Nk, -1)

    def grads(round_pf: bool, round_p: bool, split: bool):
        p_ = pf.detach()
        if round_pf or split:
            p_ = _round(p_ * LOG2E, dtype, split) / LOG2E
        P = torch.softmax(q @ k.transpose(-1, -2) / D ** 0.5 + p_ @ kf.transpose(-1, -2) - bias.detach()[..., None, :],
                          -1)
        o = (_round(P, dtype, split) if (round_p or split) else P) @ v
        dS = P * (do @ v.transpose(-1, -2) - (o * do).sum(-1, keepdim=True))
        dpf = (_round(dS, dtype, True) if split else dS) @ kf
        return torch.autograd.grad([pf, bias], scal, [dpf, -dS.sum(-2)], retain_graph=True)

    exact = grads(False, False, False)
    flags = {"pf": (True, False, False), "P": (False, True, False), "pf+P": (True, True, False),
             "split": (False, False, True)}
    out = {}
    for name, f in flags.items():
        got = grads(*f)
        out[name] = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(got, exact))
    return out


def main(argv=None) -> int:
    p = report_parser("Float64 emulation of the attention kernels' roundings (the kernel scalars' gradient)")
    p.add_argument("--seeds", type=int, default=48)
    p.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    rows = {}
    for seed in range(args.seeds):
        rows[seed] = scalar_grad_errors(seed, dtype)
        print(seed, " ".join(f"{k} {v:.4f}" for k, v in rows[seed].items()), flush=True)
    summary = {v: {"max": max(r[v] for r in rows.values()),
                   "above_3pct": sum(r[v] > 0.03 for r in rows.values()),
                   "above_1pct": sum(r[v] > 0.01 for r in rows.values())} for v in VARIANTS}
    write_json(args.json, {"device": "cpu (float64 emulation)", "torch": torch.__version__, "python": python_version(),
                           "dtype": args.dtype, "seeds": args.seeds, "shape": dict(B=2, H=2, Nq=1024, Nk=512, D=32, Dk=8),
                           "per_seed": rows, "summary": summary})
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
