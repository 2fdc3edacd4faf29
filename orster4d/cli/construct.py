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
from orster4d.recon.config import EXPORTS, PRIOR_SIDES, check_device, check_replaceable
from orster4d.cli.args import (HelpFormatter, description, device_name, integer, nonneg_float, nonneg_int,
                               positive_int, unit_float)
from orster4d.data.procedural import FAMILIES
from orster4d.devices import resolve_device


def build_parser() -> argparse.ArgumentParser:
    d = ConstructConfig(input="", output="")
    p = argparse.ArgumentParser(prog="orster4d-construct", description=description(__doc__),
                                formatter_class=HelpFormatter)
    p.add_argument("input", nargs="?", help="dataset folder (transforms.json, D-NeRF transforms_*.json, or "
                                            "trajectory.json + frames)")
    p.add_argument("-o", "--output", required=True, help="asset folder to write")
    p.add_argument("--static", help="static orbital video V' (dataset folder) for the coarse phase")
    p.add_argument("--priors", help="prior tokens file: torch.save({'spatial': [Ns, Ds], 'temporal': [Nt, Dt]})")
    p.add_argument("--prior-sides", nargs="+", choices=PRIOR_SIDES, default=list(d.prior_sides), metavar="SIDE",
                   help="prior token sets the ST-HexPlane attends to (Eq. 8), one or both of "
                        f"{', '.join(PRIOR_SIDES)}; a side left out gets one zero token (its attention is off)")
    p.add_argument("--eval-data", help="ground-truth dataset for held-out metrics (default: the input's test split)")
    p.add_argument("--coarse-iters", type=positive_int, default=d.coarse_iters,
                   help="iterations of the coarse (static Gaussians) phase")
    p.add_argument("--fine-iters", type=positive_int, default=d.fine_iters,
                   help="iterations of the fine (deformation field) phase")
    p.add_argument("--skip-fine", action="store_true",
                   help="no fine phase: the asset gets an identity deformation field")
    p.add_argument("--init-points", type=positive_int, default=d.init_points, help="initial Gaussians")
    p.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), default=d.max_sh_degree,
                   help="highest SH degree of the colours")
    p.add_argument("--views-per-time", type=positive_int, default=d.views_per_time,
                   help="views rendered per timestamp in a fine step")
    p.add_argument("--coarse-batch", type=positive_int, default=d.coarse_batch, help="frames per coarse step")
    p.add_argument("--lambda-l1", type=nonneg_float, default=d.lambda_l1, help="weight of the L1 image loss")
    p.add_argument("--lambda-lpips", type=nonneg_float, default=d.lambda_lpips, help="weight of the LPIPS loss (0: off)")
    p.add_argument("--lambda-dep", type=nonneg_float, default=d.lambda_dep, help="weight of the depth smoothness loss (0: off)")
    p.add_argument("--lambda-hex", type=nonneg_float, default=d.lambda_hex,
                   help="weight of the reference-view loss of the fine phase (0: off)")
    p.add_argument("--hexplane-resolution", type=integer(2), nargs=2, default=d.hexplane_resolution, metavar=("R_XYZ", "R_T"),
                   help="HexPlane base resolution in space and time (4DGS: 64 25)")
    p.add_argument("--time-smoothness", type=nonneg_float, default=d.time_smoothness,
                   help="weight of the time planes' second-difference penalty")
    p.add_argument("--motion-curvature", type=nonneg_float, default=d.motion_curvature,
                   help="weight of the penalty on the deformation's second difference in time (0: off)")
    p.add_argument("--hexplane-backend", choices=("fused", "grid_sample"), default=d.hexplane_backend,
                   help="HexPlane sampling: the fused kernel or torch grid_sample")
    p.add_argument("--attention-backend", choices=("sdpa", "orster"), default=d.attention_backend,
                   help="attention of ST-HexPlane: torch SDPA or the Orster kernel")
    p.add_argument("--lpips-net", choices=("vgg", "alex"), default=d.lpips_net, help="LPIPS backbone")
    p.add_argument("--lpips-weights", help="torchvision backbone weights for LPIPS (default: torch hub cache)")
    p.add_argument("--checkpoint-every", type=nonneg_int, default=d.checkpoint_every,
                   help="iterations between checkpoints (0: only at the end and on Ctrl-C)")
    p.add_argument("--turntable-frames", type=integer(2),
                   help="frames of the turntable video (default: the trajectory's frame count)")
    p.add_argument("--background", type=unit_float, nargs=3, default=d.background, metavar=("R", "G", "B"),
                   help="background colour, each channel in [0, 1]")
    p.add_argument("--device", type=device_name, default=d.device, help="auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    p.add_argument("--rasterizer-backend", choices=("cpu", "cuda", "reference"), default=None,
                   help="force a rasterizer backend (default: by device)")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="random seed")
    p.add_argument("--resume", action="store_true", help="continue from <output>/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier construction in the output folder (removes only the files it wrote; "
                        "refuses when the folder holds anything else)")
    p.add_argument("--exports", nargs="+", choices=(*EXPORTS, "none"), default=list(d.exports), metavar="FORMAT",
                   help=f"viewer-ready outputs to write, any of {', '.join(EXPORTS)}; 'none' writes none")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("demo")
    g.add_argument("--demo", action="store_true", help="generate a procedural object, then reconstruct it")
    g.add_argument("--family", choices=FAMILIES, default="hopper", help="procedural object of the demo")
    g.add_argument("--frames", type=integer(2), default=16, help="demo video frames")
    g.add_argument("--size", type=integer(8), default=256, help="demo image width and height")
    g.add_argument("--full-demo", action="store_true",
                   help="on a CPU, keep the default size and schedule instead of the quick CPU demo")
    g.add_argument("--views", type=positive_int, default=8, help="demo multi-view cameras")
    g.add_argument("--demo-input", choices=("multiview", "orbital"), default="multiview",
                   help="which rendering of the demo object to reconstruct from")
    return p


# The quick demo on a CPU (the full 6k + 3k schedule at 256 px takes about an hour there); its SH
# and densification schedules are scaled to these counts (orster4d.recon.config.schedules).
CPU_DEMO = {"size": 96, "coarse_iters": 600, "fine_iters": 300}


def _quick_cpu_demo(args, argv: list[str]) -> None:
    """On a CPU, shrink the demo's size and schedule unless the user set them (or --full-demo)."""
    if args.full_demo or resolve_device(args.device).type != "cpu":
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
                           device=resolve_device(args.device), backend=args.rasterizer_backend)
        args.input = str(scene / args.demo_input)
        args.static = args.static or str(scene / "static")
        if args.demo_input == "orbital" and not args.eval_data:
            args.eval_data = str(scene / "multiview")  # its test split: held-out views and times
    elif not args.input:
        print("orster4d-construct: give an input folder, or --demo", file=sys.stderr)
        return 2
    cfg = ConstructConfig(
        input=args.input, output=args.output, static=args.static, priors=args.priors,
        prior_sides=list(dict.fromkeys(args.prior_sides)), eval_data=args.eval_data,
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
