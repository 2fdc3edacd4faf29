"""Input checks of :func:`orster4d.ops.rasterize.rasterize_gaussians`.

Every failure raises ``TypeError`` (wrong Python type or dtype) or ``ValueError`` (shape, device,
value) with a message that names the argument and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from orster4d.ops.rasterize._ops import ensure_loaded

BACKENDS = (None, "cpu", "cuda", "reference")


@dataclass
class Checked:
    """The validated call, with the sizes it implies."""

    batch: torch.Size  # broadcast leading dims "..."
    N: int
    C: int
    K: int  # SH coefficients per channel (0 for RGB colours)
    backend: str  # "cpu", "cuda" or "reference"
    names: list  # the tensor arguments, in the order of the flags
    flags_host: Optional[torch.Tensor] = None  # kernels, eager: [len(names)] int32 on the host, 1 = NaN or inf
    finite: Optional[torch.Tensor] = None  # reference or torch.compile: [len(names)] bool on the inputs' device

    def after_finite_check(self, token: torch.Tensor, synchronised: bool = True) -> torch.Tensor:
        """``token`` once every input is known to be finite; else ValueError naming the first input
        that holds NaN or inf.

        With the CPU or CUDA kernels (eager), ``orster4d::nonfinite_flags`` tested every input in one
        launch and, on CUDA, wrote the flags into pinned host memory from the stream, with no copy and
        no wait. The rasterizer checks right after its tile intersection, which synchronises the
        stream once whenever there is a projected Gaussian (``synchronised``), so reading the flags
        then costs nothing; with nothing projected the stream is synchronised here instead. The
        projection and intersection kernels cull non-finite Gaussians and cameras, so running them
        first is harmless. With the reference, or under ``torch.compile``, the check is the op
        ``orster4d::check_finite`` (a host read of device flags): the graph keeps it (no graph break
        at the host read), and the kernels after it consume its output, so it runs first.
        """
        if self.flags_host is None:
            return torch.ops.orster4d.check_finite(token, self.finite, self.names)
        if not synchronised and token.is_cuda:
            torch.cuda.current_stream(token.device).synchronize()
        _raise_if_not_finite([not f for f in self.flags_host.tolist()], self.names)
        return token


def _raise_if_not_finite(flags: List[bool], names: List[str]) -> None:
    if not all(flags):
        raise ValueError(f"{names[flags.index(False)]} must be finite (it holds NaN or inf)")


def _check_finite(token: torch.Tensor, finite: torch.Tensor, names: List[str]) -> torch.Tensor:
    _raise_if_not_finite(finite.tolist(), names)
    return token.clone()


_CHECK_FINITE = torch.library.custom_op("orster4d::check_finite", _check_finite, mutates_args=(),
                                        schema="(Tensor token, Tensor finite, str[] names) -> Tensor")
_CHECK_FINITE.register_fake(lambda token, finite, names: torch.empty_like(token))


def _tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _shape(name: str, x: torch.Tensor, trailing: tuple, desc: str) -> None:
    """Checks the trailing dims; ``None`` entries are free (N, C, K)."""
    if x.dim() < len(trailing) or any(t is not None and x.shape[x.dim() - len(trailing) + i] != t
                                      for i, t in enumerate(trailing)):
        raise ValueError(f"{name} must have shape {desc}, got {tuple(x.shape)}")


def _size(name: str, value: int, expected: int, what: str, desc: str, shape) -> None:
    if value != expected:
        raise ValueError(f"{name} must have shape {desc} with {what}, got {tuple(shape)}")


def _broadcast(a: tuple, b: tuple):
    """NumPy broadcasting of two shapes; None when they do not broadcast."""
    if len(a) < len(b):
        a, b = b, a
    b = (1,) * (len(a) - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be a positive int (pixels), got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name} must be a positive int (pixels), got {v}")
    return v


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    return float(v)


def check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, near, far,
                 backgrounds, eps2d, backend) -> Checked:
    """Validates every argument of ``rasterize_gaussians``; returns the implied sizes and backend."""
    tensors = {
        "means": _tensor("means", means),
        "quats": _tensor("quats", quats),
        "scales": _tensor("scales", scales),
        "opacities": _tensor("opacities", opacities),
        "colors": _tensor("colors", colors),
        "viewmats": _tensor("viewmats", viewmats),
        "Ks": _tensor("Ks", Ks),
    }
    if backgrounds is not None:
        tensors["backgrounds"] = _tensor("backgrounds", backgrounds)
    _positive_int("width", width)
    _positive_int("height", height)
    near = _number("near", near)
    far = _number("far", far)
    eps2d = _number("eps2d", eps2d)
    if not (near > 0 and far > near):
        raise ValueError(f"near and far must satisfy 0 < near < far (camera z), got near={near}, far={far}")
    if not eps2d >= 0:
        raise ValueError(f"eps2d must be >= 0 (px^2), got {eps2d}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of None, 'cpu', 'cuda', 'reference', got {backend!r}")

    # dtypes: float32 everywhere (float64 allowed only for the reference), all the same
    allowed = (torch.float32, torch.float64) if backend == "reference" else (torch.float32,)
    for name, x in tensors.items():
        if x.dtype not in allowed:
            want = "float32 or float64" if backend == "reference" else "float32 (float64 only with backend='reference')"
            raise TypeError(f"{name} must be {want}, got {x.dtype}")
    dtype = means.dtype
    for name, x in tensors.items():
        if x.dtype != dtype:
            raise TypeError(f"{name} must have the dtype of means ({dtype}), got {x.dtype}")

    # devices
    device = means.device
    for name, x in tensors.items():
        if x.device != device:
            raise ValueError(f"{name} must be on the device of means ({device}), got {x.device}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got means on {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors, got means on {device}")
    resolved = backend or ("cuda" if device.type == "cuda" else "cpu")
    if resolved not in ("cpu", "cuda", "reference"):
        raise ValueError(f"no rasterizer backend for tensors on {device}")

    # shapes
    _shape("means", means, (None, 3), "[..., N, 3]")
    N = means.shape[-2]
    _shape("quats", quats, (None, 4), "[..., N, 4]")
    _size("quats", quats.shape[-2], N, f"N={N} (from means)", "[..., N, 4]", quats.shape)
    _shape("scales", scales, (None, 3), "[..., N, 3]")
    _size("scales", scales.shape[-2], N, f"N={N} (from means)", "[..., N, 3]", scales.shape)
    _shape("opacities", opacities, (None,), "[..., N]")
    _size("opacities", opacities.shape[-1], N, f"N={N} (from means)", "[..., N]", opacities.shape)
    if sh_degree is None:
        _shape("colors", colors, (None, 3), "[..., N, 3] (RGB; pass sh_degree for SH coefficients)")
        _size("colors", colors.shape[-2], N, f"N={N} (from means)", "[..., N, 3]", colors.shape)
        K = 0
        color_lead = colors.shape[:-2]
    else:
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int):
            raise TypeError(f"sh_degree must be None or an int in 0..3, got {type(sh_degree).__name__}")
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be None or an int in 0..3, got {sh_degree}")
        need = (sh_degree + 1) ** 2
        _shape("colors", colors, (None, None, 3), f"[..., N, K, 3] (SH coefficients, K >= {need})")
        _size("colors", colors.shape[-3], N, f"N={N} (from means)", "[..., N, K, 3]", colors.shape)
        K = colors.shape[-2]
        if K < need:
            raise ValueError(
                f"colors must have shape [..., N, K, 3] with K >= (sh_degree + 1)^2 = {need} for "
                f"sh_degree={sh_degree}, got K={K}"
            )
        color_lead = colors.shape[:-3]
    _shape("viewmats", viewmats, (None, 4, 4), "[..., C, 4, 4]")
    C = viewmats.shape[-3]
    _shape("Ks", Ks, (None, 3, 3), "[..., C, 3, 3]")
    _size("Ks", Ks.shape[-3], C, f"C={C} (from viewmats)", "[..., C, 3, 3]", Ks.shape)
    leads = {
        "means": means.shape[:-2],
        "quats": quats.shape[:-2],
        "scales": scales.shape[:-2],
        "opacities": opacities.shape[:-1],
        "colors": color_lead,
        "viewmats": viewmats.shape[:-3],
        "Ks": Ks.shape[:-3],
    }
    if backgrounds is not None:
        _shape("backgrounds", backgrounds, (None, 3), "[..., C, 3]")
        _size("backgrounds", backgrounds.shape[-2], C, f"C={C} (from viewmats)", "[..., C, 3]", backgrounds.shape)
        leads["backgrounds"] = backgrounds.shape[:-2]
    batch = ()
    for name, lead in leads.items():
        new = _broadcast(batch, tuple(lead))
        if new is None:
            listing = ", ".join(f"{k} {tuple(v)}" for k, v in leads.items())
            raise ValueError(
                f"the leading batch dims of {name} {tuple(lead)} do not match (or broadcast with) those of the "
                f"inputs before it {batch}; every input shares the same leading dims '...' (got {listing})"
            )
        batch = new
    batch = torch.Size(batch)

    # values: one fused test, read later (see Checked.after_finite_check)
    names = list(tensors)
    flags_host = finite = None
    if resolved != "reference" and not torch.compiler.is_compiling():
        ensure_loaded(resolved)
        flags_host = torch.ops.orster4d.nonfinite_flags(list(tensors.values()))
    else:
        with torch.no_grad():  # a check, not part of the graph; an empty tensor is finite
            finite = torch.stack([torch.isfinite(x).all() for x in tensors.values()])
    return Checked(batch=batch, N=N, C=C, K=K, backend=resolved, names=names, flags_host=flags_host, finite=finite)
