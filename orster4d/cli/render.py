"""``orster4d-render --demo``: render a procedurally generated Gaussian scene, time it, write a PNG.

The scene is the rasterizer's benchmark scene (:func:`orster4d.data.scenes.random_scene`):
means uniform in [-1, 1]^3, log-scales normal(-4, 0.3), random rotations, opacities sigmoid(normal),
seen by orbit cameras 4 units away with a 50 degree field of view. Runs on the GPU when torch sees
one (CUDA kernels), otherwise on the CPU (C++ kernels). Kernels build on first use.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from orster4d.cli.args import HelpFormatter, description, device_name, finite_float, nonneg_int, positive_int
from orster4d.devices import resolve_device

__all__ = ["main", "build_parser", "render_demo"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeat: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
    return sorted(times)[len(times) // 2]


def render_demo(n: int, size: int, cameras: int, device: torch.device, backend=None, sh_degree=None, seed: int = 0,
                repeat: int = 3, out: Path | None = None, log_scale: float = -4.0) -> dict:
    """Renders the demo scene; returns timings (ms) and statistics, and writes a PNG grid of the views."""
    from orster4d.ops.rasterize import rasterize_gaussians
    from orster4d.data.scenes import random_scene

    scene = random_scene(n, cameras, size, size, sh_degree=sh_degree, log_scale_mean=log_scale,
                         generator=torch.Generator().manual_seed(seed), device=device)
    params = [scene.means, scene.quats, scene.scales, scene.opacities, scene.colors]
    leaves = [p.clone().requires_grad_() for p in params]
    bg = torch.ones(cameras, 3, device=device)

    def forward(inputs):
        return rasterize_gaussians(*inputs, scene.viewmats, scene.Ks, size, size, sh_degree=sh_degree,
                                   backgrounds=bg, backend=backend)

    t0 = time.perf_counter()
    result = forward(params)  # first call builds the kernels
    _sync(device)
    first_ms = 1e3 * (time.perf_counter() - t0)

    def fwd_bwd():
        o = forward(leaves)
        (o.rgb.sum() + o.alpha.sum()).backward()

    with torch.no_grad():
        fwd_ms = _timed(lambda: forward(params), device, repeat)
    fb_ms = _timed(fwd_bwd, device, repeat)

    stats = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "backend": backend or device.type,
        "gaussians": n,
        "cameras": cameras,
        "resolution": size,
        "first_call_ms": first_ms,
        "forward_ms": fwd_ms,
        "forward_backward_ms": fb_ms,
        "visible_fraction": float((result.radii > 0).float().mean()),
        "mean_alpha": float(result.alpha.mean()),
    }
    if out is not None:
        from PIL import Image

        grid = torch.cat(list(result.rgb.detach().clamp(0, 1)), dim=1)  # views side by side: [H, C*W, 3]
        img = (grid * 255 + 0.5).to(torch.uint8).cpu().numpy()
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out)
        stats["image"] = str(out)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-render", description=description(__doc__), formatter_class=HelpFormatter)
    p.add_argument("--demo", action="store_true", help="render the procedurally generated demo scene")
    p.add_argument("--n", type=positive_int, default=None, help="number of Gaussians (default 1,000,000 on GPU, 50,000 on CPU)")
    p.add_argument("--size", type=positive_int, default=None, help="square image size in px (default 800 on GPU, 256 on CPU)")
    p.add_argument("--cameras", type=positive_int, default=4, help="orbit cameras rendered in one call")
    p.add_argument("--sh-degree", type=int, default=None, choices=(0, 1, 2, 3), help="use SH colours of this degree")
    p.add_argument("--log-scale", type=finite_float, default=None,
                   help="mean log scale of the Gaussians (default -4 on GPU; -3 on CPU, where N is smaller)")
    p.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    p.add_argument("--backend", default=None, choices=["cpu", "cuda", "reference"],
                   help="force a backend (default: by device)")
    p.add_argument("--repeat", type=positive_int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="scene seed")
    p.add_argument("-o", "--out", type=Path, default=Path("outputs/render_demo.png"), help="PNG to write")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not args.demo:
        p.print_help()
        print("\norster4d-render: nothing to do; pass --demo", file=sys.stderr)
        return 2
    device = resolve_device(args.device)  # checked at parse time
    gpu = device.type == "cuda"
    n = args.n if args.n is not None else (1_000_000 if gpu else 50_000)
    size = args.size if args.size is not None else (800 if gpu else 256)
    log_scale = args.log_scale if args.log_scale is not None else (-4.0 if gpu else -3.0)
    print(f"orster4d-render: {n:,} Gaussians, {args.cameras} camera(s), {size}x{size}, on {device} "
          f"(kernels build on first use)", flush=True)
    s = render_demo(n, size, args.cameras, device, backend=args.backend, sh_degree=args.sh_degree, seed=args.seed,
                    repeat=args.repeat, out=args.out, log_scale=log_scale)
    print(f"  device             {s['device']} ({s['backend']} backend)")
    print(f"  first call         {s['first_call_ms']:9.1f} ms (includes any kernel build)")
    print(f"  forward            {s['forward_ms']:9.2f} ms  ({args.cameras} views)")
    print(f"  forward+backward   {s['forward_backward_ms']:9.2f} ms")
    print(f"  visible            {100 * s['visible_fraction']:.1f}% of Gaussian-views, mean alpha {s['mean_alpha']:.3f}")
    print(f"  wrote              {s['image']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
