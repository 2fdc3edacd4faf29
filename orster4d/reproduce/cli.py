"""``orster4d-reproduce``: the small-scale reproduction of paper Tables 1-3, one command.

Examples::

    orster4d-reproduce --root repro/ --preset tiny --rows ours "w/o Orster" --seeds 0   # CPU smoke run
    orster4d-reproduce --root repro/ --preset small --rows ours "single-channel (Diffusion4D-like)"
    orster4d-reproduce --root repro/ --preset small --seeds 0 1 2 --scarcity --jobs 5 # every row + curve
    orster4d-reproduce --root repro/ --preset small --cached-only                     # tables so far
    orster4d-reproduce --list-rows

Runs are cached under ``--root`` by a hash of their config: running again reuses finished runs,
resumes interrupted ones and only trains what is new. Writes ``reproduction.json`` and
``reproduction.md`` under ``--root``.
"""
from __future__ import annotations

import argparse
import json
import sys

from orster4d.cli.args import HelpFormatter, description, device_name, nonneg_int, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-reproduce", description=description(__doc__), formatter_class=HelpFormatter)
    p.add_argument("--root", help="protocol folder (world, runs, results)")
    p.add_argument("--preset", default="tiny", help="tiny | small")
    p.add_argument("--rows", nargs="+", help="row names (default: every row); see --list-rows")
    p.add_argument("--seeds", nargs="+", type=nonneg_int, default=[0, 1, 2],
                   help="distinct training seeds (Table 1 rows and w/o Orster use all, the others the first)")
    p.add_argument("--world-seed", type=nonneg_int, default=0, help="seed of the world")
    p.add_argument("--scarcity", action="store_true", help="add the scarcity-curve rows")
    p.add_argument("--device", type=device_name, choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when torch sees a GPU")
    p.add_argument("--clip", help="open_clip folder to use instead of the random tiny CLIP")
    p.add_argument("--lpips-weights", help="LPIPS VGG16 backbone file (else $ORSTER4D_WEIGHTS; else absent)")
    p.add_argument("--i3d", help="I3D weights for FVD (else $ORSTER4D_WEIGHTS; else absent)")
    p.add_argument("--no-strips", action="store_true", help="do not write generated-vs-true frame strips")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="processes per training run, under torchrun (one per GPU; data.batch_size is the global batch)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs made at once in worker processes sharing the GPU (small models are launch-bound, so "
                        "runs side by side should keep it busier; not measured side by side); logs in <root>/logs/")
    p.add_argument("--start-by", type=float, metavar="SECONDS",
                   help="start no new (row, seed) task later than SECONDS after the protocol starts: the running ones "
                        "finish, the rest read 'not run' and a later call resumes them (for a time-limited machine)")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: write the tables from the finished runs (rows missing one say 'not run')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-rows", action="store_true", help="print the rows and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orster4d.reproduce.protocol import ProtocolOptions, check_options, run_protocol

    if args.list_rows:
        from orster4d.reproduce.presets import get_preset
        from orster4d.reproduce.rows import ROWS, scarcity_rows

        try:
            extra = scarcity_rows(get_preset(args.preset).scarcity)
        except ValueError as e:
            print(f"orster4d-reproduce: error: {e}", file=sys.stderr)
            return 2
        for r in list(ROWS) + extra:
            state = (f"stages {', '.join(map(str, r.stages))}; scored on {' and '.join(r.score)}" if r.expressible
                     else f"not expressible yet: {r.missing}")
            print(f"table {r.table}  {r.name!r}  {state}")
        return 0
    if not args.root:
        print("orster4d-reproduce: error: --root is required", file=sys.stderr)
        return 2
    opts = ProtocolOptions(root=args.root, preset=args.preset, rows=args.rows, seeds=args.seeds,
                           world_seed=args.world_seed, scarcity=args.scarcity, device=args.device, clip=args.clip,
                           lpips_weights=args.lpips_weights, i3d=args.i3d, progress=not args.no_progress,
                           strips=not args.no_strips, nproc=args.nproc, jobs=args.jobs,
                           cached_only=args.cached_only, start_by_s=args.start_by)
    try:
        check_options(opts)
        result = run_protocol(opts)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"orster4d-reproduce: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run again with the same flags to resume", file=sys.stderr)
        return 130
    counts = {}
    for ev in result["events"]:
        counts[ev["action"]] = counts.get(ev["action"], 0) + 1
    print(json.dumps({"results": f"{args.root}/reproduction.json", "tables": f"{args.root}/reproduction.md",
                      "runs": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
