"""Prior tokens O_s, O_t for ST-HexPlane (paper Eq. 8-9) from the unified 4D-UNet's features.

During generation the pipeline taps block outputs of the unified 4D-UNet: spatial sub-blocks
(spatial transformers, ``down_blocks.i.attentions.j``) and temporal sub-blocks (temporal
transformers, ``down_blocks.i.temp_attentions.j``), each ``[C, T, h, w]`` for one video, averaged
over the last denoising steps (conditional branch). They are pooled to a token budget:

- spatial tokens ``O_s [Ns, Cs]``: each spatial feature averaged over time, then average-pooled
  over the latent grid to ``g x g`` cells with ``g = min(floor(sqrt(budget_s)), h, w)``, one token
  per cell (row-major); several blocks are concatenated along channels (``Cs`` = the sum);
- temporal tokens ``O_t [Nt, Ct]``: each temporal feature averaged over the latent grid, then
  average-pooled over time to ``min(budget_t, T)`` tokens in time order; several blocks are
  concatenated along channels.

The file written for ``orster4d-construct --priors`` is ``torch.save({"spatial": O_s, "temporal": O_t})``
(float32, CPU), the format ``orster4d.recon.deformation.load_priors`` reads.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

DEFAULT_BUDGET = (64, 16)  # (spatial tokens, temporal tokens)


def _check(feats: Sequence[torch.Tensor], what: str) -> None:
    if not feats:
        raise ValueError(f"{what} prior: no tapped features (the pipeline's prior_blocks list is empty)")
    for f in feats:
        if f.dim() != 4:
            raise ValueError(f"{what} prior: features must be [C, T, h, w], got {tuple(f.shape)}")


def spatial_tokens(feats: Sequence[torch.Tensor], budget: int) -> torch.Tensor:
    """``feats``: spatial-block features ``[C_i, T, h_i, w_i]`` -> ``O_s [g * g, sum C_i]`` (see module doc)."""
    _check(feats, "spatial")
    if budget < 1:
        raise ValueError(f"spatial token budget must be >= 1, got {budget}")
    g = min([int(math.isqrt(budget))] + [min(f.shape[2], f.shape[3]) for f in feats])
    pooled = [F.adaptive_avg_pool2d(f.float().mean(dim=1), (g, g)).flatten(1).T for f in feats]  # [g*g, C_i]
    return torch.cat(pooled, dim=1).contiguous()


def temporal_tokens(feats: Sequence[torch.Tensor], budget: int) -> torch.Tensor:
    """``feats``: temporal-block features ``[C_i, T, h_i, w_i]`` -> ``O_t [min(budget, T), sum C_i]``."""
    _check(feats, "temporal")
    if budget < 1:
        raise ValueError(f"temporal token budget must be >= 1, got {budget}")
    n = min([budget] + [f.shape[1] for f in feats])
    pooled = [F.adaptive_avg_pool1d(f.float().mean(dim=(2, 3))[None], n)[0].T for f in feats]  # [n, C_i]
    return torch.cat(pooled, dim=1).contiguous()


def prior_tokens(spatial: List[torch.Tensor], temporal: List[torch.Tensor],
                 budget: Sequence[int] = DEFAULT_BUDGET) -> Dict[str, torch.Tensor]:
    """``{"spatial": O_s [Ns, Cs], "temporal": O_t [Nt, Ct]}`` (float32, CPU) from per-block features."""
    return {"spatial": spatial_tokens(spatial, int(budget[0])).cpu(),
            "temporal": temporal_tokens(temporal, int(budget[1])).cpu()}


def save_priors(priors: Dict[str, torch.Tensor], path) -> None:
    """Write ``priors`` in the format ``orster4d-construct --priors`` reads."""
    torch.save({"spatial": priors["spatial"].float().cpu().contiguous(),
                "temporal": priors["temporal"].float().cpu().contiguous()}, path)
