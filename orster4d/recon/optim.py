"""Adam for the 4D construction: torch's fused kernel on CUDA, the default elsewhere.

The construction steps two optimisers (the Gaussians' and the deformation field's) thousands of
times over small parameter groups, where the per-tensor Adam of ``foreach`` costs more launches
than the math needs. ``torch.optim.Adam(fused=True)`` updates every tensor of an optimiser in a
few launches; it runs only on CUDA parameters, so :func:`adam` picks it from the parameters' device.

Checkpoints move between devices (a run started on a GPU resumes on a CPU and back), and
``load_state_dict`` brings back the saved ``fused`` flag and step counters as they were saved:
:func:`match_device` sets both for the device the parameters are on now.
"""
from __future__ import annotations

from typing import Iterable, List

import torch

__all__ = ["adam", "match_device"]


def _wants_fused(params: List[torch.Tensor]) -> bool:
    return len(params) > 0 and all(p.is_cuda and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                                   for p in params)


def _params(groups) -> List[torch.Tensor]:
    return [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]


def adam(groups: Iterable, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam(groups, fused=..., **kwargs)``, fused when every parameter is on CUDA."""
    groups = list(groups)
    return torch.optim.Adam(groups, fused=_wants_fused(_params(groups)) or None, **kwargs)


def match_device(opt: torch.optim.Adam) -> torch.optim.Adam:
    """After ``load_state_dict``: the ``fused`` flag and each step counter as :func:`adam` would
    set them for the parameters' current device (fused: a float32 tensor on the parameter's device;
    otherwise a float32 tensor on the CPU). Returns ``opt``."""
    fused = _wants_fused(_params(opt.param_groups))
    for group in opt.param_groups:
        group["fused"] = fused or None
        for p in group["params"]:
            st = opt.state.get(p)
            if st and "step" in st:
                step = torch.as_tensor(st["step"], dtype=torch.float32)
                st["step"] = step.to(p.device) if fused else step.cpu()
    return opt
