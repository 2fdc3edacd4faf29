"""GPU report for 4D construction: the default schedule on procedural objects.

For each object: render a procedural scene (16 frames, 512x512, multi-view ground truth with views
and timestamps held out), run ``construct`` with the default schedule (6,000 coarse + 3,000 fine
iterations) once with the fused HexPlane and once with the ``grid_sample`` path (the plain 4DGS
field, no priors), and record wall time and PSNR / SSIM / LPIPS on the held-out frames.

    python scripts/gpu_construct_report.py --out $OUT/construct_report.json
    python scripts/gpu_construct_report.py --families hopper --coarse-iters 600 --fine-iters 300  # quick look
    python scripts/gpu_construct_report.py --device cpu --size 96 --coarse-iters 600 --fine-iters 300  # CPU ablation
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from orster4d.recon import ConstructConfig, construct
from orster4d.data import FAMILIES, generate_scene


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="construct_report.json", help="JSON report path")
    p.add_argument("--families", nargs="+", default=["hopper", "walker"], help=f"any of {FAMILIES} or 'all'")
    p.add_argument("--backends", nargs="+", default=["fused", "grid_sample"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--coarse-iters", type=int, default=6000)
    p.add_argument("--fine-iters", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="where scenes and assets go (default: a temporary folder); a scene "
                   "already there (its scene.json) is reused")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a ConstructConfig field (JSON value), e.g. --set max_sh_degree=1")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: small ablations only (the default schedule at 512 px takes hours there)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_construct_report: needs a CUDA device; torch sees none (or pass --device cpu)")
        return 1
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    overrides = {}
    for item in args.set:
        key, _, val = item.partition("=")
        if key not in ConstructConfig.__dataclass_fields__:
            p.error(f"--set {item}: ConstructConfig has no field {key!r}")
        try:
            overrides[key] = json.loads(val)
        except json.JSONDecodeError:
            overrides[key] = val
    families = list(FAMILIES) if args.families == ["all"] else args.families
    work = Path(args.workdir or tempfile.mkdtemp(prefix="orster4d_construct_"))
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    report = {"device": device_name, "torch": torch.__version__, "python": platform.python_version(),
              "frames": args.frames, "size": args.size, "views": args.views, "coarse_iters": args.coarse_iters,
              "fine_iters": args.fine_iters, "overrides": overrides, "objects": {}}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for fam in families:
        scene = work / f"{fam}-scene"
        t0 = time.time()
        if not (scene / "scene.json").is_file():
            generate_scene(scene, fam, args.seed, args.frames, args.size, args.size, args.views, device=args.device)
        entry = {"scene_seconds": time.time() - t0}
        for backend in args.backends:
            tag = "-".join(f"{k}{v}" for k, v in overrides.items()).replace(" ", "")
            cfg = ConstructConfig(**{**dict(input=str(scene / "multiview"), static=str(scene / "static"),
                                            output=str(work / f"{fam}-{backend}{'-' + tag if tag else ''}"),
                                            coarse_iters=args.coarse_iters, fine_iters=args.fine_iters,
                                            hexplane_backend=backend, progress=False, seed=args.seed,
                                            checkpoint_every=0, device=args.device), **overrides})
            sync()
            t0 = time.time()
            m = construct(cfg, overwrite=True)
            sync()
            entry[backend] = {
                "wall_seconds": time.time() - t0, "train_loop_seconds": m["wall_time_s"],
                "num_gaussians": m["num_gaussians"], "heldout": m["heldout"], "train": m["train"],
                "initial_train_psnr": m["initial_train_psnr"], "lpips_available": m["lpips_available"],
                "lpips_unavailable_reason": m["lpips_unavailable_reason"], "l_hex": m["l_hex"],
            }
            kinds = " ".join(f"{k} {v['psnr']:.2f}" for k, v in m["heldout"].get("psnr_by_kind", {}).items()
                             if v["psnr"] is not None)
            print(f"{fam:9s} {backend:12s} {overrides or ''} {entry[backend]['wall_seconds']:7.1f} s  "
                  f"held-out PSNR {m['heldout']['psnr']:.2f} ({kinds})  SSIM {m['heldout']['ssim']:.3f}  "
                  f"train PSNR {m['train']['psnr']:.2f}  N={m['num_gaussians']}", flush=True)
            report["objects"][fam] = entry
            out_path.write_text(json.dumps(report, indent=2))  # partial results survive a time-out
    for backend in args.backends:
        vals = [e[backend]["heldout"]["psnr"] for e in report["objects"].values() if backend in e]
        secs = [e[backend]["wall_seconds"] for e in report["objects"].values() if backend in e]
        if vals:
            report[f"mean_heldout_psnr_{backend}"] = sum(vals) / len(vals)
            report[f"mean_wall_seconds_{backend}"] = sum(secs) / len(secs)
    out_path.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k.startswith("mean_")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
