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

from orster4d.cli.args import (HelpFormatter, description, device_name, finite_float, nonneg_int, positive_float,
                               positive_int)


def _add_spec_flags(p: argparse.ArgumentParser) -> None:
    from orster4d.data.world import WorldSpec

    d = WorldSpec()
    p.add_argument("--root", required=True, help="world folder")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="world seed")
    p.add_argument("--static", type=nonneg_int, default=d.static3d, help="static-3D objects")
    p.add_argument("--video", type=nonneg_int, default=d.video, help="fixed-camera video objects")
    p.add_argument("--scarce4d", type=nonneg_int, default=d.scarce4d, help="4D objects")
    p.add_argument("--heldout", type=positive_int, default=d.heldout, help="held-out objects")
    p.add_argument("--frames", type=positive_int, default=d.frames, help="frames per video (>= 2)")
    p.add_argument("--size", type=positive_int, default=d.size, help="frame width = height in pixels (>= 8)")
    p.add_argument("--gaussians", type=positive_int, default=d.gaussians, help="Gaussians per object (>= 16)")
    p.add_argument("--views", type=positive_int, default=d.views, help="multi-view GT cameras (>= 2)")
    p.add_argument("--elevation", type=finite_float, default=d.elevation_deg, help="orbit elevation in degrees, in [-89, 89]")
    p.add_argument("--radius", type=positive_float, default=d.radius, help="orbit radius in world units")
    p.add_argument("--fov", type=positive_float, default=d.fov_deg, help="horizontal field of view in degrees, in [1, 170]")


def spec_from_args(args):
    from orster4d.data.world import WorldSpec

    return WorldSpec(seed=args.seed, static3d=args.static, video=args.video, scarce4d=args.scarce4d,
                     heldout=args.heldout, frames=args.frames, size=args.size, gaussians=args.gaussians,
                     views=args.views, elevation_deg=args.elevation, radius=args.radius, fov_deg=args.fov)


def build_parser() -> argparse.ArgumentParser:
    from orster4d.data.world import SETS

    p = argparse.ArgumentParser(prog="orster4d-data", description=description(__doc__), formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or complete a world", description="Build or complete a world.",
                       formatter_class=HelpFormatter)
    _add_spec_flags(b)
    b.add_argument("--sets", nargs="+", choices=SETS, default=None, metavar="SET",
                   help=f"only these sets, any of {', '.join(SETS)} (default: all)")
    b.add_argument("--device", type=device_name, default="auto",
                   help="rasterizer device: auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("subset", help="a data root with the first N objects of a set (symbolic links)",
                       description="A data root with the first N objects of a set (symbolic links).",
                       formatter_class=HelpFormatter)
    s.add_argument("--root", required=True, help="world folder")
    s.add_argument("--set", required=True, choices=SETS, help="which set")
    s.add_argument("-n", type=positive_int, required=True, help="objects to take")
    s.add_argument("--out", required=True, help="data root to write")
    i = sub.add_parser("info", help="print a world's spec and set sizes", description="Print a world's spec and set sizes.",
                       formatter_class=HelpFormatter)
    i.add_argument("--root", required=True, help="world folder")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orster4d.data import world
    from orster4d.devices import resolve_device

    try:
        if args.command == "build":
            spec = spec_from_args(args)
            sets = args.sets or list(world.SETS)
            dev = str(resolve_device(args.device))  # checked at parse time
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
