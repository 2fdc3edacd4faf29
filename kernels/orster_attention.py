"""Triton kernels of the Orster Gaussian-kernel attention.

The kernels compute softmax attention over *augmented* scores, in base-2 units:

    S2_ij = qk_scale * <q_i, k_j> + log2(e) * <pf_i, kf_j> - bias_j     (qk_scale = scale * log2(e))
    out_i = sum_j softmax2_j(S2_ij) * v_j

``pf`` (query-side kernel features, already multiplied by the quadratic-form coefficients), ``kf`` (key-side kernel features) and ``bias`` (the key's half quadratic form times
log2(e), ``+inf`` on padded keys) are prepared by :mod:`orster4d.ops.attention`; see ``docs/kernels.md``
for how ``-1/2 Qf(s_i - s_j, u_i - u_j)`` expands into this form. Every tensor is contiguous and
flattened over (batch, head): ``q [BH, Nq, D]``, ``k [BH, Nk, D]``, ``v [BH, Nk, DV]``,
``pf [BH, Nq, DF]`` (float32, natural units: scaled by log2(e) once per query tile), ``kf [BH / KF_HDIV,
Nk, DF]`` (``KF_HDIV = H`` when every head shares the key features), ``bias [BH, Nk]`` (float32),
``lse``/``delta [BH, Nq]`` (float32). Grids are one-dimensional (``tiles per head x heads``) so
that hundreds of thousands of heads fit.

Two tilings share the code:
- ``PACKED = False``: one program per (query block, batch-head); the key loop walks all key blocks.
- ``PACKED = True`` (short sequences, the temporal regime): one program owns ``G`` consecutive
  batch-heads whose ``G * N`` rows fit in one tile; a block-diagonal mask keeps the heads apart,
  so a tile is filled with useful rows instead of mostly padding.

Precision of the kernel-feature dots. The kernel's scalars take their gradient as a sum over every
(query, key) pair of terms that largely cancel, so with 16-bit inputs whose scalars take a gradient
(``SPLIT``, set by the caller) three dots run on two 16-bit halves of their float32 operand,
``x = hi + lo`` (``hi`` its rounding, ``lo`` the rounding of the remainder; :func:`_split`), which
keeps about 16 mantissa bits on 16-bit tensor cores:

- ``<pf, kf>`` in the scores, forward and backward alike (``kf`` holds 16-bit inputs exactly);
  ``pf`` rounded once shifts every score of a query by up to ``2^-9`` of its Gaussian term;
- ``dpf = dS kf``;
- the forward's ``P V`` when a backward follows (``P_SPLIT``): the backward's
  ``delta_i = <o_i, do_i>`` must equal ``sum_j P_ij dP_ij`` for a row's ``dS`` to sum to zero.

In a float64 emulation of bf16 inputs (1024 x 512 tokens, ``D_k`` 8) the first and the third
rounding put the scalars' gradient up to 12% and 52% of its scale off; with the splits, 0.04%
(``benchmarks/attention_precision.py``, 200 draws).
``dkf = dS^T pf`` stays one TF32 dot: it feeds only the key features' own gradient, where nothing
cancels. Without ``SPLIT`` each operand is rounded once to the input dtype, as ``q k^T``'s are;
float32 inputs use IEEE float32 dots and no split.

The file reads top to bottom: helpers (tile rows, loads, scores), forward, backward preprocess,
backward (dK/dV, then dQ).
Only portable ``tl`` APIs are used (pointer arithmetic, no tensor descriptors).
"""
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _tile_rows(pid_blk, pid_bh, N, G, BH, BLOCK: tl.constexpr, PACKED: tl.constexpr):
    """Batch-head, position, validity and head-group id of a tile's rows."""
    r = tl.arange(0, BLOCK)
    if PACKED:
        grp = r // N
        bh = pid_bh * G + grp
        n = r - grp * N
        valid = (grp < G) & (bh < BH)
    else:
        grp = tl.zeros([BLOCK], dtype=tl.int32)
        bh = pid_bh + grp
        n = pid_blk * BLOCK + r
        valid = n < N
    return bh, n, valid, grp


@triton.jit
def _load(ptr, bh, n, N, valid, WIDTH: tl.constexpr, EVEN: tl.constexpr):
    """Rows ``bh * N + n`` of a ``[*, N, WIDTH]`` tensor (masked unless the tile is full)."""
    offs = (bh.to(tl.int64) * N + n)[:, None] * WIDTH + tl.arange(0, WIDTH)[None, :]
    if EVEN:
        x = tl.load(ptr + offs)
    else:
        x = tl.load(ptr + offs, mask=valid[:, None], other=0.0)
    return x


@triton.jit
def _store(ptr, x, bh, n, N, valid, WIDTH: tl.constexpr, EVEN: tl.constexpr):
    offs = (bh.to(tl.int64) * N + n)[:, None] * WIDTH + tl.arange(0, WIDTH)[None, :]
    if EVEN:
        tl.store(ptr + offs, x.to(ptr.dtype.element_ty))
    else:
        tl.store(ptr + offs, x.to(ptr.dtype.element_ty), mask=valid[:, None])


@triton.jit
def _load_vec(ptr, bh, n, N, valid, other, EVEN: tl.constexpr):
    offs = bh.to(tl.int64) * N + n
    if EVEN:
        x = tl.load(ptr + offs)
    else:
        x = tl.load(ptr + offs, mask=valid, other=other)
    return x


@triton.jit
def _load_keys(K, V, KF, BIAS, bh, n, N, valid, KF_HDIV,
               D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
               HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN: tl.constexpr):
    """A key tile's ``k [BN, D]``, ``v [BN, DV]``, ``kf [BN, DF]`` (read at batch-head
    ``bh // KF_HDIV``; ``k`` stands in without features) and ``bias [BN]`` (``valid`` stands in
    without a bias)."""
    k = _load(K, bh, n, N, valid, D, EVEN)
    v = _load(V, bh, n, N, valid, DV, EVEN)
    kf = k
    bias = valid
    if HAS_FEAT:
        kf = _load(KF, bh // KF_HDIV, n, N, valid, DF, EVEN)
    if HAS_BIAS:
        bias = _load_vec(BIAS, bh, n, N, valid, 0.0, EVEN)
    return k, v, kf, bias


@triton.jit
def _load_query_feats(PF, q, bh, n, N, valid,
                      DF: tl.constexpr, HAS_FEAT: tl.constexpr, SPLIT: tl.constexpr, EVEN: tl.constexpr):
    """A query tile's ``pf [BM, DF]`` times log2(e) in float32, and its two halves ``hi, lo`` in
    q's dtype (:func:`_split`); ``q`` stands in for all three without features."""
    pf = q
    hi = q
    lo = q
    if HAS_FEAT:
        pf = _load(PF, bh, n, N, valid, DF, EVEN) * 1.4426950408889634
        hi, lo = _split(pf, q.dtype, SPLIT)
    return pf, hi, lo


@triton.jit
def _split(x, dtype: tl.constexpr, SPLIT: tl.constexpr):
    """``x`` (float32) as ``hi + lo`` in ``dtype`` with ``SPLIT``: ``hi`` its rounding, ``lo`` the
    rounding of ``x - hi``; without ``SPLIT``, its rounding twice (``lo`` unused)."""
    hi = x.to(dtype)
    if SPLIT:
        lo = (x - hi.to(tl.float32)).to(dtype)
    else:
        lo = hi
    return hi, lo


@triton.jit
def _split_dot(a_hi, a_lo, b, SPLIT: tl.constexpr, PREC: tl.constexpr):
    """``a @ b`` for ``a = a_hi + a_lo`` (see :func:`_split`): two dots with ``SPLIT``, else one."""
    out = tl.dot(a_hi, b, input_precision=PREC)
    if SPLIT:
        out += tl.dot(a_lo, b, input_precision=PREC)
    return out


@triton.jit
def _load_grad_rows(Q, DO, LSE, DELTA, bh, n, N, valid,
                    D: tl.constexpr, DV: tl.constexpr, EVEN: tl.constexpr):
    """A query tile's backward inputs: ``q [BM, D]``, ``do [BM, DV]``, the base-2 log-sum-exp
    ``lse [BM]`` and ``delta [BM]``."""
    q = _load(Q, bh, n, N, valid, D, EVEN)
    do = _load(DO, bh, n, N, valid, DV, EVEN)
    lse = _load_vec(LSE, bh, n, N, valid, float("inf"), EVEN)
    delta = _load_vec(DELTA, bh, n, N, valid, 0.0, EVEN)
    return q, do, lse, delta


@triton.jit
def _scores(q, k, pf_hi, pf_lo, kf, bias, qk_scale,
            HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr):
    """Base-2 augmented score tile ``[BM, BN]`` from a query tile and a key tile."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
    if HAS_FEAT:
        s += _split_dot(pf_hi, pf_lo, tl.trans(kf), SPLIT, PREC)
    if HAS_BIAS:
        s -= bias[None, :]
    return s


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------
@triton.jit
def attn_fwd(Q, K, V, PF, KF, BIAS, O, LSE,
             Nq, Nk, G, BH, n_tiles, KF_HDIV, qk_scale,
             D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
             HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, P_SPLIT: tl.constexpr,
             PACKED: tl.constexpr, EVEN: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0)
    pid_bh = pid // n_tiles
    pid_m = pid - pid_bh * n_tiles

    q_bh, q_n, q_valid, q_grp = _tile_rows(pid_m, pid_bh, Nq, G, BH, BLOCK_M, PACKED)
    q = _load(Q, q_bh, q_n, Nq, q_valid, D, EVEN)
    _, pf_hi, pf_lo = _load_query_feats(PF, q, q_bh, q_n, Nq, q_valid, DF, HAS_FEAT, SPLIT, EVEN)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, DV], dtype=tl.float32)

    if PACKED:
        n_blocks = 1
    else:
        n_blocks = tl.cdiv(Nk, BLOCK_N)
    for jb in range(0, n_blocks):
        k_bh, k_n, k_valid, k_grp = _tile_rows(jb, pid_bh, Nk, G, BH, BLOCK_N, PACKED)
        k, v, kf, bias = _load_keys(K, V, KF, BIAS, k_bh, k_n, Nk, k_valid, KF_HDIV,
                                    D, DF, DV, HAS_FEAT, HAS_BIAS, EVEN)
        s = _scores(q, k, pf_hi, pf_lo, kf, bias, qk_scale, HAS_FEAT, HAS_BIAS, SPLIT, PREC)
        if PACKED:
            s = tl.where(k_valid[None, :] & (q_grp[:, None] == k_grp[None, :]), s, float("-inf"))
        elif not EVEN:
            s = tl.where(k_valid[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)   # rows with no unpadded key so far
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        p_hi, p_lo = _split(p, v.dtype, P_SPLIT)
        acc = acc * alpha[:, None] + _split_dot(p_hi, p_lo, v, P_SPLIT, PREC)
        m_i = m_new

    empty = l_i == 0.0                       # every key of the row is padded: output 0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), m_i + tl.math.log2(l_safe))
    _store(O, out, q_bh, q_n, Nq, q_valid, DV, EVEN)
    offs = q_bh.to(tl.int64) * Nq + q_n
    if EVEN:
        tl.store(LSE + offs, lse)
    else:
        tl.store(LSE + offs, lse, mask=q_valid)


# --------------------------------------------------------------------------------------------
# Backward preprocess: delta_i = <o_i, do_i>
# --------------------------------------------------------------------------------------------
@triton.jit
def attn_bwd_preprocess(O, DO, DELTA, n_rows, DV: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    offs_v = tl.arange(0, DV)
    valid = rows < n_rows
    o = tl.load(O + rows[:, None] * DV + offs_v[None, :], mask=valid[:, None], other=0.0)
    do = tl.load(DO + rows[:, None] * DV + offs_v[None, :], mask=valid[:, None], other=0.0)
    tl.store(DELTA + rows, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=valid)


# --------------------------------------------------------------------------------------------
# Backward
#   dS_ij = P_ij * (dP_ij - delta_i) is the gradient of the natural-unit score;
#   dq = scale dS k,  dk = scale dS^T q,  dv = P^T dO,
#   dpf = dS kf,  dkf = dS^T (log2e pf) / log2e,  dbias = -colsum(dS) / log2e.
#   dkf is written per batch-head (float32); heads that share kf are summed by the caller.
# --------------------------------------------------------------------------------------------
@triton.jit
def attn_bwd_dkdv(Q, K, V, PF, KF, BIAS, DO, LSE, DELTA,
                  DQ, DK, DV_, DPF, DKF, DBIAS,
                  Nq, Nk, G, BH, n_tiles, KF_HDIV, qk_scale, scale,
                  D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
                  HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, PACKED: tl.constexpr,
                  EVEN: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One program per key tile; loops over query tiles. With PACKED the single query tile
    belongs to this program alone, so dQ (and dpf) are finished here too."""
    pid = tl.program_id(0)
    pid_bh = pid // n_tiles
    pid_n = pid - pid_bh * n_tiles

    k_bh, k_n, k_valid, k_grp = _tile_rows(pid_n, pid_bh, Nk, G, BH, BLOCK_N, PACKED)
    k, v, kf, bias = _load_keys(K, V, KF, BIAS, k_bh, k_n, Nk, k_valid, KF_HDIV,
                                D, DF, DV, HAS_FEAT, HAS_BIAS, EVEN)

    dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, DV], dtype=tl.float32)
    dkf = tl.zeros([BLOCK_N, DF], dtype=tl.float32)
    dbias = tl.zeros([BLOCK_N], dtype=tl.float32)

    if PACKED:
        n_blocks = 1
    else:
        n_blocks = tl.cdiv(Nq, BLOCK_M)
    for ib in range(0, n_blocks):
        q_bh, q_n, q_valid, q_grp = _tile_rows(ib, pid_bh, Nq, G, BH, BLOCK_M, PACKED)
        q, do, lse, delta = _load_grad_rows(Q, DO, LSE, DELTA, q_bh, q_n, Nq, q_valid, D, DV, EVEN)
        pf, pf_hi, pf_lo = _load_query_feats(PF, q, q_bh, q_n, Nq, q_valid, DF, HAS_FEAT, SPLIT, EVEN)
        # transposed tiles [BN, BM]: keys along rows, as this program accumulates per key
        sT = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
        if HAS_FEAT:  # as the forward's scores
            sT += tl.dot(kf, tl.trans(pf_hi), input_precision=PREC)
            if SPLIT:
                sT += tl.dot(kf, tl.trans(pf_lo), input_precision=PREC)
        if HAS_BIAS:
            sT -= bias[:, None]
        lse_safe = tl.where(lse == float("-inf"), float("inf"), lse)
        pT = tl.math.exp2(sT - lse_safe[None, :])
        if PACKED:
            pT = tl.where(k_valid[:, None] & q_valid[None, :] & (k_grp[:, None] == q_grp[None, :]), pT, 0.0)
        elif not EVEN:
            pT = tl.where(k_valid[:, None] & q_valid[None, :], pT, 0.0)
        dv += tl.dot(pT.to(do.dtype), do, input_precision=PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=PREC)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q, input_precision=PREC)
        if HAS_FEAT:
            dkf += tl.dot(dsT, pf, input_precision=PREC)
        if HAS_BIAS:
            dbias += tl.sum(dsT, 1)
        if PACKED:
            ds = tl.trans(dsT)
            dq = tl.dot(ds.to(k.dtype), k, input_precision=PREC) * scale
            _store(DQ, dq, q_bh, q_n, Nq, q_valid, D, False)
            if HAS_FEAT:
                ds_hi, ds_lo = _split(ds, kf.dtype, SPLIT)
                dpf = _split_dot(ds_hi, ds_lo, kf, SPLIT, PREC)
                _store(DPF, dpf, q_bh, q_n, Nq, q_valid, DF, False)

    _store(DK, dk * scale, k_bh, k_n, Nk, k_valid, D, EVEN)
    _store(DV_, dv, k_bh, k_n, Nk, k_valid, DV, EVEN)
    if HAS_FEAT:
        _store(DKF, dkf * (1.0 / 1.4426950408889634), k_bh, k_n, Nk, k_valid, DF, EVEN)
    if HAS_BIAS:
        offs = k_bh.to(tl.int64) * Nk + k_n
        tl.store(DBIAS + offs, -dbias * (1.0 / 1.4426950408889634), mask=k_valid)


@triton.jit
def attn_bwd_dq(Q, K, V, PF, KF, BIAS, DO, LSE, DELTA, DQ, DPF,
                Nq, Nk, BH, n_tiles, KF_HDIV, qk_scale, scale,
                D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
                HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, EVEN: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One program per query tile; loops over key tiles (unpacked tiling only)."""
    pid = tl.program_id(0)
    pid_bh = pid // n_tiles
    pid_m = pid - pid_bh * n_tiles

    q_bh, q_n, q_valid, q_grp = _tile_rows(pid_m, pid_bh, Nq, 1, BH, BLOCK_M, False)
    q, do, lse, delta = _load_grad_rows(Q, DO, LSE, DELTA, q_bh, q_n, Nq, q_valid, D, DV, EVEN)
    lse_safe = tl.where(lse == float("-inf"), float("inf"), lse)
    _, pf_hi, pf_lo = _load_query_feats(PF, q, q_bh, q_n, Nq, q_valid, DF, HAS_FEAT, SPLIT, EVEN)

    dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    dpf = tl.zeros([BLOCK_M, DF], dtype=tl.float32)
    for jb in range(0, tl.cdiv(Nk, BLOCK_N)):
        k_bh, k_n, k_valid, k_grp = _tile_rows(jb, pid_bh, Nk, 1, BH, BLOCK_N, False)
        k, v, kf, bias = _load_keys(K, V, KF, BIAS, k_bh, k_n, Nk, k_valid, KF_HDIV,
                                    D, DF, DV, HAS_FEAT, HAS_BIAS, EVEN)
        s = _scores(q, k, pf_hi, pf_lo, kf, bias, qk_scale, HAS_FEAT, HAS_BIAS, SPLIT, PREC)
        p = tl.math.exp2(s - lse_safe[:, None])
        if not EVEN:
            p = tl.where(k_valid[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        if HAS_FEAT:
            ds_hi, ds_lo = _split(ds, kf.dtype, SPLIT)
            dpf += _split_dot(ds_hi, ds_lo, kf, SPLIT, PREC)

    _store(DQ, dq * scale, q_bh, q_n, Nq, q_valid, D, EVEN)
    if HAS_FEAT:
        _store(DPF, dpf, q_bh, q_n, Nq, q_valid, DF, EVEN)
