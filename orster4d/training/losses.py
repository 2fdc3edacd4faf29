"""Loss terms of the stages that are not plain MSE: L_orster wiring and L_const (Eq. 15).

Feature dicts map block names to ``[B, C, T, h, w]`` tensors.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def match_resolution(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Resize ``x [B, C, T, h, w]`` per frame (bilinear) to ``like``'s ``(h, w)``."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    b, c, t = x.shape[:3]
    y = F.interpolate(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, *x.shape[-2:]), size=like.shape[-2:],
                      mode="bilinear", align_corners=False)
    return y.reshape(b, t, c, *like.shape[-2:]).permute(0, 2, 1, 3, 4)


class OrsterTransferLoss(nn.Module):
    """L_orster over the ``teacher_map`` entries (SPEC section 4).

    ``teacher_channels[i]`` / ``student_channels[i]``: widths of entry ``i``'s teacher and student
    blocks. Spatial entries pair the spatial teacher's block with the student's spatial-channel
    block, temporal entries the temporal ones; the loss is
    ``lambda_o * mean_spatial + (1 - lambda_o) * mean_temporal`` of the transfer module's per-pair
    losses (``orster4d.orster``).
    """

    def __init__(self, teacher_map: List[dict], teacher_channels: List[int], student_channels: List[int],
                 lambda_o: float = 0.5, options: dict = None):
        super().__init__()
        self.teacher_map = [dict(e) for e in teacher_map]
        self.lambda_o = float(lambda_o)
        self.pairs = nn.ModuleList(
            _pair_module(ct, cs, e["teacher"], options or {})
            for e, ct, cs in zip(self.teacher_map, teacher_channels, student_channels))

    def forward(self, teacher_feats: Dict[str, Dict[str, torch.Tensor]],
                student_feats: Dict[str, Dict[str, torch.Tensor]]) -> Tuple[torch.Tensor, Dict[str, float]]:
        sums = {"spatial": [], "temporal": []}
        for e, mod in zip(self.teacher_map, self.pairs):
            role = e["teacher"]
            f_s = student_feats[role][e["student"]]
            f_t = match_resolution(teacher_feats[role][e["block"]], f_s)
            sums[role].append(mod(f_t, f_s))
        zero = next(iter(self.parameters())).new_zeros(())
        ls = torch.stack(sums["spatial"]).mean() if sums["spatial"] else zero
        lt = torch.stack(sums["temporal"]).mean() if sums["temporal"] else zero
        loss = self.lambda_o * ls + (1.0 - self.lambda_o) * lt
        return loss, {"orster_s": float(ls), "orster_t": float(lt)}


class _ProjectedL1(nn.Module):
    """Placeholder pair loss: ``|f_student - P f_teacher|`` with a learned 1x1 projection P."""

    def __init__(self, ct: int, cs: int):
        super().__init__()
        self.proj = nn.Conv3d(ct, cs, 1)

    def forward(self, f_teacher, f_student):
        return (f_student - self.proj(f_teacher)).abs().mean()


def _pair_module(ct: int, cs: int, role: str, options: dict) -> nn.Module:
    return _ProjectedL1(ct, cs)


def temporal_smoothness(feats: Dict[str, torch.Tensor]) -> torch.Tensor:
    """L_temp: mean over blocks of ``|F(k+1) - F(k)|^2`` along frames (``[B, C, T, h, w]``)."""
    vals = [(f[:, :, 1:] - f[:, :, :-1]).pow(2).mean() for f in feats.values()]
    return torch.stack(vals).mean()


def feature_alignment(fs: List[torch.Tensor], ft: List[torch.Tensor]) -> torch.Tensor:
    """L_align: ``1 - cos(F_s, F_t)`` over channels per token, averaged; pairs are matched by
    order (spatial tap i with temporal tap i) and resized to the spatial one's resolution."""
    vals = []
    for a, b in zip(fs, ft):
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"L_align: paired taps have {a.shape[1]} and {b.shape[1]} channels; "
                             f"pair student blocks of equal width")
        vals.append(1.0 - F.cosine_similarity(a, match_resolution(b, a), dim=1).mean())
    return torch.stack(vals).mean()


LPIPS_FILE = "lpips_alex.pth"


def load_lpips(folder: str, device="cpu"):
    """A frozen LPIPS(alex) with all weights (backbone and linear heads) from ``folder/lpips_alex.pth``."""
    import lpips

    from ..diffusion.base import freeze, require_file

    path = require_file(os.path.join(folder or "", LPIPS_FILE), "LPIPS (loss.lpips_dir)")
    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return freeze(model).to(device)
