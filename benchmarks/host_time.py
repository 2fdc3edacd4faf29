"""Host time of the kernels' entry points: what a call costs the CPU when the kernels cost nothing.

    python -m benchmarks.host_time --json host.json [--device cpu|cuda] [--reps 2000]

Tiny inputs (one Gaussian, one camera, 16 x 16 pixels; 64 HexPlane points), so the kernels' own
work is negligible and the time is the Python entry point, the dispatcher, autograd and the
kernel launches. On the CPU the kernels run in the calling thread (one thread, set here); on CUDA
the time is the host's wall time of the call, which includes the one synchronisation the
rasterizer's tile intersection makes.

Rows (median microseconds of ``--reps`` calls after warm-up, in one process):

- ``rasterize_fwd`` / ``rasterize_fwd_bwd``: :func:`orster4d.ops.rasterize.rasterize_gaussians`
  with gradients on, and with ``backward()`` of the image's sum;
- ``rasterize_check_inputs``: its input validation alone;
- ``project_fwd_grad`` / ``project_fwd_nograd``: the projection op with inputs that need
  gradients (through its autograd kernel) and under ``no_grad`` (straight to the kernel); their
  difference is the cost of crossing autograd for one op;
- ``hexplane_fwd_bwd``: a small :class:`~orster4d.recon.hexplane_field.HexPlaneField` (8 channels,
  8^3 x 4, one level) forward+backward on 64 points, through the op's autograd kernel.

For A/B of two checkouts, run this module of each tree on the same machine one after the other
(``PYTHONPATH=<tree> python -m benchmarks.host_time ...``); the times move with the machine's load,
so compare runs made side by side only.
"""
from __future__ import annotations

import platform
import statistics
import sys
import time

import torch

from benchmarks.timing import python_version, report_parser, write_json


def _median_us(fn, reps: int, device: str) -> float:
    """Median host wall time of ``fn()`` in microseconds, after ``reps // 10`` warm-up calls.
    CUDA: the device is synchronised before each timed call (not inside it)."""
    for _ in range(max(10, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def _scene(device: str):
    g = torch.Generator().manual_seed(0)
    f = dict(device=device)
    means = (0.1 * torch.randn(1, 3, generator=g)).to(**f)
    quats = torch.randn(1, 4, generator=g).to(**f)
    scales = torch.full((1, 3), 0.1, **f)
    opac = torch.full((1,), 0.5, **f)
    cols = torch.rand(1, 3, generator=g).to(**f)
    vm = torch.eye(4, **f)[None].clone()
    vm[0, 2, 3] = 3.0
    K = torch.tensor([[[20.0, 0.0, 8.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]]], **f)
    params = [t.requires_grad_() for t in (means, quats, scales, opac, cols)]
    return params, vm, K


def measure(device: str, reps: int) -> dict:
    from orster4d.recon.hexplane_field import HexPlaneField
    from orster4d.ops.rasterize import rasterize_gaussians
    from orster4d.ops.rasterize._ops import ensure_loaded
    from orster4d.ops.rasterize._validate import check_inputs

    ensure_loaded(device)
    (means, quats, scales, opac, cols), vm, K = _scene(device)
    W = H = 16

    def render():
        return rasterize_gaussians(means, quats, scales, opac, cols, vm, K, W, H)

    def render_bwd():
        render().rgb.sum().backward()

    ops = torch.ops.orster4d
    m3, q3, s3 = means[None], quats[None], scales[None]

    def project():
        return ops.project_fwd(m3, q3, s3, vm[None], K[None], W, H, 0.01, 1e10, 0.3)

    def project_nograd():
        with torch.no_grad():
            return project()

    field = HexPlaneField(channels=8, resolution=(8, 4), multires=(1,)).to(device)
    pts = (torch.rand(64, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device).requires_grad_()

    def hexplane():
        field(pts).sum().backward()

    rows = {
        "rasterize_fwd": _median_us(render, reps, device),
        "rasterize_fwd_bwd": _median_us(render_bwd, reps, device),
        "rasterize_check_inputs": _median_us(
            lambda: check_inputs(means, quats, scales, opac, cols, vm, K, W, H, None, 0.01, 1e10, None, 0.3, None),
            reps, device),
        "project_fwd_grad": _median_us(project, reps, device),
        "project_fwd_nograd": _median_us(project_nograd, reps, device),
        "hexplane_fwd_bwd": _median_us(hexplane, reps, device),
    }
    return rows


def main(argv=None) -> int:
    p = report_parser(__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--label", default="", help="free text stored in the report (e.g. the commit)")
    args = p.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)
    host = platform.processor() or platform.machine()
    rep = {"device": args.device, "host": host, "label": args.label, "torch": torch.__version__,
           "python": python_version(), "reps": args.reps, "unit": "us (median host wall time per call)",
           "rows": measure(args.device, args.reps)}
    if args.device == "cuda":
        rep["gpu"] = torch.cuda.get_device_name(0)
    write_json(args.json, rep)
    for k, v in rep["rows"].items():
        print(f"{k:26s} {v:9.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
