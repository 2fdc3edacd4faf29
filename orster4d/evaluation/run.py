"""The evaluation run behind ``orster4d-eval``: every input checked first, then the six metrics.

:func:`prepare` reads and checks the assets, references, conditions and weights (raising
``ValueError`` subclasses before any rendering); :func:`evaluate` renders and scores, returning
the ``eval.json`` dict (see :mod:`orster4d.evaluation.tables`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from orster4d.io.asset import Asset, read_asset
from orster4d.evaluation.weights import (CLIP_CANDIDATES, I3D_CANDIDATES, MissingWeights, lpips_candidates, locate)

METRICS = ("clip_f", "clip_o", "ssim", "psnr", "lpips", "fvd")


class EvalInputError(ValueError):
    """Bad input found before any rendering (the message names the file and the problem)."""


@dataclass
class EvalOptions:
    """What :func:`prepare` needs; the CLI flags mirror these fields."""

    assets: List[str]
    reference: List[str] = field(default_factory=list)  # none, one shared, or one per asset
    prompt: Optional[str] = None
    image: Optional[str] = None
    clip: Optional[str] = None
    clip_model: Optional[str] = None
    lpips_weights: Optional[str] = None
    lpips_net: str = "vgg"
    i3d: Optional[str] = None
    skip_missing: bool = False
    fvd_clip_frames: int = 16
    clip_views: int = 36
    dnerf_downscale: int = 1
    background: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    device: str = "auto"
    backend: Optional[str] = None
    timing: bool = False


@dataclass
class Plan:
    opts: EvalOptions
    device: torch.device
    assets: List[Asset]
    references: List[Optional[object]]  # DynamicDataset per asset
    reference_notes: List[Optional[str]]
    conditions: List[Optional[Dict]]  # {"prompt": str} | {"image": tensor, "path": str} per asset
    models: Dict[str, object]
    absent: Dict[str, str]  # weight family -> reason
    weight_paths: Dict[str, str]
    timing: Dict[str, float]


def _device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


@contextmanager
def _timed(store: Optional[Dict], key: str, device: torch.device):
    if store is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def load_reference(path: str, asset: Asset, opts: EvalOptions):
    """The reference dataset at ``path`` (procedural scene root, Consistent4D object, D-NeRF scene, or
    any layout :func:`orster4d.data.dataset.load_dataset` reads) and a note on assumptions, or None."""
    from orster4d.data.consistent4d import _cameras_file, is_consistent4d, load_consistent4d
    from orster4d.data.dataset import load_dataset
    from orster4d.data.dnerf import is_dnerf, load_dnerf

    p = Path(path)
    bg = tuple(opts.background)
    if (p / "multiview").is_dir() and (p / "scene.json").is_file():
        return load_dataset(p / "multiview", bg), None
    if is_consistent4d(p):
        if _cameras_file(p) is not None:
            return load_consistent4d(p, background=bg), None
        tr = asset.trajectory
        n = sum(1 for q in p.iterdir() if q.is_dir() and q.name.startswith("eval_"))
        cams = {"azimuths_deg": [tr.azimuth_offset_deg + 360.0 * k / n for k in range(n)],
                "elevation_deg": tr.elevation_deg, "radius": tr.radius, "fov_deg": tr.fov_deg, "center": tr.center}
        note = (f"no cameras.json: assumed {n} views evenly spaced in azimuth from the asset's front, at the "
                f"asset's elevation {tr.elevation_deg}, radius {tr.radius} and field of view {tr.fov_deg}")
        return load_consistent4d(p, cams, bg), note
    if is_dnerf(p):
        return load_dnerf(p, opts.dnerf_downscale, bg), None
    return load_dataset(p, bg), None


def _condition(asset: Asset, opts: EvalOptions) -> Optional[Dict]:
    from orster4d.data.dataset import _read_image

    if opts.prompt is not None and opts.image is not None:
        raise EvalInputError("give --prompt or --image, not both (the CLIP scores compare against one condition)")
    prompt, image, where = opts.prompt, opts.image, "the command line"
    if prompt is None and image is None:
        prompt, image = asset.meta.get("prompt"), asset.meta.get("image")
        where = f"{asset.folder / 'condition.json'}"
        if prompt is not None and image is not None:
            raise EvalInputError(f"{where}: holds both a prompt and an image; keep one")
        if image is not None:
            image = str(asset.folder / image)
    if prompt is not None:
        if not str(prompt).strip():
            raise EvalInputError(f"{where}: the prompt is empty")
        return {"prompt": str(prompt)}
    if image is not None:
        try:
            rgb, _ = _read_image(Path(image), tuple(opts.background))
        except ValueError as e:
            raise EvalInputError(f"condition image: {e}") from e
        return {"image": rgb, "path": str(image)}
    return None


def _load_weights(opts: EvalOptions, need: Dict[str, bool], device) -> tuple:
    from orster4d.evaluation.i3d import load_i3d
    from orster4d.evaluation.weights import load_clip, load_lpips

    models, absent, paths = {}, {}, {}
    specs = {
        "clip": ("CLIP-F/CLIP-O (CLIP)", opts.clip, CLIP_CANDIDATES, "--clip", True,
                 lambda p: load_clip(p, opts.clip_model, device)),
        "lpips": ("LPIPS", opts.lpips_weights, lpips_candidates(opts.lpips_net), "--lpips-weights", False,
                  lambda p: load_lpips(p, opts.lpips_net, device)),
        "i3d": ("FVD (I3D)", opts.i3d, I3D_CANDIDATES, "--i3d", False, lambda p: load_i3d(p, device)),
    }
    for key, (metric, explicit, cands, flag, folder_ok, loader) in specs.items():
        if not need[key]:
            continue
        try:
            path = locate(metric, explicit, cands, flag, folder_ok)
            models[key] = loader(path)
            paths[key] = str(path)
        except MissingWeights as e:
            if not opts.skip_missing:
                raise
            absent[key] = str(e)
    return models, absent, paths


def prepare(opts: EvalOptions) -> Plan:
    """Reads and checks every input and loads the networks; raises before any rendering."""
    if not opts.assets:
        raise EvalInputError("no asset folder given")
    if opts.prompt is not None and opts.image is not None:
        raise EvalInputError("give --prompt or --image, not both (the CLIP scores compare against one condition)")
    if len(opts.reference) not in (0, 1, len(opts.assets)):
        raise EvalInputError(f"{len(opts.reference)} references for {len(opts.assets)} assets: give one shared "
                             f"reference or one per asset (in the same order)")
    if opts.fvd_clip_frames and opts.fvd_clip_frames < 9:
        raise EvalInputError(f"--fvd-clip-frames must be 0 (whole videos) or >= 9 (I3D's minimum), got "
                             f"{opts.fvd_clip_frames}")
    device = _device(opts.device)
    timing: Dict[str, float] = {}
    with _timed(timing, "load_inputs", device):
        assets = [read_asset(a) for a in opts.assets]
        refs, notes = [], []
        for i, asset in enumerate(assets):
            if not opts.reference:
                refs.append(None)
                notes.append(None)
                continue
            path = opts.reference[0 if len(opts.reference) == 1 else i]
            try:
                ds, note = load_reference(path, asset, opts)
            except ValueError as e:
                raise EvalInputError(f"reference {path}: {e}") from e
            from orster4d.evaluation.reference import check_reference

            check_reference(ds, asset, path)
            refs.append(ds)
            notes.append(note)
        conditions = [_condition(a, opts) for a in assets]
    need = {"clip": any(c is not None for c in conditions), "lpips": bool(opts.reference), "i3d": bool(opts.reference)}
    with _timed(timing, "load_weights", device):
        models, absent, paths = _load_weights(opts, need, device)
    return Plan(opts, device, assets, refs, notes, conditions, models, absent, paths, timing)


def _fvd_features(model, videos: torch.Tensor, clips: List[torch.Tensor]) -> torch.Tensor:
    """I3D features ``[len(clips), D]`` of ``videos[clip]`` for every clip (batched by clip length)."""
    from orster4d.evaluation.i3d import i3d_features

    feats: List[Optional[torch.Tensor]] = [None] * len(clips)
    for n in sorted({c.numel() for c in clips}):
        which = [i for i, c in enumerate(clips) if c.numel() == n]
        f = i3d_features(model, torch.stack([videos[clips[i]] for i in which]))
        for j, i in enumerate(which):
            feats[i] = f[j]
    return torch.stack(feats)


def evaluate(plan: Plan) -> Dict:
    """Scores every asset of ``plan``; returns the ``eval.json`` dict."""
    from orster4d.evaluation.clip_score import ClipScorer, clip_scores
    from orster4d.evaluation.fvd import fvd
    from orster4d.evaluation.reference import image_metrics, reference_clips, render_reference

    opts, dev = plan.opts, plan.device
    rows, pooled = [], {"pred": [], "ref": []}
    scorer = ClipScorer(plan.models["clip"]) if "clip" in plan.models else None
    for asset, ds, note, cond in zip(plan.assets, plan.references, plan.reference_notes, plan.conditions):
        tm: Optional[Dict[str, float]] = {} if opts.timing else None
        metrics: Dict[str, Optional[float]] = {k: None for k in METRICS}
        absent: Dict[str, str] = {}
        details: Dict = {"timestamps": asset.num_frames}
        # ---- against the condition
        if cond is None:
            for k in ("clip_f", "clip_o"):
                absent[k] = "no condition: pass --prompt or --image, or give the asset a condition.json"
        elif scorer is None:
            for k in ("clip_f", "clip_o"):
                absent[k] = plan.absent["clip"]
        else:
            with _timed(tm, "clip", dev):
                emb = scorer.condition(prompt=cond.get("prompt"), image=cond.get("image"))
                cs = clip_scores(asset, scorer, emb, dev, opts.backend, opts.background, opts.clip_views)
            metrics["clip_f"], metrics["clip_o"] = cs["clip_f"], cs["clip_o"]
            details["clip"] = {"condition": cond.get("prompt") or cond.get("path"), "views": cs["views"]}
        # ---- against the reference
        if ds is None:
            for k in ("ssim", "psnr", "lpips", "fvd"):
                absent[k] = "no reference dataset (--reference)"
        else:
            with _timed(tm, "render_reference", dev):
                pred = render_reference(asset, ds, dev, opts.backend)
            lp = plan.models.get("lpips")
            with _timed(tm, "psnr_ssim_lpips", dev):
                im = image_metrics(pred, ds, lp)
            metrics.update(psnr=im["psnr"], ssim=im["ssim"], lpips=im["lpips"])
            if lp is None:
                absent["lpips"] = plan.absent["lpips"]
            details["reference"] = {"frames": im["frames"], "by_kind": im["by_kind"], "note": note}
            clips = reference_clips(ds, opts.fvd_clip_frames)
            if "i3d" not in plan.models:
                absent["fvd"] = plan.absent["i3d"]
            elif len(clips) < 2:
                absent["fvd"] = (f"the reference gives {len(clips)} clip(s) of >= 9 frames; a Frechet distance "
                                 f"needs at least 2 per set")
            else:
                with _timed(tm, "fvd", dev):
                    fp = _fvd_features(plan.models["i3d"], pred, clips)
                    fr = _fvd_features(plan.models["i3d"], ds.images, clips)
                    metrics["fvd"] = fvd(fp, fr)
                pooled["pred"].append(fp)
                pooled["ref"].append(fr)
                details["fvd"] = {"clips": len(clips), "clip_frames": sorted({int(c.numel()) for c in clips})}
        row = {"asset": asset.name, "path": str(asset.folder), "meta": asset.meta, "metrics": metrics,
               "absent": absent, "details": details}
        if tm is not None:
            row["timing_s"] = tm
        rows.append(row)
    summary = {}
    if len(pooled["pred"]) > 1:
        summary["fvd_pooled"] = fvd(torch.cat(pooled["pred"]), torch.cat(pooled["ref"]))
    result = {"assets": rows, "summary": summary, "weights": plan.weight_paths,
              "absent_weights": plan.absent, "device": str(dev)}
    if opts.timing:
        result["timing_s"] = dict(plan.timing)
    return result
