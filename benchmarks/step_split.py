"""Where the time of a call goes: the rasterizer's entry point and one construct step, split by op.

    python -m benchmarks.step_split --json split.json                      # CUDA: 100k@800, 4D, construct
    python -m benchmarks.step_split --json s.json --device cpu --sizes 2k@64 --no-4d --construct-size 32 \\
        --construct-gaussians 500 --steps 2                                # CPU smoke run

Each case runs its call ``--steps`` times under ``torch.profiler`` (after warm-up) and reports, per
call:

- ``wall_ms``: the call with a synchronisation after it (what a user waits for);
- ``device_ms``: the sum of the kernels' time (CUDA), or of the ops' own CPU time (CPU);
- ``host_gap_ms``: ``wall_ms - device_ms`` on CUDA, the time the GPU had nothing to run (Python,
  launches, synchronisations), a lower bound when kernels overlap;
- ``by_op``: device time per top-level op, the first op on the call stack below Python (the
  rasterizer's ``orster4d::project_fwd``, ``orster4d::intersect_tiles``, its input checks'
  ``aten::_foreach_norm``, the autograd nodes of the backward), with call counts;
- ``by_category`` (construct step): the same time in ``rasterizer`` (the ``orster4d`` rasterizer ops),
  ``hexplane`` (``orster4d::hexplane_*``), ``mlp`` (the field's linear layers and their backward),
  ``optimiser`` (``Optimizer.step`` / ``zero_grad``) and ``other`` (losses, the deformation's
  elementwise work, copies), attributed through the op's ancestors.

The profiler adds its own overhead to the host side, so ``host_gap_ms`` here is above the gap of an
unprofiled call; the timed reports (``benchmarks.rasterize``, ``benchmarks.construct``) give the
unprofiled times.
"""
from __future__ import annotations

import gzip
import os
import time
from collections import defaultdict
from typing import Callable, Dict, Optional

import torch

from benchmarks.timing import python_version, report_parser, write_json

CATEGORIES = ("rasterizer", "hexplane", "mlp", "optimiser", "other")
_MLP_OPS = ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "AddmmBackward", "MmBackward")


def _self_time_us(ev, cuda: bool) -> float:
    """An event's own time in microseconds: its kernels' (CUDA) or its own CPU time."""
    if cuda:
        for name in ("self_device_time_total", "self_cuda_time_total"):
            if hasattr(ev, name):
                return float(getattr(ev, name))
        return 0.0
    return float(ev.self_cpu_time_total)


def category(names) -> str:
    """The category of an op from the names on its stack, innermost first (see the module docstring)."""
    for n in names:
        if "orster4d::hexplane" in n:
            return "hexplane"
        if "orster4d::" in n:
            return "rasterizer"
        if n.startswith("Optimizer.step") or n.startswith("Optimizer.zero_grad"):
            return "optimiser"
        if any(m in n for m in _MLP_OPS):
            return "mlp"
    return "other"


def split(fn: Callable[[], object], steps: int, cuda: bool, warmup: int = 2, trace: Optional[str] = None) -> Dict:
    """Profile ``steps`` calls of ``fn`` (after ``warmup``); the per-call split (module docstring).
    ``trace``: also write the profile as a gzipped Chrome trace there (``chrome://tracing``, Perfetto)."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
            sync()
        wall = (time.perf_counter() - t0) / steps * 1e3
    if trace:
        raw = trace[:-3] if trace.endswith(".gz") else trace
        prof.export_chrome_trace(raw)
        with open(raw, "rb") as f_in, gzip.open(raw + ".gz", "wb") as f_out:
            f_out.write(f_in.read())
        os.remove(raw)
    by_op: Dict[str, Dict[str, float]] = defaultdict(lambda: {"ms": 0.0, "calls": 0})
    by_cat: Dict[str, float] = {c: 0.0 for c in CATEGORIES}
    total = 0.0
    for ev in prof.events():
        if getattr(ev, "device_type", torch.autograd.DeviceType.CPU) != torch.autograd.DeviceType.CPU:
            continue  # a kernel listed on its own: its time is already its launching op's
        own = _self_time_us(ev, cuda) / 1e3 / steps
        stack, top = [], ev
        while top is not None:
            stack.append(top.name)
            if top.cpu_parent is None:
                break
            top = top.cpu_parent
        if top is ev:
            by_op[top.name]["calls"] += 1 / steps
        if own == 0.0:
            continue
        total += own
        by_op[top.name]["ms"] += own
        by_cat[category(stack)] += own
    ops = {k: {"ms": round(v["ms"], 4), "calls": round(v["calls"], 2)}
           for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]["ms"]) if v["ms"] > 0}
    out = {"wall_ms": wall, "device_ms": total, "by_op": ops, "by_category": by_cat}
    if cuda:
        out["host_gap_ms"] = max(0.0, wall - total)
    return out


def rasterizer_call(n: int, res: int, device: str, four_d: bool = False) -> Callable[[], object]:
    """One forward and backward of :func:`rasterize_gaussians` on the rasterizer benchmark's scene."""
    from benchmarks.rasterize import make_scene, make_scene_4d
    from orster4d.ops.rasterize import rasterize_gaussians

    s = make_scene_4d(device=device) if four_d else make_scene(n, res, device=device)
    leaves = [x.detach().clone().requires_grad_(True) for x in s.leaves()]

    def call():
        out = rasterize_gaussians(*leaves, s.viewmats, s.Ks, s.width, s.height)
        out.rgb.sum().backward()
        for x in leaves:
            x.grad = None

    return call


def construct_step(size: int, gaussians: int, device: str) -> Callable[[], object]:
    """One fine-phase construct iteration (deform, render, loss, backward, optimiser) on the walker
    scene with 16 timestamps and 4 views at ``size`` pixels."""
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data import make_object, render_multiview
    from orster4d.recon import ConstructConfig
    from orster4d.recon.fit import _Run
    from orster4d.recon.losses import LPIPSTerm

    traj = OrbitTrajectory(num_frames=16, width=size, height=size, radius=2.6)
    ds = render_multiview(make_object("walker", 0, max(gaussians // 2, 100)), traj, num_views=4, test_views=(),
                          test_every_time=0, device=device)
    cfg = ConstructConfig(input="", output="", init_points=gaussians, progress=False, seed=0, device=device)
    torch.manual_seed(0)
    run = _Run(cfg, {"train": ds, "all": ds, "static": None, "eval": None, "priors": None}, torch.device(device))
    run.setup_coarse()
    run.setup_fine()
    lp = LPIPSTerm(cfg.lpips_net, cfg.lpips_weights, device)
    return lambda: run.step(True, lp)


def main(argv=None) -> int:
    p = report_parser("the time of a rasterizer call and of a construct step, split by op")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--sizes", default="100k@800,1M@800", help="rasterizer cases, N@resolution, comma separated")
    p.add_argument("--no-4d", action="store_true", help="leave out the batched 4D rasterizer case")
    p.add_argument("--construct-size", type=int, default=256, help="construct step image size (0: leave it out)")
    p.add_argument("--construct-gaussians", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=20, help="profiled calls per case")
    p.add_argument("--trace-dir", default=None, help="write each rasterizer case's profile there as a Chrome trace")
    args = p.parse_args(argv)
    tr = (lambda name: os.path.join(args.trace_dir, name.replace(" ", "_").replace("@", "at") + ".json.gz")) \
        if args.trace_dir else (lambda name: None)
    if args.trace_dir:
        os.makedirs(args.trace_dir, exist_ok=True)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("benchmarks.step_split: needs a CUDA device; torch sees none (or pass --device cpu)")
        return 1
    report: Dict[str, Optional[object]] = {
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "device": args.device, "torch": torch.__version__,
        "python": python_version(), "steps": args.steps, "cases": {}}
    count = {"k": 1_000, "M": 1_000_000}
    for item in [s for s in args.sizes.split(",") if s]:
        n_txt, _, res = item.partition("@")
        n = int(float(n_txt[:-1]) * count[n_txt[-1]]) if n_txt[-1] in count else int(n_txt)
        report["cases"][f"rasterize {item}"] = split(rasterizer_call(n, int(res), args.device), args.steps, cuda,
                                                     trace=tr(f"rasterize {item}"))
        write_json(args.json, report)
    if not args.no_4d:
        report["cases"]["rasterize 4D"] = split(rasterizer_call(0, 0, args.device, four_d=True), args.steps, cuda)
        write_json(args.json, report)
    if args.construct_size:
        name = f"construct step {args.construct_size}px"
        report["cases"][name] = split(construct_step(args.construct_size, args.construct_gaussians, args.device),
                                      args.steps, cuda)
        write_json(args.json, report)
    for name, c in report["cases"].items():
        gap = f", host gap {c['host_gap_ms']:.3f} ms" if "host_gap_ms" in c else ""
        top = ", ".join(f"{k} {v['ms']:.3f}" for k, v in list(c["by_op"].items())[:6])
        print(f"{name}: wall {c['wall_ms']:.3f} ms, device {c['device_ms']:.3f} ms{gap}; {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
