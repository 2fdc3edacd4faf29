"""Orster attention benchmarks: ours, the eager formula, FlexAttention and SDPA flash, side by side.

    pytest benchmarks/attention.py --benchmark-only     # forward+backward, bfloat16
    python -m benchmarks.attention --json report.json   # [--cases a,b] [--modes density,pairwise]
                                                        # [--methods ours,eager,flex,sdpa] [--no-check] [--budget-s S]

Every method computes the same scores:

- ``ours``: :func:`orster4d.ops.attention.orster_attention` (Triton), with learnable kernel scalars
  (a ``GaussianKernelParams``: the training case, split-precision dots).
- ``ours_frozen``: the same with the scalars detached (no gradient for them, like Flex's bias):
  the kernels round each dot's operands once.
- ``eager``: the formula written in plain PyTorch, materialising the ``Nq x Nk`` scores.
- ``flex``: ``torch.nn.attention.flex_attention`` (compiled). The Gaussian term is supplied the
  strongest way Flex allows: ``pf``/``kf`` are concatenated onto q/k (pairwise mode) and the
  per-key bias is added by ``score_mod``. Short query sequences (< 128, the temporal shapes: 16
  or 24 frames for each of 32768 positions) are packed (:func:`run_flex`): consecutive sequences
  laid end to end into sequences of whole 128-blocks (8 x 16 or 16 x 24 queries), with a
  block-diagonal ``BlockMask`` keeping each query to its own keys. Unpacked, Flex would pick its
  decoding kernel, whose launch grid puts batch x heads (32768 x 8) on an axis CUDA caps at 65535
  blocks and which assumes whole key blocks, and its general kernel would pad every sequence to a
  128 x 128 block (1/64 of the work useful; packed: 1/8). Where batch x heads still exceeds 65535
  the batch is cut into equal chunks under that limit, one compiled call each, outputs concatenated.
- ``sdpa``: ``scaled_dot_product_attention`` with the flash backend on plain attention of the
  same q/k/v shape (no kernel term): the speed-of-light reference.

The benches first check every method's output against a float64 evaluation of the same scores on
the first (batch, head) slice, in the same run (SDPA, which computes plain attention, against
plain attention). The report holds, per shape and mode: milliseconds forward and
forward+backward of each method, TFLOP/s counting each method's own matmul FLOPs, peak extra
memory of forward+backward, and the error of ours in bfloat16 and float32 against a float64
evaluation (output and every gradient, relative to the largest reference magnitude).
Without CUDA the benches skip.
"""
from __future__ import annotations

import json
import math
import sys
import time
import traceback
from dataclasses import dataclass

import pytest
import torch

from benchmarks.timing import peak_extra_mb, python_version, report_parser, write_json

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
METHODS = ("ours", "ours_frozen", "eager", "flex", "sdpa")


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


def run_ours_frozen(inp, params, mode):
    """Ours with the kernel's scalars frozen (no gradient for them, as FlexAttention computes none):
    the kernels then skip their split-precision dots."""
    scal = tuple(t.detach() for t in params())
    return orster_attention(inp["q"], inp["k"], inp["v"], s_k=inp["s_k"], u_k=inp["u_k"],
                            s_q=inp.get("s_q"), u_q=inp.get("u_q"), params=scal, mode=mode)


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
FLEX_GRID_LIMIT = 65535  # blocks on a CUDA launch grid's y or z axis
FLEX_DECODING_BELOW = 128  # query lengths for which Flex would choose its decoding kernel
FLEX_BLOCK = 128  # Flex's default block size (queries and keys), the unit of its BlockMask


def flex_batch_chunk(B: int, H: int, limit: int) -> int:
    """The largest divisor ``d`` of ``B`` with ``d * H <= limit``: the batch size of one Flex call."""
    if H > limit:
        raise ValueError(f"{H} heads exceed the grid limit {limit}")
    return max(d for d in range(1, min(B, limit // H) + 1) if B % d == 0)


def _bias_score_mod(bias):
    def score_mod(score, b, h, qi, kj):
        return score - bias[b, h, kj]

    return score_mod


def flex_pack_count(B: int, Lq: int, block: int) -> int:
    """How many short sequences one packed Flex sequence holds: the fewest ``P`` with ``P * Lq`` a
    multiple of ``block`` (whole Flex blocks, and at least one block of queries, so never the
    decoding kernel), but no more than ``B``."""
    if Lq <= 0 or block <= 0:
        raise ValueError(f"query length and block size must be > 0, got {Lq} and {block}")
    return max(1, min(B, block // math.gcd(Lq, block)))


def _pack(x: torch.Tensor, P: int) -> torch.Tensor:
    """``[B, H, L, ...]`` -> ``[B / P, H, P * L, ...]``: P consecutive sequences laid end to end."""
    B, H, L = x.shape[:3]
    x = x.reshape(B // P, P, H, L, *x.shape[3:]).transpose(1, 2)
    return x.reshape(B // P, H, P * L, *x.shape[4:])


def _unpack(x: torch.Tensor, P: int) -> torch.Tensor:
    """The inverse of :func:`_pack`."""
    (Bp, H, PL), tail = x.shape[:3], x.shape[3:]
    x = x.reshape(Bp, H, P, PL // P, *tail).transpose(1, 2)
    return x.reshape(Bp * P, H, PL // P, *tail)


def _raise_recompile_limit(n: int) -> None:
    """Let Dynamo keep ``n`` compiled versions of one function (the option's name varies by torch)."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), n))
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4 * n)


def run_flex(inp, params, mode, compiled: bool = True):
    """FlexAttention on the same scores (``compiled=False``: the uncompiled path, for CPU checks).

    Queries shorter than FLEX_DECODING_BELOW (the temporal shapes: 16 or 24 frames for each of
    32768 positions) are packed: ``P`` sequences laid end to end make one of ``P * Nq`` queries and
    ``P * Nk`` keys (:func:`flex_pack_count`; the batch padded with zero sequences to a multiple of
    ``P``), and a block-diagonal ``BlockMask`` keeps each query to its own sequence's keys. Flex
    then runs its general kernel on whole blocks, with far fewer batch x heads entries, instead of
    padding each 16-long sequence to a 128-long block (1/64 of the work useful; packing: 1/8).
    """
    global _flex_compiled
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    if compiled and _flex_compiled is None:
        # one compiled graph per case (shapes, masks and the score_mod's bias differ): past the
        # default limit of 8 Dynamo would silently run flex_attention uncompiled, i.e. its unfused
        # path that materialises every score, and time that instead
        _raise_recompile_limit(256)
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    flex = _flex_compiled if compiled else flex_attention
    q, k, v = inp["q"], inp["k"], inp["v"]
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    pf, kf, bias = _fold(params, inp.get("s_q"), inp.get("u_q"), inp["s_k"], inp["u_k"], mode, None,
                         B, H, Lk, torch.float32)
    bias = bias.detach().expand(B, H, Lk)  # Flex gets no bias gradient to compute
    scale = 1.0 / math.sqrt(D)
    if pf is not None:  # <q, k> * scale + <pf, kf> as one dot product with scale 1
        q = torch.cat([q * scale, pf.to(q.dtype)], -1)
        k = torch.cat([k, kf.expand(B, H, -1, -1).to(k.dtype)], -1)
        scale = 1.0

    block_mask, P = None, 1
    if Lq < FLEX_DECODING_BELOW:
        P = flex_pack_count(B, Lq, FLEX_BLOCK)
        pad = -B % P
        if pad:
            q, k, v, bias = (torch.cat([x, x.new_zeros(pad, *x.shape[1:])]) for x in (q, k, v, bias))
        q, k, v, bias = (_pack(x, P) for x in (q, k, v, bias))

        def same_sequence(b, h, qi, kj):
            return qi // Lq == kj // Lk

        block_mask = create_block_mask(same_sequence, None, None, P * Lq, P * Lk, device=q.device,
                                       BLOCK_SIZE=FLEX_BLOCK)
    bias = bias.contiguous()
    opts = {"FORCE_USE_FLEX_ATTENTION": True} if q.shape[2] < FLEX_DECODING_BELOW else None
    Bf = q.shape[0]
    step = flex_batch_chunk(Bf, H, FLEX_GRID_LIMIT) if Bf * H > FLEX_GRID_LIMIT else Bf
    outs = [flex(q[b:b + step], k[b:b + step], v[b:b + step], score_mod=_bias_score_mod(bias[b:b + step]),
                 block_mask=block_mask, scale=scale, kernel_options=opts) for b in range(0, Bf, step)]
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return _unpack(out, P)[:B] if P > 1 else out


def run_sdpa(inp, params, mode):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(inp["q"], inp["k"], inp["v"])


RUNNERS = dict(ours=run_ours, ours_frozen=run_ours_frozen, eager=run_eager, flex=run_flex, sdpa=run_sdpa)


def eager_bytes(case: Case, dtype) -> int:
    """Rough peak memory of the eager formula (several fp32 score-sized buffers)."""
    return 4 * case.B * case.H * case.Nq * case.Nk * 4


# ------------------------------------------------------------------ pytest-benchmark
def _reference_slice(inp, params, mode, plain):
    """float64 output of the first (batch, head) for the first 4096 queries."""
    sl = {k: v.detach()[:1, :1, :4096].double() if k in ("q", "s_q", "u_q") else v.detach()[:1, :1].double()
          for k, v in inp.items()}
    if plain:
        return orster_attention(sl["q"], sl["k"], sl["v"], backend="eager")
    scal = tuple(t.detach()[:1].double() for t in params())
    return orster_attention(sl["q"], sl["k"], sl["v"], s_k=sl["s_k"], u_k=sl["u_k"], s_q=sl.get("s_q"),
                            u_q=sl.get("u_q"), params=scal, mode=mode, backend="eager")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the attention benchmark needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["pairwise", "density"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_attention_fwd_bwd(benchmark, case, mode, method):
    if method == "eager" and eager_bytes(case, torch.bfloat16) > 40e9:
        pytest.skip("the eager formula's score matrices do not fit in device memory")
    if method == "sdpa" and mode == "density":
        pytest.skip("SDPA computes plain attention: timed once, under pairwise")
    inp, params = make_inputs(case, mode, torch.bfloat16)
    fn = RUNNERS[method]
    try:
        out = fn(inp, params, mode)
    except torch.OutOfMemoryError:
        pytest.skip(f"{method} runs out of device memory at this shape")
    ref = _reference_slice(inp, params, mode, plain=method == "sdpa")
    got = out.detach()[:1, :1, :4096].double()
    assert (got - ref).abs().max() <= 2e-2 * ref.abs().max(), f"{method} disagrees with the float64 reference"
    dout = torch.randn_like(out)
    del out
    leaves = list(inp.values()) + list(params.parameters())

    def step():
        for t in leaves:
            t.grad = None
        fn(inp, params, mode).backward(dout)
        torch.cuda.synchronize()

    benchmark.extra_info.update(case=case.name, mode=mode, method=method,
                                gflop_fwd=case.flops(mode if method != "sdpa" else "density") / 1e9)
    benchmark.pedantic(step, warmup_rounds=2, rounds=5, iterations=1)


# ------------------------------------------------------------------ JSON report
def _grads_of(inp, params):
    return [t for t in inp.values()] + list(params.parameters())


def time_method(fn, inp, params, mode, backward: bool):
    import triton.testing as tt
    leaves = _grads_of(inp, params)
    out = fn(inp, params, mode)
    dout = torch.randn_like(out)

    def step():
        o = fn(inp, params, mode)
        if backward:
            o.backward(dout)

    if backward:
        return tt.do_bench(step, grad_to_none=leaves, warmup=25, rep=100)
    with torch.no_grad():
        return tt.do_bench(step, warmup=25, rep=100)


def peak_extra_mb_fwd_bwd(fn, inp, params, mode) -> float:
    """Peak extra GPU memory (MiB) of one forward+backward, gradients included (cleared before and after)."""
    for t in _grads_of(inp, params):
        t.grad = None

    def fwd_bwd():
        o = fn(inp, params, mode)
        o.backward(torch.ones_like(o))

    peak = peak_extra_mb(fwd_bwd)
    for t in _grads_of(inp, params):
        t.grad = None
    return peak


def check_correctness(case, mode, dtype):
    """Errors of ours (dtype) against the float64 eager evaluation of the same inputs: output and
    gradients of every input and of the four per-head scalars, each relative to the largest
    reference entry."""
    inp, params = make_inputs(case, mode, dtype, seed=1)
    scal = tuple(t.detach().clone().requires_grad_() for t in params())
    ref_inp = {k: v.detach().double().requires_grad_() for k, v in inp.items()}
    ref_scal = tuple(t.detach().double().requires_grad_() for t in scal)

    def run(i, p, backend):
        return orster_attention(i["q"], i["k"], i["v"], s_k=i["s_k"], u_k=i["u_k"], s_q=i.get("s_q"),
                                u_q=i.get("u_q"), params=p, mode=mode, backend=backend)

    out = run(inp, scal, "triton")
    dout = torch.randn(out.shape, device="cuda", dtype=torch.float64)
    out.backward(dout.to(out.dtype))
    ref = run(ref_inp, ref_scal, "eager")
    ref.backward(dout)

    def rel(x, r):
        return ((x.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()

    res = {"out": rel(out, ref)}
    for name in inp:
        res["d" + name] = rel(inp[name].grad, ref_inp[name].grad)
    for name, p, pr in zip(("sigma_s", "sigma_t", "sigma_st", "alpha"), scal, ref_scal):
        res["d" + name] = rel(p.grad, pr.grad)
    return res


def main(argv=None):
    ap = report_parser("GPU report of the Orster attention: speed, memory and correctness at the benchmark shapes")
    ap.add_argument("--cases", default=",".join(c.name for c in CASES))
    ap.add_argument("--modes", default="pairwise,density")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cases after this")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.attention: no CUDA device; nothing to report", file=sys.stderr)
        return 1
    import triton
    t_start = time.time()
    gpu = torch.cuda.get_device_name()
    report = dict(gpu=gpu, torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                  python=python_version(), dtype_timed="bfloat16",
                  notes=("ms from triton.testing.do_bench; TFLOP/s count each method's own matmul FLOPs "
                         "(sdpa: plain attention, no kernel term); peak_extra_MB = peak allocated during "
                         "forward+backward minus allocated before (includes the gradients); errors are "
                         "max|ours - ref| / max|ref| against float64; flex: the general kernel is forced for "
                         f"query lengths < {FLEX_DECODING_BELOW} and the batch is cut into equal chunks where "
                         f"batch x heads > {FLEX_GRID_LIMIT}"),
                  cases=[])
    want = set(args.cases.split(","))
    methods = args.methods.split(",")
    for case in CASES:
        if case.name not in want:
            continue
        for mode in args.modes.split(","):
            if time.time() - t_start > args.budget_s:
                print(f"budget reached, skipping {case.name}/{mode}", flush=True)
                continue
            entry = dict(case=case.name, mode=mode, shape=dict(B=case.B, H=case.H, Nq=case.Nq, Nk=case.Nk,
                                                               D=case.D, Dk=case.Dk), methods={})
            inp, params = make_inputs(case, mode, torch.bfloat16)
            for m in methods:
                if m == "sdpa" and mode == "density" and "pairwise" in args.modes:
                    continue  # same plain-attention run as in pairwise mode
                r = {}
                if m == "eager" and eager_bytes(case, torch.bfloat16) > 40e9:
                    r["skipped"] = "score matrix too large for device memory"
                else:
                    try:
                        fl = case.flops(mode if m in ("ours", "ours_frozen", "eager", "flex") else "density")
                        flb = case.flops(mode if m in ("ours", "ours_frozen", "eager", "flex") else "density",
                                         backward=True)
                        r["ms_fwd"] = time_method(RUNNERS[m], inp, params, mode, False)
                        r["ms_fwd_bwd"] = time_method(RUNNERS[m], inp, params, mode, True)
                        r["tflops_fwd"] = fl / r["ms_fwd"] * 1e-9
                        r["tflops_bwd"] = flb / max(r["ms_fwd_bwd"] - r["ms_fwd"], 1e-6) * 1e-9
                        r["peak_extra_MB"] = peak_extra_mb_fwd_bwd(RUNNERS[m], inp, params, mode)
                    except Exception as e:  # noqa: BLE001 - record why a method does not run
                        r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
                        if not isinstance(e, torch.OutOfMemoryError):
                            traceback.print_exc()
                    torch.cuda.empty_cache()
                entry["methods"][m] = r
                print(case.name, mode, m, json.dumps(r), flush=True)
            del inp, params
            torch.cuda.empty_cache()
            if not args.no_check:
                entry["errors"] = {}
                for dt in (torch.bfloat16, torch.float32):
                    try:
                        entry["errors"][str(dt).split(".")[-1]] = check_correctness(case, mode, dt)
                    except Exception as e:  # noqa: BLE001
                        entry["errors"][str(dt).split(".")[-1]] = {"error": f"{type(e).__name__}: {e}"[:300]}
                    torch.cuda.empty_cache()
                print(case.name, mode, "errors", json.dumps(entry["errors"]), flush=True)
            report["cases"].append(entry)
            write_json(args.json, report)
    report["wall_s"] = time.time() - t_start
    write_json(args.json, report)
    print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
