"""Scores against a reference dataset: PSNR / SSIM / LPIPS per frame, and the videos FVD compares.

Every reference frame (every view and time, all splits) is rendered from the asset at that
frame's camera and time and compared with it. When the reference has a ``train`` split, its frames
are the ones the asset was fitted to, and the others are also scored by kind (novel view, novel
time, both) with the same rule as ``orster4d-construct``'s held-out metrics.

Videos for FVD: the frames of one camera (one view id) in time order, or, for frames without a
view id (monocular datasets such as D-NeRF), the frames of one split in time order; an orbital
dataset (with ``trajectory.json``) gives its orbital video and its reference-view video. Each video is
cut into consecutive clips of ``clip_frames`` frames (0: the whole video). The asset is rendered at
the same cameras and times, so FVD compares rendered and reference clips of the same views.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from orster4d.data.dataset import DynamicDataset
from orster4d.metrics import psnr, ssim


class ReferenceError(ValueError):
    """A reference dataset that cannot be used (the message names the file and the problem)."""


def check_reference(ds: DynamicDataset, asset, where: str) -> None:
    """Raises :class:`ReferenceError` (or the asset's error) before any rendering when ``ds``
    cannot be scored against ``asset``: non-finite frames, intrinsics outside the frame, or
    times the asset cannot be rendered at."""
    bad = ~torch.isfinite(ds.images.flatten(1)).all(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ReferenceError(f"{where}: frame {ds.files[i]} contains NaN or Inf ({int(bad.sum())} such frames)")
    cx, cy = ds.Ks[:, 0, 2], ds.Ks[:, 1, 2]
    if bool(((cx <= 0) | (cx >= ds.width) | (cy <= 0) | (cy >= ds.height)).any()):
        raise ReferenceError(f"{where}: intrinsics put the principal point outside the {ds.width}x{ds.height} "
                             f"frames: the cameras do not match the frames' resolution")
    asset.check_times(ds.times, f"reference {where}")


def render_reference(asset, ds: DynamicDataset, device=None, backend=None) -> torch.Tensor:
    """``[F, H, W, 3]`` on ``device``: the asset at every reference frame's camera and time."""
    from orster4d.evaluation.asset import render_asset

    return render_asset(asset, ds.times, ds.viewmats, ds.Ks, ds.width, ds.height, ds.background, device, backend)


def _mean(x: torch.Tensor, m: torch.Tensor) -> Optional[float]:
    return float(x[m].mean()) if bool(m.any()) else None


def image_metrics(pred: torch.Tensor, ds: DynamicDataset, lpips_model=None) -> Dict:
    """Mean PSNR, SSIM and LPIPS (None without a model) of ``pred [F, H, W, 3]`` against
    ``ds.images``, overall and (with a ``train`` split) per kind of frame."""
    from orster4d.recon.evaluate import frame_kinds

    gt = ds.images.to(pred.device)
    per = {"psnr": psnr(pred, gt).cpu(),
           "ssim": torch.cat([ssim(pred[s:s + 16], gt[s:s + 16]).cpu() for s in range(0, gt.shape[0], 16)])}
    if lpips_model is not None:
        from orster4d.evaluation.weights import lpips_distance

        dev = next(lpips_model.parameters()).device
        per["lpips"] = torch.cat([lpips_distance(lpips_model, pred[s:s + 8].to(dev), gt[s:s + 8].to(dev)).cpu()
                                  for s in range(0, gt.shape[0], 8)])
    everything = torch.ones(ds.num_frames, dtype=torch.bool)
    res = {"frames": ds.num_frames, **{k: _mean(v, everything) for k, v in per.items()}}
    if lpips_model is None:
        res["lpips"] = None
    if ds.has_split("train") and any(s != "train" for s in ds.splits):
        train = torch.tensor([s == "train" for s in ds.splits])
        held = ~train
        kinds = {"seen": train}
        kinds.update({k: m & held for k, m in frame_kinds(ds.view_ids, ds.times, ds.view_ids[train],
                                                          ds.times[train]).items()})
        res["by_kind"] = {k: {"frames": int(m.sum()), **{n: _mean(v, m) for n, v in per.items()}}
                          for k, m in kinds.items()}
    else:
        res["by_kind"] = None
    return res


def reference_clips(ds: DynamicDataset, clip_frames: int = 16, min_frames: int = 9) -> List[torch.Tensor]:
    """Frame indices ``[clip_frames]`` (or a whole video) of every FVD clip of ``ds`` (module docstring)."""
    videos = []
    if ds.trajectory is not None:  # an orbital video (+ its fixed reference-view video)
        videos += [(~ds.reference).nonzero()[:, 0], ds.reference.nonzero()[:, 0]]
        unknown = torch.zeros(ds.num_frames, dtype=torch.bool)
    else:
        for v in torch.unique(ds.view_ids[ds.view_ids >= 0]).tolist():
            videos.append((ds.view_ids == v).nonzero()[:, 0])
        unknown = ds.view_ids < 0
    for split in sorted(set(ds.splits)):
        idx = (unknown & torch.tensor([s == split for s in ds.splits])).nonzero()[:, 0]
        if idx.numel():
            videos.append(idx)
    clips = []
    for idx in videos:
        idx = idx[torch.argsort(ds.times[idx], stable=True)]
        if clip_frames <= 0 or idx.numel() < clip_frames:
            if idx.numel() >= min_frames:
                clips.append(idx)
            continue
        for s in range(0, idx.numel() - clip_frames + 1, clip_frames):
            clips.append(idx[s:s + clip_frames])
    return clips
