"""Image metrics of a fitted asset on a dataset's frames (the training frames, or held-out ones)."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from orster4d.data.dataset import DynamicDataset
from orster4d.metrics import psnr, ssim
from orster4d.recon.losses import LPIPSTerm
from orster4d.recon.render import render_frames

__all__ = ["evaluate", "frame_kinds"]


def frame_kinds(view_ids: torch.Tensor, times: torch.Tensor, seen_view_ids: torch.Tensor,
                seen_times: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Kind of each held-out frame: ``view_ids, times [F]`` against the fitted frames' ``[S]``.

    Returns bool masks ``[F]``: ``novel_view`` (a camera not fitted, or unknown (id < 0), at a
    fitted time), ``novel_time`` (a fitted camera at a time not fitted) and ``novel_view_and_time``.
    Frames that are neither (a fitted camera at a fitted time) are in no mask.
    """
    novel_view = ~torch.isin(view_ids, seen_view_ids) | (view_ids < 0)
    novel_time = ~torch.isin(times, seen_times)
    return {"novel_view": novel_view & ~novel_time, "novel_time": novel_time & ~novel_view,
            "novel_view_and_time": novel_view & novel_time}


@torch.no_grad()
def evaluate(gauss, field, ds: DynamicDataset, device, lp: Optional[LPIPSTerm], max_frames: int, background,
             backend=None, seen: Optional[DynamicDataset] = None) -> Dict:
    """Mean PSNR (dB) / SSIM (and LPIPS when available, else None) over up to ``max_frames`` frames
    of ``ds``, evenly spread: ``{"frames", "psnr", "ssim", "lpips"}``.

    With ``seen`` (the fitted frames), the PSNR is also given per kind of held-out frame:
    ``psnr_by_kind`` maps ``novel_view`` (a camera not fitted, at a fitted time), ``novel_time``
    (a fitted camera at a time not fitted) and ``novel_view_and_time`` to ``{"frames", "psnr"}``.
    """
    idx = torch.linspace(0, ds.num_frames - 1, min(max_frames, ds.num_frames)).round().long().unique()
    pred = render_frames(gauss, field, ds.times[idx].to(device), ds.viewmats[idx].to(device), ds.Ks[idx].to(device),
                         ds.width, ds.height, background, backend)
    gt = ds.images[idx].to(device)
    per_frame = psnr(pred, gt).reshape(-1).cpu()
    res = {"frames": int(idx.numel()), "psnr": float(per_frame.mean()), "ssim": float(ssim(pred, gt).mean())}
    if lp is not None and lp.available:
        res["lpips"] = float(torch.cat([lp(pred[s:s + 8], gt[s:s + 8]) for s in range(0, pred.shape[0], 8)]).mean())
    else:
        res["lpips"] = None
    if seen is not None and ds.view_ids is not None and seen.view_ids is not None:
        kinds = frame_kinds(ds.view_ids[idx], ds.times[idx], seen.view_ids, seen.times)
        res["psnr_by_kind"] = {k: {"frames": int(m.sum()), "psnr": float(per_frame[m].mean()) if m.any() else None}
                               for k, m in kinds.items()}
    return res
