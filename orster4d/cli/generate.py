"""``orster4d-generate``: from a prompt, a first-view image or a static object's orbital video to a 4D asset.

Examples::

    orster4d-generate --demo                             # offline: the shipped small model, a held-out object
    orster4d-generate --prompt "a striped red hopper hopping" --model pipe/ -o out/hopper
    orster4d-generate --image front.png --model pipe/ -o out/img --seed 3 --steps 50 --guidance 4
    orster4d-generate --static-video data/scene/static --model pipe/ -o out/s3d --video-only
    orster4d-generate --prompt "a ball bouncing" --model pipe/ -o out/quick --construct-iters 300 150 --timing

Writes under ``-o OUT`` (dataset folders in the layout ``orster4d-construct`` reads):

- ``video/``: the generated orbital video (``transforms.json``, frames, ``trajectory.json``) and,
  when the model can produce it, the reference-view driving video (frames marked ``reference``);
- ``static/``: the static orbital video V' of the first view (motion off), when it can be produced
  or was given;
- ``priors.pt``: the prior tokens ``{"spatial": O_s, "temporal": O_t}`` for ST-HexPlane;
- ``asset/``: the 4D asset (unless ``--video-only``), fitted with ST-HexPlane on those priors;
- ``generation.json``: the condition, the settings, what was (not) produced and why, the paths and
  the per-phase timings (seconds).

``--demo`` runs the image condition of the small trained model shipped in the repository
(``models/std4d-small``, or the folder ``ORSTER4D_DEMO_MODEL`` names) on its held-out object, with
the model's schedule for the device in use (flags given explicitly still win), into
``outputs/demo`` by default, and prints the time of each phase; it also copies the condition
image (and the true orbital frames, when the model has them) to ``OUT/demo/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from orster4d.cli.args import HelpFormatter, description, device_name, nonneg_float, nonneg_int, positive_int
from orster4d.devices import resolve_device
from orster4d.generation.demo import ENV_VAR, SCHEDULE_KEYS, DemoModelError

DEMO_OUTPUT = "outputs/demo"


class GenerateError(ValueError):
    """Bad input found before any sampling (the message names the input and what was expected)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-generate", description=description(__doc__),
                                formatter_class=HelpFormatter)
    cond = p.add_mutually_exclusive_group(required=True)
    cond.add_argument("--demo", action="store_true",
                      help=f"image -> 4D asset of the shipped demo model's held-out object (offline; model folder: "
                           f"${ENV_VAR} or models/std4d-small beside the package)")
    cond.add_argument("--prompt", help="text condition")
    cond.add_argument("--image", help="first-view image I0 (PNG/JPEG, RGB or RGBA, the model's size)")
    cond.add_argument("--static-video", help="dataset folder of a static object's orbital video on the "
                                             "model's trajectory (trajectory.json + frames)")
    p.add_argument("--model", help="STD4DPipeline folder (required, except with --demo)")
    p.add_argument("-o", "--output", help=f"output folder (required, except with --demo: default {DEMO_OUTPUT})")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the initial noise (the same for every video)")
    p.add_argument("--steps", type=positive_int, default=25, help="denoising steps")
    p.add_argument("--guidance", type=nonneg_float, default=3.0, help="classifier-free guidance scale (1: off)")
    p.add_argument("--prior-steps", type=positive_int, default=3, help="last denoising steps averaged into the prior tokens")
    p.add_argument("--video-only", action="store_true", help="stop after writing the videos and priors.pt")
    p.add_argument("--construct-iters", type=nonneg_int, nargs=2, metavar=("COARSE", "FINE"), default=(6000, 3000),
                   help="4D construction schedule: coarse iterations (>= 1), fine iterations (0: no fine phase)")
    p.add_argument("--construct-points", type=positive_int, default=5000, help="initial Gaussians of the construction")
    p.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                   help="model dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    p.add_argument("--timing", action="store_true", help="print the per-phase timings (also in generation.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# ------------------------------------------------------------------------------------------ inputs
def read_image(path: str, width: int, height: int) -> torch.Tensor:
    """An RGB(A) image file -> ``[H, W, 3]`` float32 in [0, 1] (alpha composited on white)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise GenerateError(f"--image {path}: file not found")
    try:
        with Image.open(p) as im:
            im.load()
            mode, size = im.mode, im.size
            if mode == "P":
                im = im.convert("RGBA")
                mode = "RGBA"
            bands = len(im.getbands())
            arr = np.asarray(im) if mode in ("RGB", "RGBA") else None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise GenerateError(f"--image {path}: not a readable image ({e})") from e
    if mode not in ("RGB", "RGBA"):
        raise GenerateError(f"--image {path}: {bands} channel(s) (mode {mode}); expected an RGB (3) or RGBA (4) image")
    if size != (width, height):
        raise GenerateError(f"--image {path}: {size[0]}x{size[1]} pixels; the model generates {width}x{height}")
    x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    if x.shape[-1] == 4:
        x = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
    return x


TRAJECTORY_FIELDS = ("num_frames", "elevation_deg", "radius", "fov_deg", "width", "height")


def read_static_video(folder: str, trajectory) -> torch.Tensor:
    """The orbital frames ``[T, H, W, 3]`` of a dataset folder whose trajectory equals ``trajectory``'s."""
    from orster4d.data.dataset import load_dataset

    try:
        ds = load_dataset(folder)
    except ValueError as e:
        raise GenerateError(f"--static-video {folder}: {e}") from e
    if ds.trajectory is None:
        want = {k: getattr(trajectory, k) for k in TRAJECTORY_FIELDS}
        raise GenerateError(f"--static-video {folder}: no trajectory.json; expected the model's orbit {want}")
    for k in TRAJECTORY_FIELDS:
        a, b = getattr(ds.trajectory, k), getattr(trajectory, k)
        if abs(float(a) - float(b)) > 1e-6:
            raise GenerateError(f"--static-video {folder}: trajectory {k}={a} but the model was trained on {k}={b}")
    keep = (~ds.reference).nonzero()[:, 0]
    return ds.images[keep[torch.argsort(ds.times[keep], stable=True)]].contiguous()


def prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise GenerateError(f"-o {out}: output folder exists and is not empty; pass --overwrite to replace it")


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


# ------------------------------------------------------------------------------------------ writing
def video_dataset(trajectory, video: torch.Tensor, reference: Optional[torch.Tensor] = None):
    """``video [T, H, W, 3]`` on ``trajectory`` (frame i: azimuth 360 i / T, time i / (T - 1)), followed by
    the reference-view frames (the camera of frame 0 at every time) when given, as a ``DynamicDataset``."""
    from orster4d.data.dataset import DynamicDataset

    T = trajectory.num_frames
    vm, K, times = trajectory.viewmats().float(), trajectory.Ks(), trajectory.times()
    images, vms, Ks, ts, views, ref = [video], [vm], [K], [times], [torch.arange(T)], [torch.zeros(T, dtype=torch.bool)]
    if reference is not None:
        images.append(reference)
        vms.append(vm[:1].expand(T, 4, 4))
        Ks.append(K[:1].expand(T, 3, 3))
        ts.append(times)
        views.append(torch.zeros(T, dtype=torch.long))
        ref.append(torch.ones(T, dtype=torch.bool))
    return DynamicDataset(images=torch.cat(images).clamp(0, 1), viewmats=torch.cat(vms), Ks=torch.cat(Ks),
                          times=torch.cat(ts), view_ids=torch.cat(views), reference=torch.cat(ref),
                          trajectory=trajectory)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def use_demo_model(args, log=print):
    """Point ``args`` at the demo model (:func:`orster4d.generation.demo.load_demo_model`): its pipeline
    and condition image, and its schedule for the device in use where a schedule flag is unset (None).
    Returns the :class:`~orster4d.generation.demo.DemoModel`."""
    from orster4d.generation.demo import load_demo_model

    try:
        demo = load_demo_model()
        device = resolve_device(args.device)
        schedule = demo.schedule(device)
    except (DemoModelError, ValueError) as e:
        raise GenerateError(f"--demo: {e}") from e
    for key, value in schedule.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.image, args.model = str(demo.image), str(demo.pipeline)
    log(f"demo: held-out object '{demo.object}' ({demo.prompt}), model {demo.folder}, {device.type} schedule: "
        f"{args.steps} steps, guidance {args.guidance}, construction {args.construct_iters[0]} + "
        f"{args.construct_iters[1]} iterations")
    return demo


def generate(args, log=print, demo=None) -> Dict:
    """Everything after parsing; returns the summary written to ``generation.json``. ``demo``: the
    :class:`~orster4d.generation.demo.DemoModel` ``args`` was pointed at (:func:`use_demo_model`), recorded
    in the summary, its condition image (and true frames) copied to ``OUT/demo/``."""
    from orster4d.generation.pipeline import check_pipeline_folder, load_pipeline

    out = Path(args.output)
    prepare_output(out, args.overwrite)
    if args.prompt is not None and not args.prompt.strip():
        raise GenerateError("--prompt: the prompt is empty")
    device = resolve_device(args.device)
    try:
        check_pipeline_folder(args.model)
    except (FileNotFoundError, ValueError) as e:
        raise GenerateError(str(e)) from e
    pipe = load_pipeline(args.model, device=device, dtype=_dtype(args.dtype, device))
    pipe.set_progress_bar_config(disable=args.no_progress, desc="sampling", dynamic_ncols=True)
    traj = pipe.trajectory
    kind = "text" if args.prompt is not None else ("image" if args.image is not None else "static3d")
    if kind not in pipe.kinds:
        flag = {"text": "--prompt", "image": "--image", "static3d": "--static-video"}[kind]
        raise GenerateError(f"{flag}: the model was trained for the condition kinds {pipe.kinds} only, not {kind!r}")
    cond = {"text": lambda: {"prompt": args.prompt},
            "image": lambda: {"image": read_image(args.image, traj.width, traj.height)},
            "static3d": lambda: {"static_video": read_static_video(args.static_video, traj)}}[kind]()
    try:
        pipe.check_inputs(**cond, num_inference_steps=args.steps, guidance_scale=args.guidance)
    except ValueError as e:
        raise GenerateError(str(e)) from e

    # -- sampling -------------------------------------------------------------------------------
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    timings: Dict[str, float] = {}
    settings = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)

    def sample(name: str, mode: str, **c):
        _sync(device)
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(args.seed)  # one seed for every video: the same initial noise
        res = pipe(**c, mode=mode, generator=g, return_priors=(mode == "orbit"), prior_steps=args.prior_steps,
                   **settings)
        _sync(device)
        timings[f"sampling_{name}_s"] = time.perf_counter() - t0
        return res

    log(f"sampling the orbital video ({kind} condition, {args.steps} steps, guidance {args.guidance})")
    main = sample("orbit", "orbit", **cond)
    video, priors = main.video, main.priors
    first_view = {"image": video[0]} if "image" in pipe.kinds else cond
    produced: Dict[str, Optional[str]] = {}
    if kind == "static3d":
        static, produced["static"] = cond["static_video"], "given (--static-video)"
    elif "static" in pipe.modes:
        log("sampling the static orbital video V' of the first view (motion off)")
        static = sample("static", "static", **first_view).video
        produced["static"] = "sampled (video mode 'static', first view I0)" if "image" in pipe.kinds else \
            "sampled (video mode 'static', the same condition)"
    else:
        static, produced["static"] = None, "not produced: the model was not trained with the 'static' video mode"
    if "reference" in pipe.modes:
        log("sampling the reference-view driving video")
        reference = sample("reference", "reference", **first_view).video
        produced["reference"] = "sampled (video mode 'reference')"
    else:
        reference = None
        produced["reference"] = "not produced: the model was not trained with the 'reference' video mode"
    timings["sampling_s"] = sum(v for k, v in timings.items() if k.startswith("sampling_"))

    # -- writing --------------------------------------------------------------------------------
    from orster4d.data.dataset import write_dataset
    from orster4d.generation.priors import save_priors

    paths = {"video": out / "video", "priors": out / "priors.pt"}
    video_ds = video_dataset(traj, video, reference)
    if kind == "text":
        video_ds.metadata["prompt"] = args.prompt
    if static is not None:
        video_ds.metadata["static"] = "../static"
    write_dataset(paths["video"], video_ds)
    if static is not None:
        paths["static"] = out / "static"
        write_dataset(paths["static"], video_dataset(traj, static))
    save_priors(priors, paths["priors"])
    if demo is not None:
        paths["demo"] = out / "demo"
        paths["demo"].mkdir()
        for src in (demo.image, demo.truth):
            if src is not None:
                shutil.copy2(src, paths["demo"] / src.name)
    summary = {
        "condition": {"kind": kind, "prompt": args.prompt, "image": args.image, "static_video": args.static_video},
        "model": str(args.model), "seed": args.seed, "steps": args.steps, "guidance": args.guidance,
        "prior_steps": args.prior_steps, "device": str(device), "dtype": str(pipe.unet.dtype),
        "trajectory": traj.to_dict(), "produced": produced,
        "priors": {k: list(v.shape) for k, v in priors.items()},
    }
    if demo is not None:
        summary["demo"] = demo.summary()

    # -- construction ---------------------------------------------------------------------------
    if not args.video_only:
        from orster4d.recon import ConstructConfig, InputError, construct

        paths["asset"] = out / "asset"
        cfg = ConstructConfig(input=str(paths["video"]), output=str(paths["asset"]),
                              static=str(paths["static"]) if static is not None else None,
                              priors=str(paths["priors"]), coarse_iters=int(args.construct_iters[0]),
                              fine_iters=int(args.construct_iters[1]), init_points=args.construct_points,
                              device=str(device), seed=args.seed,
                              progress=not args.no_progress)
        log(f"4D construction ({cfg.coarse_iters} coarse + {cfg.fine_iters} fine iterations, ST-HexPlane on the priors)")
        _sync(device)
        t0 = time.perf_counter()
        try:
            metrics = construct(cfg, log=log)
        except InputError as e:
            raise GenerateError(f"construction input: {e}") from e
        _sync(device)
        timings["construction_s"] = time.perf_counter() - t0
        summary["construct"] = {"train": metrics.get("train"), "num_gaussians": metrics.get("num_gaussians")}
    timings["total_s"] = sum(v for k, v in timings.items() if k in ("sampling_s", "construction_s"))
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    summary["timings"] = timings
    (out / "generation.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    p = build_parser()
    # the schedule flags start unset, so that --demo can tell the ones given from its model's schedule
    args = p.parse_args(argv, namespace=argparse.Namespace(**{k: None for k in SCHEDULE_KEYS}))
    if args.demo:
        if args.model is not None:
            p.error(f"argument --model: not allowed with --demo (the demo uses its own model; set {ENV_VAR} "
                    f"to a demo model folder to use another one)")
        args.output = args.output or DEMO_OUTPUT
        args.timing = True
    else:
        missing = [flag for flag, v in (("--model", args.model), ("-o/--output", args.output)) if v is None]
        if missing:
            p.error(f"the following arguments are required: {', '.join(missing)}")
    try:
        demo = use_demo_model(args) if args.demo else None
        for key in SCHEDULE_KEYS:
            if getattr(args, key) is None:
                setattr(args, key, p.get_default(key))
        if args.construct_iters[0] < 1:
            p.error(f"argument --construct-iters: COARSE must be >= 1, got {args.construct_iters[0]}")
        summary = generate(args, demo=demo)
    except GenerateError as e:
        print(f"orster4d-generate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print("written:")
    for k, v in summary["paths"].items():
        print(f"  {k:<8} {v}")
    for k, why in summary["produced"].items():
        print(f"  {k} video: {why}")
    print(f"  summary  {Path(args.output) / 'generation.json'}")
    if args.timing:
        print("timings (s):")
        for k, v in summary["timings"].items():
            print(f"  {k:<22} {v:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
