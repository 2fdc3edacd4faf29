"""``orster4d-construct``: fit a 4D Gaussian asset to an orbital video or a multi-view dynamic dataset.

Examples::

    orster4d-construct data/scene/multiview -o outputs/asset --static data/scene/static
    orster4d-construct --demo -o outputs/demo              # procedural object, then reconstruct it
    orster4d-construct data/scene/orbital -o outputs/asset --resume
    orster4d-construct data/scene/orbital -o outputs/asset --overwrite --exports viewer splat
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orster4d.recon import ConstructConfig, InputError, construct
from orster4d.recon.config import EXPORTS, check_device, check_replaceable
from orster4d.data.procedural import FAMILIES


def _number(kind, lo=None, hi=None):
    """argparse type: a ``kind`` (int or float) in ``[lo, hi]`` (finite), else a parse error naming the range."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if v != v or v in (float("inf"), float("-inf")) or (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = _number(int, 1)       # iterations, points, views, frames: at least one
WEIGHT = _number(float, 0.0)  # loss weights: >= 0 (0 turns a term off)


def build_parser() -> argparse.ArgumentParser:
    d = ConstructConfig(input="", output="")
    p = argparse.ArgumentParser(prog="orster4d-construct", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", nargs="?", help="dataset folder (transforms.json, D-NeRF transforms_*.json, or "
                                            "trajectory.json + frames)")
    p.add_argument("-o", "--output", required=True, help="asset folder to write")
    p.add_argument("--static", help="static orbital video V' (dataset folder) for the coarse phase")
    p.add_argument("--priors", help="prior tokens file: torch.save({'spatial': [Ns, Ds], 'temporal': [Nt, Dt]})")
    p.add_argument("--eval-data", help="ground-truth dataset for held-out metrics (default: the input's test split)")
    p.add_argument("--coarse-iters", type=COUNT, default=d.coarse_iters)
    p.add_argument("--fine-iters", type=COUNT, default=d.fine_iters)
    p.add_argument("--skip-fine", action="store_true",
                   help="no fine phase: the asset gets an identity deformation field")
    p.add_argument("--init-points", type=COUNT, default=d.init_points)
    p.add_argument("--sh-degree", type=_number(int, 0, 3), default=d.max_sh_degree)
    p.add_argument("--views-per-time", type=COUNT, default=d.views_per_time)
    p.add_argument("--coarse-batch", type=COUNT, default=d.coarse_batch)
    p.add_argument("--lambda-l1", type=WEIGHT, default=d.lambda_l1)
    p.add_argument("--lambda-lpips", type=WEIGHT, default=d.lambda_lpips)
    p.add_argument("--lambda-dep", type=WEIGHT, default=d.lambda_dep)
    p.add_argument("--lambda-hex", type=WEIGHT, default=d.lambda_hex)
    p.add_argument("--hexplane-resolution", type=_number(int, 2), nargs=2, default=d.hexplane_resolution, metavar=("R_XYZ", "R_T"),
                   help="HexPlane base resolution in space and time (4DGS: 64 25)")
    p.add_argument("--time-smoothness", type=WEIGHT, default=d.time_smoothness,
                   help="weight of the time planes' second-difference penalty")
    p.add_argument("--motion-curvature", type=WEIGHT, default=d.motion_curvature,
                   help="weight of the penalty on the deformation's second difference in time (0: off)")
    p.add_argument("--hexplane-backend", choices=("fused", "grid_sample"), default=d.hexplane_backend)
    p.add_argument("--attention-backend", choices=("sdpa", "orster"), default=d.attention_backend)
    p.add_argument("--lpips-net", choices=("vgg", "alex"), default=d.lpips_net)
    p.add_argument("--lpips-weights", help="torchvision backbone weights for LPIPS (default: torch hub cache)")
    p.add_argument("--checkpoint-every", type=_number(int, 0), default=d.checkpoint_every,
                   help="iterations between checkpoints (0: only at the end and on Ctrl-C)")
    p.add_argument("--turntable-frames", type=_number(int, 2), help="default: the trajectory's frame count")
    p.add_argument("--background", type=_number(float, 0.0, 1.0), nargs=3, default=d.background)
    p.add_argument("--device", default=d.device)
    p.add_argument("--rasterizer-backend", choices=("cpu", "cuda", "reference"), default=None)
    p.add_argument("--seed", type=_number(int, 0), default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from <output>/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier construction in the output folder (removes only the files it wrote; "
                        "refuses when the folder holds anything else)")
    p.add_argument("--exports", nargs="+", choices=(*EXPORTS, "none"), default=list(d.exports), metavar="FORMAT",
                   help=f"viewer-ready outputs to write, any of {', '.join(EXPORTS)}; 'none' writes none")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("demo")
    g.add_argument("--demo", action="store_true", help="generate a procedural object, then reconstruct it")
    g.add_argument("--family", choices=FAMILIES, default="hopper")
    g.add_argument("--frames", type=_number(int, 2), default=16)
    g.add_argument("--size", type=_number(int, 8), default=256, help="demo image width and height")
    g.add_argument("--full-demo", action="store_true",
                   help="on a CPU, keep the default size and schedule instead of the quick CPU demo")
    g.add_argument("--views", type=COUNT, default=8)
    g.add_argument("--demo-input", choices=("multiview", "orbital"), default="multiview",
                   help="which rendering of the demo object to reconstruct from")
    return p


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# The quick demo on a CPU (the full 6k + 3k schedule at 256 px takes about an hour there); its SH
# and densification schedules are scaled to these counts (orster4d.recon.config.schedules).
CPU_DEMO = {"size": 96, "coarse_iters": 600, "fine_iters": 300}


def _quick_cpu_demo(args, argv: list[str]) -> None:
    """On a CPU, shrink the demo's size and schedule unless the user set them (or --full-demo)."""
    if args.full_demo or _device(args.device).type != "cpu":
        return
    changed = []
    for key, value in CPU_DEMO.items():
        flag = "--" + key.replace("_", "-")
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            setattr(args, key, value)
            changed.append(f"{flag} {value}")
    if changed:
        print(f"orster4d-construct: no GPU, running the quick CPU demo ({', '.join(changed)}); "
              "pass --full-demo for the default schedule")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    if args.demo:
        _quick_cpu_demo(args, argv)
        from orster4d.data.render import generate_scene

        scene = out.parent / f"{out.name}-scene"
        if args.input:
            print("orster4d-construct: --demo generates its own input; drop the input folder", file=sys.stderr)
            return 2
        if not args.resume:
            for folder, what in ((out, "output"), (scene, "demo scene")):
                if folder.exists() and not args.overwrite:
                    print(f"orster4d-construct: {folder}: {what} folder exists; pass --overwrite", file=sys.stderr)
                    return 2
            try:  # what construct would refuse, before the scene is generated
                check_replaceable(out, args.overwrite)
                check_device(args.device, args.rasterizer_backend)
            except InputError as e:
                print(f"orster4d-construct: {e}", file=sys.stderr)
                return 2
            print(f"generating a procedural '{args.family}' (seed {args.seed}) into {scene}")
            generate_scene(scene, args.family, args.seed, args.frames, args.size, args.size, args.views,
                           device=_device(args.device), backend=args.rasterizer_backend)
        args.input = str(scene / args.demo_input)
        args.static = args.static or str(scene / "static")
        if args.demo_input == "orbital" and not args.eval_data:
            args.eval_data = str(scene / "multiview")  # its test split: held-out views and times
    elif not args.input:
        print("orster4d-construct: give an input folder, or --demo", file=sys.stderr)
        return 2
    cfg = ConstructConfig(
        input=args.input, output=args.output, static=args.static, priors=args.priors, eval_data=args.eval_data,
        coarse_iters=args.coarse_iters, fine_iters=0 if args.skip_fine else args.fine_iters,
        init_points=args.init_points,
        max_sh_degree=args.sh_degree, views_per_time=args.views_per_time, coarse_batch=args.coarse_batch,
        lambda_l1=args.lambda_l1, lambda_lpips=args.lambda_lpips, lambda_dep=args.lambda_dep,
        lambda_hex=args.lambda_hex, hexplane_backend=args.hexplane_backend,
        hexplane_resolution=list(args.hexplane_resolution), time_smoothness=args.time_smoothness,
        motion_curvature=args.motion_curvature,
        attention_backend=args.attention_backend, lpips_net=args.lpips_net, lpips_weights=args.lpips_weights,
        checkpoint_every=args.checkpoint_every, turntable_frames=args.turntable_frames,
        background=list(args.background), device=args.device, rasterizer_backend=args.rasterizer_backend,
        seed=args.seed, progress=not args.no_progress,
        exports=[] if "none" in args.exports else list(dict.fromkeys(args.exports)))
    try:
        metrics = construct(cfg, resume=args.resume, overwrite=args.overwrite)
    except InputError as e:
        print(f"orster4d-construct: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = {k: metrics[k] for k in ("train", "heldout", "num_gaussians", "wall_time_s")}
    print(json.dumps(summary, indent=2))
    print(f"asset written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
