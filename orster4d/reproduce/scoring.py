"""Generation on held-out objects and scoring against their true orbital videos.

For one stage-4 checkpoint, each held-out object and each condition kind the model was trained
for (``image``: the true first view I0; ``text``: the object's prompt; ``static3d``: its true
static orbital video) generates one orbital video ``[T, H, W, 3]`` and compares it frame by frame
with the true orbital video: PSNR (dB), SSIM, and LPIPS when its backbone weights are found
(:mod:`orster4d.evaluation.weights`, never downloaded); FVD on I3D features over all held-out
objects of one condition when the I3D weights are found and the videos have at least 9 frames. An
absent metric is reported with its reason, never as a number.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

CONDITIONS = {"image": "image-to-4D", "text": "text-to-4D", "static3d": "3D-to-4D"}
METRICS = ("psnr", "ssim", "lpips", "fvd")


def true_videos(folder: Union[str, Path]) -> Dict[str, object]:
    """``{"video": [T, H, W, 3], "static": [T, H, W, 3], "prompt": str}`` of a held-out object folder."""
    import json

    from orster4d.generation.training.data import read_video

    folder = Path(folder)
    meta = json.loads((folder / "transforms.json").read_text())
    return {"video": read_video(str(folder))["video"], "static": read_video(str(folder / meta["static"]))["video"],
            "prompt": meta["prompt"]}


def _weights(lpips_weights: Optional[str], i3d: Optional[str], device):
    """Loaded LPIPS (VGG) / I3D models (or None) and the reasons for the absent ones.

    LPIPS: ``lpips_weights`` (a file or folder), else ``$ORSTER4D_WEIGHTS/lpips/``, else the
    torch hub cache (:mod:`orster4d.perceptual`); I3D: ``i3d``, else ``$ORSTER4D_WEIGHTS/i3d/``."""
    import os

    from orster4d.evaluation.i3d import load_i3d
    from orster4d.evaluation.weights import ENV, I3D_CANDIDATES, MissingWeights, locate
    from orster4d.perceptual import try_load_lpips

    models, absent = {}, {}
    src = lpips_weights or (os.path.join(os.environ[ENV], "lpips") if os.environ.get(ENV) else None)
    model, reason = try_load_lpips(src, "vgg", device)
    if model is None:
        absent["lpips"] = reason
    else:
        models["lpips"] = model
    try:
        models["i3d"] = load_i3d(locate("FVD (I3D)", i3d, I3D_CANDIDATES, "--i3d"), device)
    except MissingWeights as e:
        absent["fvd"] = e.reason
    return models, absent


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def save_strip(path: Path, generated: torch.Tensor, true: torch.Tensor) -> None:
    """A PNG with the generated frames above the true ones (for figures)."""
    from PIL import Image

    rows = [torch.cat(list(v), dim=1) for v in (generated, true)]
    img = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


@torch.no_grad()
def score_checkpoint(checkpoint: Union[str, Path], heldout: List[dict], seed: int, inference_steps: int,
                     guidance_scale: float, device="cpu", lpips_weights: Optional[str] = None,
                     i3d: Optional[str] = None, strips: Optional[Union[str, Path]] = None) -> Dict:
    """Generate and score every held-out object under every trained condition kind.

    Args:
        checkpoint: a stage-4 checkpoint folder (``.../stage4/final``).
        heldout: ``[{"name", "folder", ...}]`` (:func:`orster4d.data.world.heldout_objects`).
        seed: seeds the initial noise of each generation (with the object and the condition).
    Returns:
        ``{"conditions": {kind: {"per_object": [{"name", "psnr", "ssim", "lpips"}], "mean": {metric:
        value or None}}}, "absent": {metric: reason}}``.
    """
    from orster4d.evaluation.fvd import fvd
    from orster4d.evaluation.i3d import MIN_FRAMES, i3d_features
    from orster4d.perceptual import lpips_distance
    from orster4d.generation.pipeline import pipeline_from_checkpoint
    from orster4d.metrics import psnr, ssim

    if not heldout:
        raise ValueError("scoring: no held-out objects")
    truth = [true_videos(o["folder"]) for o in heldout]
    models, absent = _weights(lpips_weights, i3d, device)
    pipe = pipeline_from_checkpoint(str(checkpoint)).to(torch.device(device))
    pipe.set_progress_bar_config(disable=True)
    T = pipe.trajectory.num_frames
    for o, t in zip(heldout, truth):
        if tuple(t["video"].shape) != (T, pipe.trajectory.height, pipe.trajectory.width, 3):
            raise ValueError(f"scoring: {o['folder']} holds a {tuple(t['video'].shape)} video, the model makes "
                             f"{T} frames of {pipe.trajectory.width}x{pipe.trajectory.height}")
    if "i3d" in models and T < MIN_FRAMES:
        absent["fvd"] = f"FVD needs videos of at least {MIN_FRAMES} frames (I3D), these have {T}"
        models.pop("i3d")
    out = {"conditions": {}, "absent": absent}
    for kind in [k for k in CONDITIONS if k in pipe.kinds]:
        per, gens = [], []
        for o, t in zip(heldout, truth):
            cond = {"image": {"image": t["video"][0]}, "text": {"prompt": t["prompt"]},
                    "static3d": {"static_video": t["static"]}}[kind]
            gen = torch.Generator().manual_seed(_seed(seed, o["name"], kind))
            video = pipe(**cond, num_inference_steps=inference_steps, guidance_scale=guidance_scale,
                         generator=gen).video.clamp(0, 1)
            rec = {"name": o["name"], "psnr": float(psnr(video, t["video"]).mean()),
                   "ssim": float(ssim(video, t["video"]).mean()), "lpips": None}
            if "lpips" in models:
                rec["lpips"] = float(lpips_distance(models["lpips"], video.to(device), t["video"].to(device)).mean())
            per.append(rec)
            gens.append(video)
            if strips is not None:
                save_strip(Path(strips) / f"{o['name']}_{kind}.png", video, t["video"])
        mean = {m: float(np.mean([r[m] for r in per])) if all(r[m] is not None for r in per) else None
                for m in ("psnr", "ssim", "lpips")}
        mean["fvd"] = None
        if "i3d" in models and len(per) >= 2:
            mean["fvd"] = fvd(i3d_features(models["i3d"], torch.stack(gens)),
                              i3d_features(models["i3d"], torch.stack([t["video"] for t in truth])))
        out["conditions"][kind] = {"per_object": per, "mean": mean}
    return out
