"""Generation on held-out objects and scoring against their true orbital videos.

For one stage-4 checkpoint, each held-out object and each condition kind the model was trained
for (``image``: the true first view I0; ``text``: the object's prompt; ``static3d``: its true
static orbital video) generates one orbital video ``[T, H, W, 3]`` and compares it frame by frame
with the true orbital video: PSNR (dB), SSIM, and LPIPS when its backbone weights are found
(:mod:`orster4d.evaluation.weights`, never downloaded); FVD on I3D features over all held-out
objects of one condition when the I3D weights are found and the videos have at least 9 frames. An
absent metric is reported with its reason, never as a number.

4D assets (:func:`generate_heldout`, then :func:`score_assets`): for each held-out object and
condition kind, ``orster4d-generate --video-only`` (the package's generation path, with the seed of
the scored video, so the asset is built from that very video) writes the generated orbital video
(with its reference-view video when the model makes one), the static orbital video V' and the
prior tokens; ``orster4d-construct``'s :func:`~orster4d.recon.fit.construct` fits a 4D asset to
them (ST-HexPlane on the priors) and renders it at the held-out views and times of the object's
multi-view ground truth (its ``test`` split): PSNR (dB), SSIM, LPIPS as above.
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


def lpips_source(lpips_weights: Optional[str]) -> Optional[str]:
    """Where the LPIPS (VGG) backbone is looked for: ``lpips_weights``, else ``$ORSTER4D_WEIGHTS/lpips/``,
    else None (the torch hub cache, :mod:`orster4d.perceptual`)."""
    import os

    from orster4d.evaluation.weights import ENV

    return lpips_weights or (os.path.join(os.environ[ENV], "lpips") if os.environ.get(ENV) else None)


def _weights(lpips_weights: Optional[str], i3d: Optional[str], device):
    """Loaded LPIPS (VGG) / I3D models (or None) and the reasons for the absent ones.

    LPIPS: ``lpips_weights`` (a file or folder), else ``$ORSTER4D_WEIGHTS/lpips/``, else the
    torch hub cache (:mod:`orster4d.perceptual`); I3D: ``i3d``, else ``$ORSTER4D_WEIGHTS/i3d/``."""
    from orster4d.evaluation.i3d import load_i3d
    from orster4d.evaluation.weights import I3D_CANDIDATES, MissingWeights, locate
    from orster4d.perceptual import try_load_lpips

    models, absent = {}, {}
    model, reason = try_load_lpips(lpips_source(lpips_weights), "vgg", device)
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
    from orster4d.data.dataset import write_png

    rows = [torch.cat(list(v), dim=1) for v in (generated, true)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, torch.cat(rows, dim=0))


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


# ConstructConfig fields the protocol sets itself (inputs, output, device, seed, weights, bookkeeping)
# or that are not plain values (densify)
CONSTRUCT_FIXED = ("input", "output", "static", "priors", "eval_data", "device", "seed", "lpips_weights",
                   "progress", "densify")


def check_construct_settings(settings: Dict, who: str) -> None:
    """ValueError naming ``who`` unless every key of ``settings`` is a ConstructConfig field that a
    preset or a row may set (not one of :data:`CONSTRUCT_FIXED`)."""
    from dataclasses import fields

    from orster4d.recon.config import ConstructConfig

    allowed = {f.name for f in fields(ConstructConfig)} - set(CONSTRUCT_FIXED)
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"{who}: construct settings {unknown} are not ConstructConfig fields the protocol lets a "
                         f"preset or a row set (the protocol sets {list(CONSTRUCT_FIXED)} itself)")


def generate_heldout(checkpoint: Union[str, Path], heldout: List[dict], seed: int, out: Union[str, Path],
                     inference_steps: int, guidance_scale: float, prior_steps: int, device="cpu",
                     kinds: Optional[List[str]] = None) -> Dict:
    """Run ``orster4d-generate --video-only`` for every held-out object and trained condition kind.

    Args:
        checkpoint: a stage-4 checkpoint folder; its pipeline is exported to ``out/pipeline``.
        heldout: ``[{"name", "folder", ...}]`` (:func:`orster4d.data.world.heldout_objects`).
        seed: as :func:`score_checkpoint`'s: object ``o`` under kind ``k`` starts from the same noise
            as the video scored there.
        out: the folder to write; ``out/<name>_<kind>/`` is one ``orster4d-generate`` output
            (``video/``, ``static/`` when made, ``priors.pt``, ``generation.json``).
        kinds: the condition kinds to generate (None: every kind the model was trained for); a
            kind the model lacks is a ValueError.
    Returns:
        ``{"kinds": [...], "objects": {"<name>_<kind>": folder}}`` (folders relative to ``out``).
    """
    from orster4d.cli.generate import build_parser, generate
    from orster4d.data.dataset import write_png
    from orster4d.generation.pipeline import export_checkpoint, load_pipeline

    out = Path(out)
    pipe_dir = out / "pipeline"
    export_checkpoint(str(checkpoint), str(pipe_dir), overwrite=True)
    trained = load_pipeline(str(pipe_dir)).kinds
    if kinds is not None and set(kinds) - set(trained):
        raise ValueError(f"scoring: asked for condition kinds {sorted(set(kinds) - set(trained))} the model was not "
                         f"trained for (it has {list(trained)})")
    kinds = [k for k in CONDITIONS if k in trained and (kinds is None or k in kinds)]
    done = {}
    for o in heldout:
        truth = true_videos(o["folder"])
        for kind in kinds:
            tag = f"{o['name']}_{kind}"
            if kind == "image":
                png = out / "conditions" / f"{o['name']}_i0.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                write_png(png, truth["video"][0])
                cond = ["--image", str(png)]
            elif kind == "text":
                cond = ["--prompt", truth["prompt"]]
            else:
                cond = ["--static-video", str(Path(o["folder"]) / "static")]
            argv = cond + ["--model", str(pipe_dir), "-o", str(out / tag), "--seed", str(_seed(seed, o["name"], kind)),
                           "--steps", str(inference_steps), "--guidance", str(guidance_scale),
                           "--prior-steps", str(prior_steps), "--device", str(device), "--dtype", "float32",
                           "--video-only", "--overwrite", "--no-progress"]
            generate(build_parser().parse_args(argv), log=lambda line: None)
            done[tag] = tag
    return {"kinds": kinds, "objects": done}


def score_assets(generated: Union[str, Path], heldout: List[dict], kinds: List[str], out: Union[str, Path],
                 construct: Dict, seed: int, device="cpu", lpips_weights: Optional[str] = None) -> Dict:
    """Build and score one 4D asset per held-out object and condition kind.

    Args:
        generated: a :func:`generate_heldout` folder.
        kinds: the condition kinds it generated.
        out: the folder to write; ``out/<name>_<kind>/`` is one asset folder.
        construct: :class:`~orster4d.recon.config.ConstructConfig` fields (schedule, sizes, switches
            such as ``prior_sides`` or ``fine_iters=0``); the inputs, the output, the held-out ground
            truth (``eval_data``: the object's ``multiview/``, whose ``test`` split is scored), the
            device and the seed (``seed``) are set here.
        lpips_weights: LPIPS (VGG) backbone for the loss and the metric (None: the hub cache, else absent).
    Returns:
        ``{"conditions": {kind: {"per_object": [{"name", "psnr", "ssim", "lpips", "frames",
        "fit_psnr"}], "mean": {metric: value or None}}}, "absent": {metric: reason}}``; ``fit_psnr`` is
        the asset's PSNR on the generated video it was fitted to.
    """
    from orster4d.recon import ConstructConfig, construct as run_construct

    generated, out = Path(generated), Path(out)
    check_construct_settings(construct, "scoring")
    res = {"conditions": {}, "absent": {}}  # (FVD is a score of the generated videos, not of asset renders)
    for kind in kinds:
        per = []
        for o in heldout:
            src = generated / f"{o['name']}_{kind}"
            static = src / "static"
            cfg = ConstructConfig(input=str(src / "video"), output=str(out / f"{o['name']}_{kind}"),
                                  static=str(static) if static.is_dir() else None, priors=str(src / "priors.pt"),
                                  eval_data=str(Path(o["folder"]) / "multiview"), device=str(device),
                                  seed=int(seed), lpips_weights=lpips_weights,
                                  progress=False, exports=[], tensorboard=False, preview_every=0, checkpoint_every=0)
            for k, v in construct.items():
                setattr(cfg, k, v)
            metrics = run_construct(cfg, overwrite=True, log=lambda line: None)
            held = metrics["heldout"]
            if held is None:
                raise ValueError(f"scoring: {o['folder']}/multiview has no held-out (test) frames to score the asset on")
            if not metrics["lpips_available"]:
                res["absent"]["lpips"] = metrics["lpips_unavailable_reason"]
            per.append({"name": o["name"], "psnr": held["psnr"], "ssim": held["ssim"], "lpips": held["lpips"],
                        "frames": held["frames"], "fit_psnr": metrics["train"]["psnr"]})
        mean = {m: float(np.mean([r[m] for r in per])) if all(r[m] is not None for r in per) else None
                for m in ("psnr", "ssim", "lpips")}
        mean["fvd"] = None
        res["conditions"][kind] = {"per_object": per, "mean": mean}
    return res
