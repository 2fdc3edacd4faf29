"""Triton kernels of the Orster Gaussian-kernel attention (SPEC section 3).

The kernels compute softmax attention over *augmented* scores, in base-2 units:

    S2_ij = qk_scale * <q_i, k_j> + <pf_i, kf_j> - bias_j          (qk_scale = scale * log2(e))
    out_i = sum_j softmax2_j(S2_ij) * v_j

``pf`` (query-side kernel features, already multiplied by the quadratic-form coefficients and
log2(e)), ``kf`` (key-side kernel features) and ``bias`` (the key's half quadratic form times
log2(e), ``+inf`` on padded keys) are prepared by :mod:`orster4d.attention`; see ``docs/kernels.md``
for how ``-1/2 Qf(s_i - s_j, u_i - u_j)`` expands into this form. Every tensor is contiguous and
flattened over (batch, head): ``q [BH, Nq, D]``, ``k [BH, Nk, D]``, ``v [BH, Nk, DV]``,
``pf [BH, Nq, DF]``, ``kf [BH, Nk, DF]``, ``bias [BH, Nk]`` (float32), ``lse``/``delta [BH, Nq]``
(float32).

Two tilings share the code:
- ``PACKED = False``: one program per (query block, batch-head); the key loop walks all key blocks.
- ``PACKED = True`` (short sequences, the temporal regime): one program owns ``G`` consecutive
  batch-heads whose ``G * N`` rows fit in one tile; a block-diagonal mask keeps the heads apart,
  so a tile is filled with useful rows instead of mostly padding.

The file reads top to bottom: forward, backward preprocess, backward (dK/dV, then dQ).
Only portable ``tl`` APIs are used (pointer arithmetic, no tensor descriptors).
"""
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _tile_rows(pid_blk, pid_bh, N, G, BH, BLOCK: tl.constexpr, PACKED: tl.constexpr):
    """Flattened row index (into ``[BH * N]``), validity and head-group id of a tile's rows."""
    r = tl.arange(0, BLOCK)
    if PACKED:
        grp = r // N
        bh = pid_bh * G + grp
        n = r - grp * N
        valid = (grp < G) & (bh < BH)
    else:
        grp = tl.zeros([BLOCK], dtype=tl.int32)
        bh = pid_bh
        n = pid_blk * BLOCK + r
        valid = n < N
    row = bh.to(tl.int64) * N + n
    return row, valid, grp


@triton.jit
def _scores(q, k, pf, kf, bias, qk_scale,
            HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, PREC: tl.constexpr):
    """Base-2 augmented score tile ``[BM, BN]`` from a query tile and a key tile."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
    if HAS_FEAT:
        s += tl.dot(pf, tl.trans(kf), input_precision=PREC)
    if HAS_BIAS:
        s -= bias[None, :]
    return s


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------
@triton.jit
def attn_fwd(Q, K, V, PF, KF, BIAS, O, LSE,
             Nq, Nk, G, BH, qk_scale,
             D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
             HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, PACKED: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_d = tl.arange(0, D)
    offs_f = tl.arange(0, DF)
    offs_v = tl.arange(0, DV)

    q_row, q_valid, q_grp = _tile_rows(pid_m, pid_bh, Nq, G, BH, BLOCK_M, PACKED)
    q = tl.load(Q + q_row[:, None] * D + offs_d[None, :], mask=q_valid[:, None], other=0.0)
    pf = q
    if HAS_FEAT:
        pf = tl.load(PF + q_row[:, None] * DF + offs_f[None, :], mask=q_valid[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, DV], dtype=tl.float32)

    if PACKED:
        n_blocks = 1
    else:
        n_blocks = tl.cdiv(Nk, BLOCK_N)
    for jb in range(0, n_blocks):
        k_row, k_valid, k_grp = _tile_rows(jb, pid_bh, Nk, G, BH, BLOCK_N, PACKED)
        k = tl.load(K + k_row[:, None] * D + offs_d[None, :], mask=k_valid[:, None], other=0.0)
        v = tl.load(V + k_row[:, None] * DV + offs_v[None, :], mask=k_valid[:, None], other=0.0)
        kf = k
        bias = k_valid
        if HAS_FEAT:
            kf = tl.load(KF + k_row[:, None] * DF + offs_f[None, :], mask=k_valid[:, None], other=0.0)
        if HAS_BIAS:
            bias = tl.load(BIAS + k_row, mask=k_valid, other=0.0)
        s = _scores(q, k, pf, kf, bias, qk_scale, HAS_FEAT, HAS_BIAS, PREC)
        keep = k_valid[None, :]
        if PACKED:
            keep = keep & (q_grp[:, None] == k_grp[None, :])
        s = tl.where(keep, s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)   # fully masked rows so far
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new

    empty = l_i == 0.0                       # every key of the row is padded: output 0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), m_i + tl.math.log2(l_safe))
    tl.store(O + q_row[:, None] * DV + offs_v[None, :], out.to(O.dtype.element_ty), mask=q_valid[:, None])
    tl.store(LSE + q_row, lse, mask=q_valid)


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
#   dpf = dS kf / log2e,  dkf = dS^T pf / log2e,  dbias = -colsum(dS) / log2e.
# --------------------------------------------------------------------------------------------
@triton.jit
def attn_bwd_dkdv(Q, K, V, PF, KF, BIAS, DO, LSE, DELTA,
                  DQ, DK, DV_, DPF, DKF, DBIAS,
                  Nq, Nk, G, BH, qk_scale, scale,
                  D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
                  HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr, PACKED: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One program per key tile; loops over query tiles. With PACKED the single query tile
    belongs to this program alone, so dQ (and dpf) are finished here too."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_d = tl.arange(0, D)
    offs_f = tl.arange(0, DF)
    offs_v = tl.arange(0, DV)

    k_row, k_valid, k_grp = _tile_rows(pid_n, pid_bh, Nk, G, BH, BLOCK_N, PACKED)
    k = tl.load(K + k_row[:, None] * D + offs_d[None, :], mask=k_valid[:, None], other=0.0)
    v = tl.load(V + k_row[:, None] * DV + offs_v[None, :], mask=k_valid[:, None], other=0.0)
    kf = k
    bias = k_valid
    if HAS_FEAT:
        kf = tl.load(KF + k_row[:, None] * DF + offs_f[None, :], mask=k_valid[:, None], other=0.0)
    if HAS_BIAS:
        bias = tl.load(BIAS + k_row, mask=k_valid, other=0.0)

    dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, DV], dtype=tl.float32)
    dkf = tl.zeros([BLOCK_N, DF], dtype=tl.float32)
    dbias = tl.zeros([BLOCK_N], dtype=tl.float32)

    if PACKED:
        n_blocks = 1
    else:
        n_blocks = tl.cdiv(Nq, BLOCK_M)
    for ib in range(0, n_blocks):
        q_row, q_valid, q_grp = _tile_rows(ib, pid_bh, Nq, G, BH, BLOCK_M, PACKED)
        q = tl.load(Q + q_row[:, None] * D + offs_d[None, :], mask=q_valid[:, None], other=0.0)
        do = tl.load(DO + q_row[:, None] * DV + offs_v[None, :], mask=q_valid[:, None], other=0.0)
        lse = tl.load(LSE + q_row, mask=q_valid, other=float("inf"))
        delta = tl.load(DELTA + q_row, mask=q_valid, other=0.0)
        pf = q
        if HAS_FEAT:
            pf = tl.load(PF + q_row[:, None] * DF + offs_f[None, :], mask=q_valid[:, None], other=0.0)
        # transposed tiles [BN, BM]: keys along rows, as this program accumulates per key
        sT = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
        if HAS_FEAT:
            sT += tl.dot(kf, tl.trans(pf), input_precision=PREC)
        if HAS_BIAS:
            sT -= bias[:, None]
        keep = k_valid[:, None] & q_valid[None, :]
        if PACKED:
            keep = keep & (k_grp[:, None] == q_grp[None, :])
        lse_safe = tl.where(lse == float("-inf"), float("inf"), lse)
        pT = tl.where(keep, tl.math.exp2(sT - lse_safe[None, :]), 0.0)
        dv += tl.dot(pT.to(do.dtype), do, input_precision=PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=PREC)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q, input_precision=PREC)
        if HAS_FEAT:
            dkf += tl.dot(dsT.to(pf.dtype), pf, input_precision=PREC)
        if HAS_BIAS:
            dbias += tl.sum(dsT, 1)
        if PACKED:
            ds = tl.trans(dsT)
            dq = tl.dot(ds.to(k.dtype), k, input_precision=PREC) * scale
            tl.store(DQ + q_row[:, None] * D + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=q_valid[:, None])
            if HAS_FEAT:
                dpf = tl.dot(ds.to(kf.dtype), kf, input_precision=PREC) * (1.0 / 1.4426950408889634)
                tl.store(DPF + q_row[:, None] * DF + offs_f[None, :], dpf.to(DPF.dtype.element_ty),
                         mask=q_valid[:, None])

    tl.store(DK + k_row[:, None] * D + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty), mask=k_valid[:, None])
    tl.store(DV_ + k_row[:, None] * DV + offs_v[None, :], dv.to(DV_.dtype.element_ty), mask=k_valid[:, None])
    if HAS_FEAT:
        dkf = dkf * (1.0 / 1.4426950408889634)
        tl.store(DKF + k_row[:, None] * DF + offs_f[None, :], dkf.to(DKF.dtype.element_ty), mask=k_valid[:, None])
    if HAS_BIAS:
        tl.store(DBIAS + k_row, -dbias * (1.0 / 1.4426950408889634), mask=k_valid)


@triton.jit
def attn_bwd_dq(Q, K, V, PF, KF, BIAS, DO, LSE, DELTA, DQ, DPF,
                Nq, Nk, G, BH, qk_scale, scale,
                D: tl.constexpr, DF: tl.constexpr, DV: tl.constexpr,
                HAS_FEAT: tl.constexpr, HAS_BIAS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One program per query tile; loops over key tiles (unpacked tiling only)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_d = tl.arange(0, D)
    offs_f = tl.arange(0, DF)
    offs_v = tl.arange(0, DV)

    q_row, q_valid, q_grp = _tile_rows(pid_m, pid_bh, Nq, G, BH, BLOCK_M, False)
    q = tl.load(Q + q_row[:, None] * D + offs_d[None, :], mask=q_valid[:, None], other=0.0)
    do = tl.load(DO + q_row[:, None] * DV + offs_v[None, :], mask=q_valid[:, None], other=0.0)
    lse = tl.load(LSE + q_row, mask=q_valid, other=float("inf"))
    delta = tl.load(DELTA + q_row, mask=q_valid, other=0.0)
    lse_safe = tl.where(lse == float("-inf"), float("inf"), lse)
    pf = q
    if HAS_FEAT:
        pf = tl.load(PF + q_row[:, None] * DF + offs_f[None, :], mask=q_valid[:, None], other=0.0)

    dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    dpf = tl.zeros([BLOCK_M, DF], dtype=tl.float32)
    for jb in range(0, tl.cdiv(Nk, BLOCK_N)):
        k_row, k_valid, k_grp = _tile_rows(jb, pid_bh, Nk, G, BH, BLOCK_N, False)
        k = tl.load(K + k_row[:, None] * D + offs_d[None, :], mask=k_valid[:, None], other=0.0)
        v = tl.load(V + k_row[:, None] * DV + offs_v[None, :], mask=k_valid[:, None], other=0.0)
        kf = k
        bias = k_valid
        if HAS_FEAT:
            kf = tl.load(KF + k_row[:, None] * DF + offs_f[None, :], mask=k_valid[:, None], other=0.0)
        if HAS_BIAS:
            bias = tl.load(BIAS + k_row, mask=k_valid, other=0.0)
        s = _scores(q, k, pf, kf, bias, qk_scale, HAS_FEAT, HAS_BIAS, PREC)
        p = tl.where(k_valid[None, :], tl.math.exp2(s - lse_safe[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        if HAS_FEAT:
            dpf += tl.dot(ds.to(kf.dtype), kf, input_precision=PREC)

    tl.store(DQ + q_row[:, None] * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=q_valid[:, None])
    if HAS_FEAT:
        dpf = dpf * (1.0 / 1.4426950408889634)
        tl.store(DPF + q_row[:, None] * DF + offs_f[None, :], dpf.to(DPF.dtype.element_ty), mask=q_valid[:, None])
