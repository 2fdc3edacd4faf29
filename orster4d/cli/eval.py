"""``orster4d-eval``: score 4D assets with CLIP-F, CLIP-O, SSIM, PSNR, LPIPS and FVD.

    orster4d-eval ASSET [ASSET ...] [--reference DATASET ...] [--prompt TEXT | --image PNG] [-o OUT]

Writes ``OUT/eval.json`` (every number, per-kind breakdowns, reasons for absent metrics) and
``OUT/eval.md`` (one row per asset; ``--group-by FIELD`` gives one table per value of that field
of the assets' ``condition.json``). Weights are local files only: see ``docs/evaluation.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orster4d.cli.args import HelpFormatter, description, device_name, nonneg_int, positive_int, unit_float
from orster4d.evaluation.run import EvalOptions


def fvd_clip_frames(text: str) -> int:
    """argparse type for --fvd-clip-frames: 0 (whole videos) or at least 9 frames (the I3D network's shortest clip)."""
    v = nonneg_int(text)
    if 0 < v < 9:
        raise argparse.ArgumentTypeError(f"must be 0 (whole videos) or an integer >= 9, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    d = EvalOptions(assets=[])
    p = argparse.ArgumentParser(prog="orster4d-eval", description=description(__doc__),
                                formatter_class=HelpFormatter)
    p.add_argument("assets", nargs="+", metavar="ASSET", help="asset folders written by orster4d-construct")
    p.add_argument("--reference", nargs="+", default=[], metavar="DATASET",
                   help="ground truth: one shared folder, or one per asset in order (procedural scene, its "
                        "multiview/ folder, a D-NeRF scene, a Consistent4D object folder, NeRF-style transforms)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", help="text condition for CLIP-F / CLIP-O (default: the asset's condition.json)")
    cond.add_argument("--image", help="image condition (PNG) for CLIP-F / CLIP-O")
    p.add_argument("-o", "--output", default="eval_out", help="folder for eval.json and eval.md")
    p.add_argument("--group-by", metavar="FIELD", help="one table per value of this condition.json field (e.g. kind)")
    p.add_argument("--clip", help="open_clip folder or checkpoint file (default: $ORSTER4D_WEIGHTS/clip)")
    p.add_argument("--clip-model", help="open_clip architecture of a --clip checkpoint file, e.g. ViT-B-32")
    p.add_argument("--lpips-weights", help="torchvision backbone state dict for LPIPS (default: $ORSTER4D_WEIGHTS/lpips/...)")
    p.add_argument("--lpips-net", choices=("vgg", "alex"), default=d.lpips_net, help="LPIPS backbone")
    p.add_argument("--i3d", help="I3D state dict or TorchScript file (default: $ORSTER4D_WEIGHTS/i3d/...)")
    p.add_argument("--skip-missing", action="store_true",
                   help="report a metric whose weights are missing as absent (with the reason) instead of failing")
    p.add_argument("--fvd-clip-frames", type=fvd_clip_frames, default=d.fvd_clip_frames,
                   help="frames per FVD clip (0: whole videos; else >= 9)")
    p.add_argument("--clip-views", type=positive_int, default=d.clip_views, help="views per timestamp for CLIP-O")
    p.add_argument("--dnerf-downscale", type=positive_int, default=d.dnerf_downscale,
                   help="downscale D-NeRF frames (2: the published 400x400 protocol)")
    p.add_argument("--background", type=unit_float, nargs=3, default=d.background, metavar=("R", "G", "B"),
                   help="background colour, each channel in [0, 1]")
    p.add_argument("--device", type=device_name, default=d.device, help="auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    p.add_argument("--rasterizer-backend", choices=("cpu", "cuda", "reference"), default=None,
                   help="force a rasterizer backend (default: by device)")
    p.add_argument("--timing", action="store_true", help="add per-metric wall times (s) to eval.json")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orster4d.evaluation.run import evaluate, prepare
    from orster4d.evaluation.tables import write_tables
    from orster4d.evaluation.weights import MissingWeights

    opts = EvalOptions(assets=args.assets, reference=args.reference, prompt=args.prompt, image=args.image,
                       clip=args.clip, clip_model=args.clip_model, lpips_weights=args.lpips_weights,
                       lpips_net=args.lpips_net, i3d=args.i3d, skip_missing=args.skip_missing,
                       fvd_clip_frames=args.fvd_clip_frames, clip_views=args.clip_views,
                       dnerf_downscale=args.dnerf_downscale, background=list(args.background), device=args.device,
                       backend=args.rasterizer_backend, timing=args.timing)
    try:
        plan = prepare(opts)
    except (ValueError, MissingWeights) as e:
        print(f"orster4d-eval: error: {e}", file=sys.stderr)
        return 2
    result = evaluate(plan)
    paths = write_tables(result, Path(args.output), args.group_by)
    print(paths["markdown"].read_text(), end="")
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
