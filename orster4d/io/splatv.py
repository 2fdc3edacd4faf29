"""The ``.splatv`` format (antimatter15's splaTV 4D viewer) and fitting a 4D asset's motion to it.

File layout, little-endian::

    uint32  magic 0x674b
    uint32  L, the byte length of the JSON header
    L bytes JSON: [{"type": "splat", "size": S, "texwidth": 4096, "texheight": H, "cameras": [...]}]
    S bytes the splat texture: texheight * texwidth * 4 uint32 (RGBA32UI texels), 4 texels per splat

Each splat is 16 uint32 (``half2(a, b)`` packs two float16: ``a`` in the low 16 bits)::

    0-2   float32 x, y, z                    position at the splat's centre time
    3, 4  half2(qw, qx), half2(qy, qz)       rotation at the centre time (normalised when drawn)
    5, 6  half2(sx, sy), half2(sz, 0)        standard deviations (constant over time)
    7     uint8 r, g, b, a                   colour and opacity (* 255)
    8-12  half2 of m0..m8, 0                 position(t) = p + m[0:3] dt + m[3:6] dt^2 + m[6:9] dt^3
    13,14 half2(w0, w1), half2(w2, w3)       rotation(t) = normalise(q + w dt)
    15    half2(centre, scale)               temporal opacity exp(-(dt / scale)^2), dt = t - centre

with the viewer's time ``t`` in [0, 1] (the package's normalised time). Cameras are the
trajectory's views as ``{"id", "img_name", "width", "height", "position" (centre), "rotation"
(camera-to-world rows, OpenCV axes), "fx", "fy"}``.

What it can express: per Gaussian, a cubic path of the centre, a linear path of the (unnormalised)
quaternion, a fixed scale and a Gaussian window in time. The package's deformation moves every
Gaussian freely per timestamp and also changes scales, so :func:`fit_splatv` fits that form by
least squares, optionally in ``segments`` time windows (each window a copy of all Gaussians with
its own fit, cross-faded by the temporal opacity), and reports the error of the fitted model
(decoded from the float16 values it writes) against the per-timestamp Gaussians.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

MAGIC = 0x674B
TEXWIDTH = 4096  # texels per texture row: 1024 splats
WORDS = 16  # uint32 per splat
_HALF_MAX = 65504.0
_STATIC_SCALE = 1000.0  # temporal scale of a single-segment fit: the window is flat over [0, 1]


def _half_bits(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -_HALF_MAX, _HALF_MAX).astype(np.float16).view(np.uint16).astype(np.uint32)


def _half2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _half_bits(a) | (_half_bits(b) << np.uint32(16))


def _q16(x: np.ndarray) -> np.ndarray:
    """The float16 value of ``x`` as float64 (what the viewer reads)."""
    return np.clip(x, -_HALF_MAX, _HALF_MAX).astype(np.float16).astype(np.float64)


def _segments(T: int, segments: int):
    bounds = np.linspace(0, T, segments + 1).round().astype(int)
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(segments)]


def _lstsq_poly(dt: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Coefficients ``[degree + 1, ...]`` of the least-squares polynomial in ``dt [F]`` through ``y [F, ...]``."""
    A = np.stack([dt ** k for k in range(degree + 1)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y.reshape(len(dt), -1), rcond=None)
    return coef.reshape((degree + 1,) + y.shape[1:])


def fit_splatv(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, times: torch.Tensor,
               segments: int = 1) -> Dict[str, np.ndarray]:
    """Fits the ``.splatv`` motion model to per-timestamp Gaussians.

    Args:
        means ``[T, N, 3]``, quats ``[T, N, 4]`` (w, x, y, z), scales ``[T, N, 3]`` (activated), times ``[T]``
        in [0, 1], increasing; ``segments`` in [1, T]: time windows, each with its own copy of the N Gaussians.

    Returns float64 arrays over the ``segments * N`` splats: ``position [M, 3]``, ``motion [M, 9]``,
    ``quat [M, 4]``, ``omega [M, 4]``, ``scale [M, 3]``, ``center [M]``, ``tscale [M]``, all already
    rounded as the file stores them (float16 except ``position``).
    """
    for name, x, tail in (("means", means, 3), ("quats", quats, 4), ("scales", scales, 3)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != tail:
            raise ValueError(f"{name} must have shape [T, N, {tail}], got {list(getattr(x, 'shape', []))}")
    T, N = means.shape[:2]
    if quats.shape[:2] != (T, N) or scales.shape[:2] != (T, N):
        raise ValueError(f"means, quats and scales must share [T, N] = {[T, N]}, got {list(quats.shape[:2])} "
                         f"and {list(scales.shape[:2])}")
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1).numpy()
    if t.shape != (T,):
        raise ValueError(f"times must have shape [T={T}], got {list(t.shape)}")
    if T > 1 and not (np.diff(t) > 0).all():
        raise ValueError("times must be strictly increasing")
    if not 1 <= int(segments) <= T:
        raise ValueError(f"segments must be in [1, T={T}], got {segments}")
    if bool((scales <= 0).any()):
        raise ValueError("scales must be > 0 (activated standard deviations)")
    m = means.detach().to("cpu", torch.float64).numpy()
    q = quats.detach().to("cpu", torch.float64).numpy()  # fitted as given: only the direction is drawn
    if (np.linalg.norm(q, axis=-1) < 1e-12).any():
        raise ValueError("quats has zero-length rows")
    ls = np.log(scales.detach().to("cpu", torch.float64).numpy())
    spacing = float(np.diff(t).mean()) if T > 1 else 1.0
    parts = {k: [] for k in ("position", "motion", "quat", "omega", "scale", "center", "tscale")}
    for idx in _segments(T, int(segments)):
        ts = t[idx]
        center = 0.5 * (ts[0] + ts[-1])
        dt = ts - center
        pc = _lstsq_poly(dt, m[idx], min(3, len(idx) - 1))  # [d+1, N, 3]
        pc = np.concatenate([pc, np.zeros((4 - pc.shape[0], N, 3))], 0)
        ref = q[idx[np.argmin(np.abs(dt))]]
        qs = q[idx] * np.sign((q[idx] * ref).sum(-1, keepdims=True) + 1e-30)  # one hemisphere per Gaussian
        qc = _lstsq_poly(dt, qs, min(1, len(idx) - 1))
        qc = np.concatenate([qc, np.zeros((2 - qc.shape[0], N, 4))], 0)
        if segments == 1:
            tscale = _STATIC_SCALE
        else:  # the window falls to 1/2 half a frame past the segment's first and last frames
            tscale = (ts[-1] - ts[0] + spacing) / (2.0 * math.sqrt(math.log(2.0)))
        parts["position"].append(pc[0].astype(np.float32).astype(np.float64))
        parts["motion"].append(_q16(np.concatenate([pc[1], pc[2], pc[3]], axis=1)))
        parts["quat"].append(_q16(qc[0]))
        parts["omega"].append(_q16(qc[1]))
        parts["scale"].append(_q16(np.exp(ls[idx].mean(0))))
        parts["center"].append(np.full(N, _q16(np.array(center))))
        parts["tscale"].append(np.full(N, _q16(np.array(tscale))))
    return {k: np.concatenate(v, 0) for k, v in parts.items()}


def evaluate_splatv(fit: Dict[str, np.ndarray], times) -> Dict[str, np.ndarray]:
    """The fitted model at ``times [F]``, as the splaTV viewer draws it.

    Returns ``means [F, M, 3]``, ``quats [F, M, 4]`` (unit), ``scales [M, 3]`` and ``weights [F, M]``
    (temporal opacity factors, 0 where the viewer culls them: below 0.02).
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    dt = t[:, None] - fit["center"][None]  # F, M
    mo = fit["motion"]
    pos = fit["position"][None] + sum(mo[None, :, 3 * k:3 * k + 3] * dt[..., None] ** (k + 1) for k in range(3))
    quat = fit["quat"][None] + fit["omega"][None] * dt[..., None]
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True).clip(1e-12)
    w = np.exp(-(dt / fit["tscale"][None]) ** 2)
    return {"means": pos, "quats": quat, "scales": fit["scale"], "weights": np.where(w < 0.02, 0.0, w)}


def splatv_error(fit: Dict[str, np.ndarray], means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                 opacities: torch.Tensor, times) -> Dict[str, float]:
    """Error of a fit (from :func:`fit_splatv`) against the per-timestamp Gaussians it was fitted to.

    Per Gaussian and timestamp, the segment copy with the largest temporal weight stands for the
    Gaussian. Returns ``position_rms``/``position_max`` (world units), ``position_rms_rel`` (over the
    diagonal of the Gaussians' bounding box), ``rotation_rms_deg``, ``log_scale_rms`` and
    ``opacity_max_abs`` (the composited opacity of all copies of a Gaussian against its own, over
    the timestamps).
    """
    ev = evaluate_splatv(fit, times)
    m = means.detach().to("cpu", torch.float64).numpy()
    q = quats.detach().to("cpu", torch.float64).numpy()
    q = q / np.linalg.norm(q, axis=-1, keepdims=True).clip(1e-12)
    s = scales.detach().to("cpu", torch.float64).numpy()
    o = opacities.detach().to("cpu", torch.float64).numpy().reshape(-1)
    T, N = m.shape[:2]
    S = ev["means"].shape[1] // N
    w = ev["weights"].reshape(T, S, N)
    best = w.argmax(1)  # T, N
    pick = lambda a: np.take_along_axis(a.reshape(T, S, N, -1), best[:, None, :, None], 1)[:, 0]  # noqa: E731
    dpos = np.linalg.norm(pick(ev["means"]) - m, axis=-1)
    cosang = np.abs((pick(ev["quats"]) * q).sum(-1)).clip(0, 1)
    ang = np.degrees(2 * np.arccos(cosang))
    dls = np.log(ev["scales"].reshape(S, N, 3)[best, np.arange(N)[None]]) - np.log(s)
    alpha = 1 - np.prod(1 - o[None, None] * w, axis=1)  # T, N
    extent = float(np.linalg.norm(m.reshape(-1, 3).max(0) - m.reshape(-1, 3).min(0)))
    return {
        "position_rms": float(np.sqrt((dpos ** 2).mean())), "position_max": float(dpos.max()),
        "position_rms_rel": float(np.sqrt((dpos ** 2).mean()) / max(extent, 1e-12)),
        "rotation_rms_deg": float(np.sqrt((ang ** 2).mean())), "log_scale_rms": float(np.sqrt((dls ** 2).mean())),
        "opacity_max_abs": float(np.abs(alpha - o[None]).max()), "segments": int(S), "num_frames": int(T),
    }


def _cameras(trajectory) -> list:
    if trajectory is None:
        return []
    vms = trajectory.viewmats().double().numpy()
    K = trajectory.Ks()[0].double().numpy()
    cams = []
    for i, vm in enumerate(vms):
        R = vm[:3, :3]
        cams.append({"id": i, "img_name": f"{i:04d}", "width": int(trajectory.width), "height": int(trajectory.height),
                     "position": (-R.T @ vm[:3, 3]).tolist(), "rotation": R.T.tolist(),
                     "fx": float(K[0, 0]), "fy": float(K[1, 1])})
    return cams


def write_splatv(path: Union[str, Path], means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                 opacities: torch.Tensor, colors: torch.Tensor, times, segments: int = 1,
                 trajectory=None) -> Dict[str, float]:
    """Fits (:func:`fit_splatv`) and writes a ``.splatv``; returns the fit's error (:func:`splatv_error`).

    Args:
        means ``[T, N, 3]``, quats ``[T, N, 4]``, scales ``[T, N, 3]``: activated per-timestamp Gaussians;
        opacities ``[N]`` in [0, 1] and colors ``[N, 3]`` RGB in [0, 1], shared over time; times ``[T]`` in [0, 1];
        segments: time windows of the fit; trajectory: an :class:`~orster4d.cameras.OrbitTrajectory` whose
        views are stored as the file's cameras (None: none).
    """
    T, N = (means.shape[:2] if isinstance(means, torch.Tensor) and means.dim() == 3 else (None, None))
    if N is None:
        raise ValueError(f"means must have shape [T, N, 3], got {list(getattr(means, 'shape', []))}")
    if not isinstance(opacities, torch.Tensor) or tuple(opacities.shape) != (N,):
        raise ValueError(f"opacities must have shape [N={N}], got {list(getattr(opacities, 'shape', []))}")
    if not isinstance(colors, torch.Tensor) or tuple(colors.shape) != (N, 3):
        raise ValueError(f"colors must have shape [N={N}, 3], got {list(getattr(colors, 'shape', []))}")
    fit = fit_splatv(means, quats, scales, times, segments)
    err = splatv_error(fit, means, quats, scales, opacities, times)
    M = fit["position"].shape[0]
    S = M // N
    texheight = max(1, math.ceil(4 * M / TEXWIDTH))
    words = np.zeros((texheight * TEXWIDTH * 4 // WORDS, WORDS), np.uint32)
    w = words[:M]
    w[:, 0:3] = fit["position"].astype("<f4").view(np.uint32)
    qq, sc, mo, om = fit["quat"], fit["scale"], fit["motion"], fit["omega"]
    w[:, 3] = _half2(qq[:, 0], qq[:, 1])
    w[:, 4] = _half2(qq[:, 2], qq[:, 3])
    w[:, 5] = _half2(sc[:, 0], sc[:, 1])
    w[:, 6] = _half2(sc[:, 2], np.zeros(M))
    rgba = np.concatenate([colors.detach().cpu().double().numpy(), opacities.detach().cpu().double().numpy()[:, None]], 1)
    rgba = np.clip(np.round(np.tile(rgba, (S, 1)) * 255.0), 0, 255).astype(np.uint8)
    w[:, 7] = rgba.view(np.uint32)[:, 0]
    for k in range(4):
        w[:, 8 + k] = _half2(mo[:, 2 * k], mo[:, 2 * k + 1])
    w[:, 12] = _half2(mo[:, 8], np.zeros(M))
    w[:, 13] = _half2(om[:, 0], om[:, 1])
    w[:, 14] = _half2(om[:, 2], om[:, 3])
    w[:, 15] = _half2(fit["center"], fit["tscale"])
    body = words.astype("<u4").tobytes()
    header = json.dumps([{"type": "splat", "size": len(body), "texwidth": TEXWIDTH, "texheight": texheight,
                          "cameras": _cameras(trajectory)}], separators=(",", ":")).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<II", MAGIC, len(header)))
        f.write(header)
        f.write(body)
    return err
