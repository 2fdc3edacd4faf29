"""Reader for D-NeRF synthetic scenes (Pumarola et al. 2021).

A scene folder holds ``transforms_train.json``, ``transforms_val.json`` and ``transforms_test.json``
(``camera_angle_x``; frames with ``file_path`` without extension, ``time`` in [0, 1] and a Blender
camera-to-world ``transform_matrix``) and RGBA PNGs at 800x800. Every frame has its own camera
(a monocular video), so frames carry no view id. The published protocol scores the ``test``
split at half resolution (400x400) on a white background: ``downscale=2``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from orster4d.data.dataset import DynamicDataset, load_dataset

SPLIT_FILES = tuple(f"transforms_{s}.json" for s in ("train", "val", "test"))


def is_dnerf(folder: Union[str, Path]) -> bool:
    folder = Path(folder)
    return any((folder / f).is_file() for f in SPLIT_FILES) and not (folder / "transforms.json").is_file()


def load_dnerf(folder: Union[str, Path], downscale: int = 1,
               background: Sequence[float] = (1.0, 1.0, 1.0)) -> DynamicDataset:
    """Reads a D-NeRF scene (all splits); ``downscale`` > 1 averages ``downscale``-pixel blocks and
    scales the intrinsics to match (2 gives the published 400x400)."""
    folder = Path(folder)
    if not is_dnerf(folder):
        raise ValueError(f"{folder}: not a D-NeRF scene (needs {', '.join(SPLIT_FILES)})")
    if int(downscale) < 1:
        raise ValueError(f"downscale must be a positive integer, got {downscale}")
    ds = load_dataset(folder, background)
    d = int(downscale)
    if d == 1:
        return ds
    if ds.width % d or ds.height % d:
        raise ValueError(f"{folder}: {ds.width}x{ds.height} frames are not divisible by downscale={d}")

    def pool(x):
        return F.avg_pool2d(x.permute(0, 3, 1, 2), d).permute(0, 2, 3, 1).contiguous()

    Ks = ds.Ks.clone()
    Ks[:, :2, :] /= d
    return DynamicDataset(images=pool(ds.images), alphas=None if ds.alphas is None else pool(ds.alphas),
                          viewmats=ds.viewmats, Ks=Ks, times=ds.times, view_ids=ds.view_ids, splits=ds.splits,
                          reference=ds.reference, files=ds.files, background=ds.background)
