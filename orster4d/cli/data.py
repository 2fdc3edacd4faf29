"""``orster4d-data``: build the data-scarcity world (see :mod:`orster4d.data.world`).

Examples::

    orster4d-data build --root world/ --seed 0 --static 2000 --video 2000 --scarce4d 200 --heldout 24 \\
        --frames 16 --size 64
    orster4d-data build --root world/ ...          # again: complete objects are skipped
    orster4d-data subset --root world/ --set scarce4d -n 50 --out world_50/   # first 50 4D objects
    orster4d-data info --root world/

Every flag is range-checked before anything is rendered.
"""
from __future__ import annotations

import argparse
import json
import sys


def _add_spec_flags(p: argparse.ArgumentParser) -> None:
    from orster4d.data.world import WorldSpec

    d = WorldSpec()
    p.add_argument("--root", required=True, help="world folder")
    p.add_argument("--seed", type=int, default=d.seed, help=f"world seed (default {d.seed})")
    p.add_argument("--static", type=int, default=d.static3d, help=f"static-3D objects (default {d.static3d})")
    p.add_argument("--video", type=int, default=d.video, help=f"fixed-camera video objects (default {d.video})")
    p.add_argument("--scarce4d", type=int, default=d.scarce4d, help=f"4D objects (default {d.scarce4d})")
    p.add_argument("--heldout", type=int, default=d.heldout, help=f"held-out objects (default {d.heldout})")
    p.add_argument("--frames", type=int, default=d.frames, help=f"frames per video (default {d.frames})")
    p.add_argument("--size", type=int, default=d.size, help=f"frame width = height in pixels (default {d.size})")
    p.add_argument("--gaussians", type=int, default=d.gaussians, help=f"Gaussians per object (default {d.gaussians})")
    p.add_argument("--views", type=int, default=d.views, help=f"multi-view GT cameras (default {d.views})")
    p.add_argument("--elevation", type=float, default=d.elevation_deg, help="orbit elevation in degrees")
    p.add_argument("--radius", type=float, default=d.radius, help="orbit radius in world units")
    p.add_argument("--fov", type=float, default=d.fov_deg, help="horizontal field of view in degrees")


def spec_from_args(args):
    from orster4d.data.world import WorldSpec

    return WorldSpec(seed=args.seed, static3d=args.static, video=args.video, scarce4d=args.scarce4d,
                     heldout=args.heldout, frames=args.frames, size=args.size, gaussians=args.gaussians,
                     views=args.views, elevation_deg=args.elevation, radius=args.radius, fov_deg=args.fov)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or complete a world")
    _add_spec_flags(b)
    b.add_argument("--sets", nargs="+", default=None, help="only these sets (static3d video scarce4d heldout)")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda (rasterizer device)")
    b.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("subset", help="a data root with the first N objects of a set (symbolic links)")
    s.add_argument("--root", required=True)
    s.add_argument("--set", required=True)
    s.add_argument("-n", type=int, required=True)
    s.add_argument("--out", required=True)
    i = sub.add_parser("info", help="print a world's spec and set sizes")
    i.add_argument("--root", required=True)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orster4d.data import world

    try:
        if args.command == "build":
            spec = spec_from_args(args)
            sets = args.sets or list(world.SETS)
            for s in sets:
                world._check_set(s)
            if args.device not in ("auto", "cpu", "cuda"):
                raise ValueError(f"--device: expected auto, cpu or cuda, got {args.device!r}")
            import torch

            if args.device == "cuda" and not torch.cuda.is_available():
                raise ValueError("--device cuda: CUDA is not available")
            dev = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
            meta = world.build_world(args.root, spec, sets=sets, device=dev, progress=not args.no_progress)
            print(json.dumps({s: len(v) for s, v in meta["sets"].items()}))
        elif args.command == "subset":
            print(world.subset(args.root, args.set, args.n, args.out))
        else:
            meta = world.read_world(args.root)
            print(json.dumps({"spec": meta["spec"], "sets": {s: len(v) for s, v in meta["sets"].items()}}, indent=1))
    except ValueError as e:
        print(f"orster4d-data: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
