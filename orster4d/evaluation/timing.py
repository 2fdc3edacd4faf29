"""Times ``orster4d-eval`` on a 16-frame asset with networks of the real architectures and sizes.

    python -m orster4d.evaluation.timing [--size 256] [--frames 16] [--gaussians 20000] [--keep DIR] [--json OUT]

Builds, in a temporary folder: randomly initialised CLIP ViT-B/32 (open_clip's config, saved in
the folder layout), a random torchvision VGG16 backbone for LPIPS, a random Inception-I3D state
dict; a procedural 16-frame asset (exact Gaussians, written as PLYs) and its procedural multi-view
ground truth (8 views). Then runs ``orster4d-eval --timing`` and prints the per-metric wall times.
The numbers it produces are meaningless (random networks); only the times matter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_networks(root: Path, seed: int = 0) -> Path:
    """Writes ``root`` in the ``$ORSTER4D_WEIGHTS`` layout with random full-size networks."""
    import open_clip
    import torch
    import torchvision
    from open_clip.model import CLIP

    from orster4d.evaluation.i3d import InceptionI3d
    from orster4d.generation.models.conditions import save_clip
    from orster4d.perceptual import BACKBONE_FILES

    torch.manual_seed(seed)
    cfg = open_clip.get_model_config("ViT-B-32")
    cfg = {k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    save_clip(CLIP(**cfg), str(root / "clip"), cfg)
    (root / "lpips").mkdir(parents=True, exist_ok=True)
    vgg = torchvision.models.vgg16(weights=None).state_dict()
    torch.save({k: v for k, v in vgg.items() if k.startswith("features.")}, root / "lpips" / BACKBONE_FILES["vgg"])
    (root / "i3d").mkdir(parents=True, exist_ok=True)
    torch.save(InceptionI3d().state_dict(), root / "i3d" / "i3d_pretrained_400.pt")
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m orster4d.evaluation.timing", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--gaussians", type=int, default=20000)
    p.add_argument("--device", default="auto")
    p.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    p.add_argument("--json", help="also write the report to this file")
    args = p.parse_args(argv)

    from orster4d.cameras import OrbitTrajectory
    from orster4d.cli.eval import main as eval_main
    from orster4d.data.render import generate_scene
    from orster4d.data.procedural_asset import write_procedural_asset
    from orster4d.evaluation.weights import ENV

    tmp = None if args.keep else tempfile.TemporaryDirectory()
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_networks(root / "weights")
    t_nets = time.perf_counter() - t0
    t0 = time.perf_counter()
    device = None if args.device == "auto" else args.device
    generate_scene(root / "scene", "hopper", seed=1, num_frames=args.frames, width=args.size, height=args.size,
                   num_views=args.views, num_gaussians=args.gaussians, device=device)
    traj = OrbitTrajectory(num_frames=args.frames, width=args.size, height=args.size)
    write_procedural_asset(root / "asset", "hopper", 1, num_gaussians=args.gaussians, trajectory=traj,
                           meta={"kind": "text", "prompt": "a hopping toy"})
    t_data = time.perf_counter() - t0
    os.environ[ENV] = str(root / "weights")
    t0 = time.perf_counter()
    rc = eval_main([str(root / "asset"), "--reference", str(root / "scene"), "--timing", "-o", str(root / "out"),
                    "--device", args.device])
    total = time.perf_counter() - t0
    if rc != 0:
        return rc
    res = json.loads((root / "out" / "eval.json").read_text())
    report = {"device": res["device"], "networks_build_s": t_nets, "data_build_s": t_data,
              "orster4d_eval_total_s": total, "setup_s": res["timing_s"], "per_metric_s": res["assets"][0]["timing_s"],
              "frames": args.frames, "size": args.size, "views": args.views, "gaussians": args.gaussians}
    report["target_under_20_s"] = total < 20.0
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
