"""4D construction benchmarks: one fine-phase iteration under pytest-benchmark, the whole default
schedule in the JSON report.

    pytest benchmarks/construct.py --benchmark-only
    python -m benchmarks.construct --json report.json
    python -m benchmarks.construct --json r.json --families hopper --coarse-iters 600 --fine-iters 300  # quick look
    python -m benchmarks.construct --json r.json --device cpu --size 96 --coarse-iters 600 --fine-iters 300  # CPU ablation

The bench times one full fine-phase construct iteration (deform + render + loss + backward +
optimiser step) at 16 timestamps, 512x512, with the fused HexPlane and with the ``grid_sample``
composition, side by side; before timing, the two HexPlane paths are checked to give the same
deformation and the same loss for the same weights. Skips without CUDA.

The report renders, for each object, a procedural scene (16 frames, 512x512, multi-view ground
truth with views and timestamps held out), runs ``construct`` with the default schedule (6,000
coarse + 3,000 fine iterations) once with the fused HexPlane and once with the ``grid_sample``
path (the plain 4DGS field, no priors), and records wall time and PSNR / SSIM / LPIPS on the
held-out frames (also by kind: novel view, novel time).

``--priors-model DIR`` (a demo model folder such as ``models/std4d-small``, or an STD4DPipeline
folder) adds ST-HexPlane runs: the model is run once per scene on the scene's first orbital frame
(resized to the model's size) with ``orster4d-generate --video-only``, and its prior tokens
(``priors.pt``) drive the construction, once per ``--prior-sides`` entry (``both``, or one side
only, e.g. ``spatial`` to see what the temporal tokens add on novel-time frames). Those runs are
reported as ``<backend>+priors[<sides>]``. ``--priors-only`` leaves out the runs without priors. ``--input orbital`` fits the single orbital video (one
view per time, the case of a generated video) instead of the multi-view set, and scores on the
multi-view set's held-out views and times.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from benchmarks.timing import python_version, report_parser, write_json

from orster4d.cameras import OrbitTrajectory
from orster4d.recon import ConstructConfig
from orster4d.recon.fit import _Run
from orster4d.recon.losses import LPIPSTerm
from orster4d.data import make_object, render_multiview

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the construct benchmark needs a CUDA device")

T, SIZE, VIEWS, GAUSSIANS = 16, 512, 4, 50_000
_RUNS = {}


def _run(backend: str, device: str = "cuda", rasterizer=None) -> _Run:
    """A fine-phase run on the walker scene; the same seed gives both backends identical weights."""
    if backend in _RUNS:
        return _RUNS[backend]
    if "data" not in _RUNS:
        traj = OrbitTrajectory(num_frames=T, width=SIZE, height=SIZE, radius=2.6)
        _RUNS["data"] = render_multiview(make_object("walker", 0, 20_000), traj, num_views=VIEWS, test_views=(),
                                         test_every_time=0, device=device, backend=rasterizer)
    ds = _RUNS["data"]
    cfg = ConstructConfig(input="", output="", init_points=GAUSSIANS, progress=False, seed=0,
                          hexplane_backend=backend, rasterizer_backend=rasterizer)
    torch.manual_seed(0)
    run = _Run(cfg, {"train": ds, "all": ds, "static": None, "eval": None, "priors": None}, torch.device(device))
    run.setup_coarse()
    run.setup_fine()
    run.gauss.active_sh_degree = 3
    _RUNS[backend] = run
    return run


@needs_cuda
def test_paths_agree():
    a, b = _run("fused"), _run("grid_sample")
    times = a.times.cuda()
    with torch.no_grad():
        for x, y in zip(a.field(a.gauss.means, times), b.field(b.gauss.means, times)):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    la = {k: float(v) for k, v in a.step(True, LPIPSTerm(a.cfg.lpips_net, a.cfg.lpips_weights, "cuda")).items()}
    lb = {k: float(v) for k, v in b.step(True, LPIPSTerm(b.cfg.lpips_net, b.cfg.lpips_weights, "cuda")).items()}
    assert abs(la["loss"] - lb["loss"]) < 1e-3 * max(abs(lb["loss"]), 1e-3) or abs(la["l1"] - lb["l1"]) < 1e-4


@needs_cuda
@pytest.mark.parametrize("backend", ["fused", "grid_sample"])
def test_construct_iteration(benchmark, backend):
    run = _run(backend)
    lp = LPIPSTerm(run.cfg.lpips_net, run.cfg.lpips_weights, "cuda")
    logs = run.step(True, lp)
    assert all(torch.isfinite(v).all() for v in logs.values())

    def step():
        run.step(True, lp)
        torch.cuda.synchronize()

    benchmark.group = f"construct iteration T={T} {SIZE}x{SIZE} N={run.gauss.num_gaussians}"
    benchmark.extra_info.update(gaussians=run.gauss.num_gaussians, lpips=lp.available)
    benchmark.pedantic(step, warmup_rounds=3, rounds=20, iterations=1)


# ------------------------------------------------------------------ JSON report
def main(argv=None) -> int:
    from orster4d.data import FAMILIES, generate_scene
    from orster4d.recon import construct

    p = report_parser("GPU report for 4D construction: the default schedule on procedural objects")
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
    p.add_argument("--input", choices=("multiview", "orbital"), default="multiview",
                   help="what the construction fits: the multi-view set, or the single orbital video (one view "
                        "per time); both are scored on the multi-view set's held-out views and times")
    p.add_argument("--priors-model", help="a demo model folder (demo.json + pipeline/) or an STD4DPipeline folder: "
                   "adds ST-HexPlane runs on its prior tokens for each scene (module docstring)")
    p.add_argument("--prior-sides", nargs="+", default=["both"], choices=("both", "spatial", "temporal"),
                   help="with --priors-model: one run per entry (both token sets, or one side only)")
    p.add_argument("--priors-only", action="store_true",
                   help="with --priors-model: leave out the runs without priors (e.g. when a committed report "
                        "already holds them and GPU time is short)")
    p.add_argument("--gen-steps", type=int, help="denoising steps of the priors' generation (default: the demo "
                   "model's schedule for the device, else 20)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks.construct: needs a CUDA device; torch sees none (or pass --device cpu)")
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
    if set(families) - set(FAMILIES):
        p.error(f"--families: unknown {sorted(set(families) - set(FAMILIES))}; known: {list(FAMILIES)} or 'all'")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="orster4d_construct_"))
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    report = {"gpu": torch.cuda.get_device_name() if cuda else None, "device": device_name,
              "torch": torch.__version__, "python": python_version(),
              "frames": args.frames, "size": args.size, "views": args.views, "coarse_iters": args.coarse_iters,
              "fine_iters": args.fine_iters, "overrides": overrides, "input": args.input,
              "priors_model": args.priors_model, "objects": {}}
    for fam in families:
        scene = work / f"{fam}-scene"
        t0 = time.time()
        if not (scene / "scene.json").is_file():
            generate_scene(scene, fam, args.seed, args.frames, args.size, args.size, args.views, device=args.device)
        entry = {"scene_seconds": time.time() - t0}
        runs = [] if args.priors_only and args.priors_model else [(b, b, {}) for b in args.backends]
        if args.priors_model:
            t0 = time.time()
            priors = scene_priors(scene, args.priors_model, work / f"{fam}-priors", args.device, args.seed,
                                  args.gen_steps)
            entry["priors_seconds"] = time.time() - t0
            for sides in args.prior_sides:
                use = ["spatial", "temporal"] if sides == "both" else [sides]
                runs.append((f"{args.backends[0]}+priors[{sides}]", args.backends[0],
                             {"priors": str(priors), "prior_sides": use}))
        for backend, hexplane, extra in runs:
            tag = "-".join(f"{k}{v}" for k, v in overrides.items()).replace(" ", "")
            name = backend.replace("+", "-").replace("[", "-").replace("]", "")
            cfg = ConstructConfig(**{**dict(input=str(scene / args.input), static=str(scene / "static"),
                                            eval_data=str(scene / "multiview") if args.input != "multiview" else None,
                                            output=str(work / f"{fam}-{args.input}-{name}{'-' + tag if tag else ''}"),
                                            coarse_iters=args.coarse_iters, fine_iters=args.fine_iters,
                                            hexplane_backend=hexplane, progress=False, seed=args.seed,
                                            checkpoint_every=0, device=args.device), **extra, **overrides})
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
            print(f"{fam:9s} {backend:22s} {overrides or ''} {entry[backend]['wall_seconds']:7.1f} s  "
                  f"held-out PSNR {m['heldout']['psnr']:.2f} ({kinds})  SSIM {m['heldout']['ssim']:.3f}  "
                  f"train PSNR {m['train']['psnr']:.2f}  N={m['num_gaussians']}", flush=True)
            report["objects"][fam] = entry
            write_json(args.json, report)  # partial results survive a time-out
    names = list(dict.fromkeys(k for e in report["objects"].values() for k, v in e.items() if isinstance(v, dict)))
    for backend in names:
        vals = [e[backend]["heldout"]["psnr"] for e in report["objects"].values() if backend in e]
        secs = [e[backend]["wall_seconds"] for e in report["objects"].values() if backend in e]
        if vals:
            report[f"mean_heldout_psnr_{backend}"] = sum(vals) / len(vals)
            report[f"mean_wall_seconds_{backend}"] = sum(secs) / len(secs)
    write_json(args.json, report)
    print(json.dumps({k: v for k, v in report.items() if k.startswith("mean_")}, indent=2))
    return 0


def scene_priors(scene: Path, model: str, out: Path, device: str, seed: int, steps=None) -> Path:
    """Prior tokens of ``model`` for ``scene``: its first orbital frame, resized (area) to the model's
    size, is the image condition of ``orster4d-generate --video-only``; returns ``out/priors.pt``."""
    import torch.nn.functional as F

    from orster4d.cli.generate import build_parser, generate
    from orster4d.data.dataset import load_dataset, write_png
    from orster4d.cameras import OrbitTrajectory
    from orster4d.generation.pipeline import check_pipeline_folder

    model = Path(model)
    guidance, schedule = 3.0, None
    if (model / "demo.json").is_file():
        from orster4d.generation.demo import load_demo_model

        demo = load_demo_model(model)
        schedule, pipe_dir = demo.schedule(device), demo.pipeline
        guidance = schedule["guidance"]
    else:
        pipe_dir = model
    steps = steps or (schedule["steps"] if schedule else 20)
    traj = OrbitTrajectory.from_dict(dict(check_pipeline_folder(str(pipe_dir))["trajectory"]))  # the weights load once, in generate
    frame = load_dataset(scene / "orbital").images[0].float()  # [H, W, 3] in [0, 1]
    small = F.interpolate(frame.permute(2, 0, 1)[None], size=(traj.height, traj.width), mode="area")[0]
    png = out / "condition.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    write_png(png, small.permute(1, 2, 0).clamp(0, 1))
    argv = ["--image", str(png), "--model", str(pipe_dir), "-o", str(out / "gen"), "--seed", str(seed),
            "--steps", str(steps), "--guidance", str(guidance), "--device", device, "--video-only",
            "--overwrite", "--no-progress"]
    generate(build_parser().parse_args(argv), log=lambda line: None)
    return out / "gen" / "priors.pt"


if __name__ == "__main__":
    sys.exit(main())
