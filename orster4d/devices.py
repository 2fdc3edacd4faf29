"""Device selection, the one rule every command follows: ``auto`` means CUDA when torch sees a GPU,
else the CPU; asking for a device torch cannot use is an error that says so."""
from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["resolve_device"]


def resolve_device(name: Optional[Union[str, torch.device]] = "auto") -> torch.device:
    """``torch.device`` for ``"auto"`` / ``None`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``; raises ``ValueError`` naming the problem for an unknown or unavailable device."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r} (expected 'auto', 'cpu', 'cuda' or 'cuda:N')") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA GPU on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"device {name!r} is not supported (expected 'cpu' or 'cuda')")
    return dev
