"""Loss terms of the stages that are not plain MSE: L_orster wiring and L_const (Eq. 15).

Feature dicts map block names to ``[B, C, T, h, w]`` tensors.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from orster4d.generation.models.base import SavedModel


def match_resolution(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Resize ``x [B, C, T, h, w]`` per frame (bilinear) to ``like``'s ``(h, w)``."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    b, c, t = x.shape[:3]
    y = F.interpolate(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, *x.shape[-2:]), size=like.shape[-2:],
                      mode="bilinear", align_corners=False)
    return y.reshape(b, t, c, *like.shape[-2:]).permute(0, 2, 1, 3, 4)


class OrsterTransferLoss(SavedModel):
    """L_orster (plus the kernel fit) over the ``teacher_map``; a saved model (stage 2's ``orster/``).

    The map's spatial entries and temporal entries are paired in order (the i-th spatial with
    the i-th temporal): each pair is one :class:`orster4d.generation.orster.OrsterTransfer`, fed with the
    spatial teacher's block, the temporal teacher's block, the student's spatial-channel block and
    the student's temporal-channel block. Teacher features are resized per frame to the student
    spatial block's ``(h, w)`` when their grids differ, so all four are aligned token for token.
    Returns the mean over pairs of ``orster + nll`` and logs of its parts.
    """

    @register_to_config
    def __init__(self, teacher_map: List[dict], teacher_channels: List[int], student_channels: List[int],
                 lambda_o: float = 0.5, options: dict = None):
        super().__init__()
        from orster4d.generation.orster import OrsterTransfer

        sp = [(e, ct, cs) for e, ct, cs in zip(teacher_map, teacher_channels, student_channels) if e["teacher"] == "spatial"]
        tp = [(e, ct, cs) for e, ct, cs in zip(teacher_map, teacher_channels, student_channels) if e["teacher"] == "temporal"]
        if len(sp) != len(tp) or not sp:
            raise ValueError(f"teachers.map: needs matching spatial and temporal entries (paired in order), got "
                             f"{len(sp)} spatial and {len(tp)} temporal")
        self.entries = [(a[0], b[0]) for a, b in zip(sp, tp)]
        self.pairs = nn.ModuleList(
            OrsterTransfer(a[1], b[1], lambda_o=lambda_o, student_spatial_channels=a[2],
                           student_temporal_channels=b[2], **(options or {}))
            for a, b in zip(sp, tp))

    def forward(self, teacher_feats: Dict[str, Dict[str, torch.Tensor]],
                student_feats: Dict[str, Dict[str, torch.Tensor]]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        outs = []
        for (es, et), mod in zip(self.entries, self.pairs):
            f4d_s = student_feats["spatial"][es["student"]]
            f4d_t = match_resolution(student_feats["temporal"][et["student"]], f4d_s)
            f3d_s = match_resolution(teacher_feats["spatial"][es["block"]], f4d_s)
            fv_t = match_resolution(teacher_feats["temporal"][et["block"]], f4d_s)
            outs.append(mod(f4d_s.float(), f4d_t.float(), f3d_s, fv_t))
        mean = lambda k: torch.stack([o[k] for o in outs]).mean()  # noqa: E731
        return mean("loss"), {k: mean(k).detach() for k in ("orster", "spatial", "temporal", "nll")}


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
