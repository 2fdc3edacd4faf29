"""``orster4d-train``: run one training stage of STD-4D.

Examples::

    orster4d-train --make-tiny-assets assets/              # random tiny VAE/teachers/CLIP (smoke runs)
    orster4d-train --stage 1 --preset tiny --data data/ --out runs/a --set model.vae_dir=assets/vae
    orster4d-train --stage 2 --preset tiny --data data/ --out runs/a --set model.vae_dir=assets/vae \\
        --set teachers.spatial_dir=assets/teacher_spatial --set teachers.temporal_dir=assets/teacher_temporal
    orster4d-train --stage 2 ... --resume                  # continue from the stage's last checkpoint
    orster4d-train --stage 2 ... --overwrite               # replace this stage's earlier run
    torchrun --nproc_per_node=2 -m orster4d.cli.train --stage 2 ...   # DDP

Every config key can be overridden with ``--set section.key=value`` (JSON values); ``--config``
reads JSON files applied after the preset. ``--print-config`` shows the resolved config and exits.
Every count, size, rate and weight is range-checked before anything runs. An existing stage
folder under ``--out`` is refused unless ``--resume`` or ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import json
import sys

from orster4d.cli.args import HelpFormatter, description, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-train", description=description(__doc__), formatter_class=HelpFormatter)
    p.add_argument("--stage", help="training stage: 1, 2, 3 or 4")
    p.add_argument("--preset", default="tiny", help="tiny | small | paper")
    p.add_argument("--config", action="append", default=[], help="JSON config file (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. train.lr=1e-4 (repeatable)")
    p.add_argument("--data", help="shortcut for data.root")
    p.add_argument("--out", help="shortcut for out_dir")
    p.add_argument("--steps", type=positive_int, help="shortcut for train.steps (an integer >= 1)")
    p.add_argument("--init", help="shortcut for init (the previous stage's checkpoint folder)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="continue from this stage's newest whole checkpoint")
    how.add_argument("--overwrite", action="store_true",
                     help="replace this stage's earlier run: removes only what orster4d-train wrote there, "
                          "refused when other files are present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--make-tiny-assets", metavar="DIR",
                   help="write random tiny VAE, teacher and CLIP folders to DIR and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.make_tiny_assets:
        from orster4d.generation.training.tiny_assets import make_tiny_assets

        print(json.dumps(make_tiny_assets(args.make_tiny_assets), indent=2))
        return 0
    from orster4d.generation.training.config import resolve_config

    if args.stage is None:
        print("orster4d-train: error: --stage is required (1, 2, 3 or 4)", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    for key, val in (("data.root", args.data), ("out_dir", args.out), ("train.steps", args.steps),
                     ("init", args.init)):
        if val is not None:
            overrides.append(f"{key}={json.dumps(val)}")
    try:
        cfg = resolve_config(args.preset, args.stage, args.config, overrides)
    except ValueError as e:
        print(f"orster4d-train: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg, indent=2, default=list))
        return 0
    import os

    from orster4d.generation.training.outputs import StageFolder, check_stage_folder

    try:  # refuse at once what would lose data (the trainer checks again)
        check_stage_folder(StageFolder(os.path.join(cfg["out_dir"], f"stage{cfg['stage']}")),
                           args.resume, args.overwrite)
    except (ValueError, FileNotFoundError) as e:
        print(f"orster4d-train: error: {e}", file=sys.stderr)
        return 2
    from orster4d.generation.training.trainer import train_stage

    try:
        path = train_stage(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as e:
        print(f"orster4d-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
