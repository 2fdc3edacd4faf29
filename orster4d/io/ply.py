"""Standard 3D Gaussian Splatting ``.ply`` files (the layout common splat viewers open).

Binary little-endian vertex elements with float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3*(K-1)-1} opacity
    scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

Values are the *raw* (pre-activation) parameters, as 3DGS stores them: ``opacity`` is the logit,
``scale_*`` the log-scales, ``rot_*`` the quaternion (w, x, y, z, unnormalised). ``f_rest`` is
channel-major: all coefficients 1..K-1 of red, then green, then blue. Normals are zero.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

_HEADER_END = b"end_header\n"


def _as_np(name: str, x: torch.Tensor, shape_tail: tuple, n: int | None) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape[1:] != shape_tail or (n is not None and x.shape[0] != n):
        want = "[N" + "".join(f", {s}" for s in shape_tail) + "]"
        raise ValueError(f"{name} must have shape {want} with N={n}, got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float32).numpy()


def write_ply(path: Union[str, Path], means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
              logit_opacities: torch.Tensor, sh: torch.Tensor) -> None:
    """Write Gaussians to a standard 3DGS ``.ply``.

    Args:
        means: ``[N, 3]`` world positions.
        quats: ``[N, 4]`` rotations (w, x, y, z).
        log_scales: ``[N, 3]`` log of the standard deviations (world units).
        logit_opacities: ``[N]`` opacity logits.
        sh: ``[N, K, 3]`` SH coefficients, ``K = (degree + 1) ** 2`` in {1, 4, 9, 16}.
    """
    if not isinstance(means, torch.Tensor) or means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [N, 3], got {tuple(getattr(means, 'shape', ()))}")
    n = means.shape[0]
    if not isinstance(sh, torch.Tensor) or sh.dim() != 3 or sh.shape[0] != n or sh.shape[2] != 3 \
            or sh.shape[1] not in (1, 4, 9, 16):
        raise ValueError(f"sh must have shape [N={n}, K, 3] with K in (1, 4, 9, 16), got {tuple(getattr(sh, 'shape', ()))}")
    k = sh.shape[1]
    cols = [
        _as_np("means", means, (3,), n),
        np.zeros((n, 3), np.float32),
        _as_np("sh", sh[:, 0, :], (3,), n),
        _as_np("sh", sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (k - 1)), (3 * (k - 1),), n),
        _as_np("logit_opacities", logit_opacities.reshape(-1, 1) if isinstance(logit_opacities, torch.Tensor)
               and logit_opacities.dim() == 1 else logit_opacities, (1,), n),
        _as_np("log_scales", log_scales, (3,), n),
        _as_np("quats", quats, (4,), n),
    ]
    data = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype="<f4")
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header += ["end_header"]
    path = Path(path)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())


def read_ply(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a 3DGS ``.ply`` written by :func:`write_ply` or by the reference 3DGS code.

    Returns a dict with ``means [N, 3]``, ``quats [N, 4]``, ``log_scales [N, 3]``,
    ``logit_opacities [N]`` and ``sh [N, K, 3]`` (float32).
    """
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(_HEADER_END)
    if not raw.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file (missing 'ply' magic or 'end_header')")
    header = raw[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary_little_endian PLY is supported")
    n = None
    names = []
    for line in header:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[:1] == ["element"] and n is not None:
            raise ValueError(f"{path}: unexpected element after 'vertex': {line!r}")
        elif parts[:1] == ["property"]:
            if parts[1] != "float":
                raise ValueError(f"{path}: property {parts[-1]} is {parts[1]}, expected float")
            names.append(parts[2])
    if n is None:
        raise ValueError(f"{path}: no 'element vertex' in header")
    body = raw[end + len(_HEADER_END):]
    if len(body) < n * len(names) * 4:
        raise ValueError(f"{path}: truncated: {len(body)} bytes for {n} vertices x {len(names)} floats")
    arr = np.frombuffer(body, dtype="<f4", count=n * len(names)).reshape(n, len(names))
    col = {name: i for i, name in enumerate(names)}

    def take(keys):
        missing = [k for k in keys if k not in col]
        if missing:
            raise ValueError(f"{path}: missing properties {missing}")
        return torch.from_numpy(arr[:, [col[k] for k in keys]].copy())

    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    if n_rest % 3:
        raise ValueError(f"{path}: {n_rest} f_rest_* properties is not a multiple of 3")
    k = 1 + n_rest // 3
    dc = take(["f_dc_0", "f_dc_1", "f_dc_2"]).unsqueeze(1)
    rest = take([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).transpose(1, 2)
    return {
        "means": take(["x", "y", "z"]),
        "quats": take(["rot_0", "rot_1", "rot_2", "rot_3"]),
        "log_scales": take(["scale_0", "scale_1", "scale_2"]),
        "logit_opacities": take(["opacity"])[:, 0],
        "sh": torch.cat([dc, rest], dim=1),
    }
