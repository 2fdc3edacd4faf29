"""Where a kernel's time goes, by timing variants of one call (CUDA events, no hardware counters).

    python -m benchmarks.kernel_split --json split.json

- HexPlane (the 64^3 x 25 field of ``benchmarks.hexplane``, 100k and 1M points, also with every
  point at one time): the forward op; the backward op with both gradients, with the plane gradient
  only and with the point gradient only; a plane-gradient-only backward whose points are sorted by
  their finest xy cell (what binning points by cell would buy the atomics); and the bytes a plain
  device-to-device copy moves in the same time, for the achieved-bandwidth figure.
- Rasterizer (``benchmarks.rasterize``'s scenes): each dispatcher op of one forward+backward
  (projection, tile intersection, compositing forward, compositing backward, projection
  backward) timed alone, against the user-level call.

Every timing is the median of ``--reps`` calls after warm-up. The split is for finding the cost;
the side-by-side comparisons with the peers live in ``benchmarks.hexplane`` and ``benchmarks.rasterize``.
"""
from __future__ import annotations

import math
import sys

import torch

from benchmarks.timing import cuda_median_ms, python_version, report_parser, write_json


def hexplane_split(n_points: int, shared_t: bool, reps: int) -> dict:
    from benchmarks.hexplane import Case, Inputs

    inp = Inputs(Case(64, n_points, shared_t))
    field = inp.field
    pts, packed, meta = inp.points.detach(), field.data.detach(), field.layout.meta()
    g = inp.grad_out
    ops = torch.ops.orster4d

    def bwd(need_points, need_planes, points=pts, grad=g):
        return lambda: ops.hexplane_bwd(grad, points, packed, meta, need_points, need_planes)

    out = {"fwd": cuda_median_ms(lambda: ops.hexplane_fwd(pts, packed, meta), iters=reps),
           "bwd_both": cuda_median_ms(bwd(True, True), iters=reps),
           "bwd_planes": cuda_median_ms(bwd(False, True), iters=reps),
           "bwd_points": cuda_median_ms(bwd(True, False), iters=reps)}
    # points ordered by their finest-level xy cell: neighbouring threads hit the same plane rows
    r = 128  # the finest level's xy resolution (64 x multires 2)
    cell = (((pts[:, 0] + 1) * 0.5 * r).long().clamp(0, r - 1) * r
            + ((pts[:, 1] + 1) * 0.5 * r).long().clamp(0, r - 1))
    order = torch.argsort(cell)
    out["bwd_planes_sorted_xy"] = cuda_median_ms(bwd(False, True, pts[order].contiguous(), g[order].contiguous()),
                                                 iters=reps)
    out["argsort_1key"] = cuda_median_ms(lambda: torch.argsort(cell), iters=reps)
    # bandwidth reference: a device-to-device copy of 256 MB
    buf = torch.empty(64 * 2**20, device="cuda")
    dst = torch.empty_like(buf)
    copy_ms = cuda_median_ms(lambda: dst.copy_(buf), iters=reps)
    out["copy_256MB_ms"] = copy_ms
    out["copy_GBps"] = 2 * buf.numel() * 4 / copy_ms / 1e6
    # compulsory traffic of fwd+bwd: points, features, grad_out read/written once; planes once
    bytes_min = (pts.numel() * 4 * 3 + g.numel() * 4 * 2 + packed.numel() * 4 * 3)
    out["compulsory_MB"] = bytes_min / 1e6
    out["fwd_bwd_GBps_compulsory"] = bytes_min / (out["fwd"] + out["bwd_both"]) / 1e6
    return out


def rasterizer_split(case: str, reps: int) -> dict:
    from benchmarks.rasterize import SIZES, make_scene, render_ours, step_fn
    from orster4d.ops.rasterize._ops import TILE_SIZE, extension

    n, res = next((c[1], c[2]) for c in SIZES if c[0] == case)
    s = make_scene(n, res)
    ops = extension("cuda")
    m, q, sc, o = s.means[None], s.quats[None], s.scales[None], s.opacities[None]
    vm, K = s.viewmats[None], s.Ks[None]
    proj = lambda: ops.project_fwd(m, q, sc, vm, K, s.width, s.height, 0.01, 1e10, 0.3)
    radii, means2d, depths, conics = proj()
    B, C, N = 1, vm.shape[1], m.shape[1]
    col = s.colors.reshape(1, 1, N, 3).expand(B, C, N, 3).contiguous()
    tw, th = math.ceil(s.width / TILE_SIZE), math.ceil(s.height / TILE_SIZE)
    isect = lambda: ops.intersect_tiles(means2d, radii, depths, TILE_SIZE, tw, th, conics, o)
    offsets, ids = isect()
    fwd = lambda: ops.rasterize_fwd(means2d, conics, col, o, depths, None, s.width, s.height, TILE_SIZE, offsets, ids)
    render, rdepth, last, trans = fwd()
    v = torch.rand_like(render)
    bwd = lambda: ops.rasterize_bwd(means2d, conics, col, o, depths, None, s.width, s.height, TILE_SIZE, offsets, ids,
                                    render, rdepth, trans, last, v, None, None)
    vm2, vc, *_ = bwd()
    pbwd = lambda: ops.project_bwd(m, q, sc, vm, K, s.width, s.height, 0.3, radii, conics, vm2,
                                   torch.zeros_like(depths), vc)
    out = {"project_fwd": cuda_median_ms(proj, iters=reps), "intersect_tiles": cuda_median_ms(isect, iters=reps),
           "rasterize_fwd": cuda_median_ms(fwd, iters=reps), "rasterize_bwd": cuda_median_ms(bwd, iters=reps),
           "project_bwd": cuda_median_ms(pbwd, iters=reps), "intersections": int(ids.numel())}
    out["ops_sum"] = sum(out[k] for k in ("project_fwd", "intersect_tiles", "rasterize_fwd", "rasterize_bwd",
                                         "project_bwd"))
    out["user_fwd"] = cuda_median_ms(step_fn(render_ours, s, backward=False), iters=reps)
    out["user_fwd_bwd"] = cuda_median_ms(step_fn(render_ours, s, backward=True), iters=reps)
    return out


def main(argv=None) -> int:
    p = report_parser(__doc__)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--sizes", default="100k@800,1M@800,1M@1600,3M@1600")
    p.add_argument("--parts", default="hexplane,rasterize", help="comma list of the parts to run")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernel_split needs CUDA", file=sys.stderr)
        return 2
    from orster4d.ops.hexplane._ops import ensure_loaded

    ensure_loaded("cuda")
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": python_version(),
              "hexplane": {}, "rasterize": {}}
    parts = args.parts.split(",")
    for n in (100_000, 1_000_000) if "hexplane" in parts else ():
        for shared in (False, True):
            key = f"64^3x25_N{n // 1000}k" + ("_shared_t" if shared else "")
            report["hexplane"][key] = hexplane_split(n, shared, args.reps)
            print(key, report["hexplane"][key], flush=True)
    for case in args.sizes.split(",") if "rasterize" in parts else ():
        report["rasterize"][case] = rasterizer_split(case, max(5, args.reps // 3))
        print(case, report["rasterize"][case], flush=True)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
