"""Image to 4D asset on one GPU, from a model trained in the same run: the wall time of each phase.

    python -m benchmarks.generate --json report.json [--root DIR] [--preset quick] [--construct-iters C F]

Trains the reproduction protocol's shared models and the four stages of the ``ours`` row at the
given reproduction preset (default ``quick``: a few minutes on one GPU; the model is a smoke test
of the machinery, not a result), exports the stage-4 checkpoint as an ``STD4DPipeline`` folder,
then runs ``orster4d-generate`` as a user does, in a fresh process, on held-out objects:
``--image`` (the true first view) to a 4D asset, and ``--prompt`` / ``--static-video`` with
``--video-only``. The report holds each command's wall time, the per-phase timings it wrote to
``generation.json`` (model load, sampling, construction), the training throughput of every run,
the image VAE's held-out PSNR and the pipeline folder's size. Target (image to 4D asset at the
``small`` architecture): under 60 s on one H200, sampling and construction together.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.timing import python_version, report_parser, write_json


def _folder_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _generate(args, out: str) -> dict:
    """Run ``orster4d-generate`` in a fresh process; returns its generation.json plus the wall time."""
    cmd = [sys.executable, "-m", "orster4d.cli.generate", *args, "-o", out, "--overwrite", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    rec = json.loads((Path(out) / "generation.json").read_text())
    return {"command": " ".join(cmd[2:]), "wall_s": wall, "generation": rec}


def run_report(root: str, preset: str, construct_iters, device_name: str) -> dict:
    from orster4d.data.dataset import write_png
    from orster4d.data.world import heldout_objects
    from orster4d.generation.pipeline import export_checkpoint
    from orster4d.reproduce.protocol import Protocol, ProtocolOptions
    from orster4d.reproduce.rows import find_rows
    from orster4d.reproduce.scoring import true_videos

    t0 = time.perf_counter()
    proto = Protocol(ProtocolOptions(root=root, preset=preset, rows=["ours"], seeds=[0], progress=False))
    phases = {}
    for name, fn in (("world", proto.world), ("image_vae", proto.vae), ("clip", proto.clip),
                     ("teachers", proto.teachers)):
        t = time.perf_counter()
        fn()
        phases[name] = time.perf_counter() - t
    t = time.perf_counter()
    chain = proto.chain(find_rows(["ours"])[0], 0)
    phases["stages_1_4"] = time.perf_counter() - t
    pipe = os.path.join(root, "pipeline")
    export_checkpoint(chain[4][1], pipe, overwrite=True)
    train_s = time.perf_counter() - t0

    held = heldout_objects(Path(root) / "world")[0]
    target = true_videos(held["folder"])
    image = str(write_png(os.path.join(root, "heldout_view0.png"), target["video"][0]))
    it = [str(n) for n in construct_iters]
    runs = {
        "image_to_4d": _generate(["--image", image, "--model", pipe, "--timing", "--construct-iters", *it],
                                 os.path.join(root, "gen_image")),
        "text_video_only": _generate(["--prompt", held["prompt"], "--model", pipe, "--video-only", "--timing"],
                                     os.path.join(root, "gen_text")),
        "static3d_video_only": _generate(["--static-video", os.path.join(held["folder"], "static"), "--model", pipe,
                                          "--video-only", "--timing"], os.path.join(root, "gen_static")),
    }
    import diffusers

    vae_info = proto.vae_run.info() or {}
    return {
        "gpu": device_name, "torch": torch.__version__, "diffusers": diffusers.__version__, "python": python_version(),
        "reproduction_preset": preset, "construct_iters": list(construct_iters),
        "training_phases_s": phases, "training_total_s": train_s,
        "training_throughput_samples_per_s": proto.throughput,
        "image_vae_heldout_psnr_db": vae_info.get("heldout_psnr_db"),
        "pipeline_bytes": _folder_bytes(pipe), "heldout_object": held["name"], "prompt": held["prompt"],
        "runs": runs,
        "image_to_4d_wall_s": runs["image_to_4d"]["wall_s"],
        "target_image_to_4d_under_60_s": runs["image_to_4d"]["wall_s"] < 60.0,
    }


def main(argv=None) -> int:
    ap = report_parser("GPU report of generation: image to 4D asset from a model trained in the same run")
    ap.add_argument("--root", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--preset", default="quick", help="reproduction preset of the training (default quick)")
    ap.add_argument("--construct-iters", type=int, nargs=2, default=(6000, 3000), metavar=("COARSE", "FINE"))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.generate: needs a CUDA device", file=sys.stderr)
        return 2
    import tempfile

    root = args.root or tempfile.mkdtemp(prefix="orster4d_generate_report_")
    report = run_report(root, args.preset, args.construct_iters, torch.cuda.get_device_name(0))
    write_json(args.json, report)
    summary = {k: v for k, v in report.items() if k != "runs"}
    summary["phases"] = {k: dict(r["generation"]["timings"], wall_s=r["wall_s"]) for k, r in report["runs"].items()}
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
