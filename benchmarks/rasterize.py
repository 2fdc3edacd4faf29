"""Rasterizer benchmarks: ours (CUDA) vs gsplat 1.5.3, forward and forward+backward.

    pytest benchmarks/rasterize.py --benchmark-only        # pytest-benchmark, side by side
    python -m benchmarks.rasterize --json report.json      # the JSON report [--sizes 100k@800,1M@1600] [--no-4d]

Scene: means uniform in [-1, 1]^3, log-scales normal(-4, 0.3), random unit quaternions,
opacities sigmoid(normal(0, 1)), RGB colours uniform in [0, 1]; pinhole cameras 4 units from the
origin looking at it (:func:`orster4d.cameras.orbit_cameras`, elevation 0, azimuth 0 on the -y
side), 50 degree field of view, square images. The 4D case: T = 16 copies of 200k Gaussians
(each copy's means moved by a small time-dependent offset), one camera per copy on the orbit
(azimuth 360 t / T), 512 x 512.

Every case runs ours and gsplat in the same process on the same scene (gsplat skipped, with the
reason, where it is not importable) and checks images and gradients against gsplat in the same
run (:func:`compare_with_gsplat`). The report also holds the JIT build time, CUDA vs the float64
PyTorch reference on a small scene, median times (ms), their ratios (ours / gsplat; < 1 is
faster) and peak GPU memory (MiB above the inputs). Without CUDA the benches skip.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass

import pytest
import torch

from benchmarks.timing import cuda_median_ms, peak_extra_mb, python_version, report_parser, write_json
from orster4d.cameras import orbit_cameras

# (name, N, resolution)
SIZES = [("100k@800", 100_000, 800), ("1M@800", 1_000_000, 800), ("1M@1600", 1_000_000, 1600),
         ("3M@1600", 3_000_000, 1600)]
T4D, N4D, RES4D = 16, 200_000, 512
FOV_DEG = 50.0
DISTANCE = 4.0

# Gradient tolerance of the comparison with gsplat: relative L2 error per gradient tensor.
# Both compute the same float32 sums per Gaussian, but in a different order (warp shuffles
# and atomics over thousands of pixel contributions), and a pixel where one splat sits within
# float32 rounding of the 1/255 skip or the 1e-4 stop can flip; either changes a few
# gradients at the 1e-6..1e-4 relative level.  1e-3 leaves a margin of ~10x while any real
# convention mismatch (a factor, a sign, a missing term) shows at >= 1e-2.
GRAD_RTOL = 1e-3

# Image criterion of the comparison with gsplat (see image_agreement). Both libraries take every
# compositing decision (skip below alpha 1/255, stop at transmittance 1e-4, depth order) on float32
# values computed in a different order, so at a pixel where a splat sits within rounding of such a
# decision one library may composite a splat the other leaves out. Those pixels are found in
# float64 (orster4d.ops.rasterize.reference.near_decision_pixels, see decision_pixels) and left out
# of the error bounds; everywhere else the images agree to ~1e-7. A convention error (a flipped or
# transposed axis, a 0.5 px shift, a wrong low-pass) changes most covered pixels by far more.
IMAGE_ATOL = 1e-3  # max abs error (any channel) over the pixels off every decision
IMAGE_MEAN_ABS = 1e-5  # mean abs error over those pixels and channels (catches small biases)
# Pixels excused, as a share of all pixels: a decision pixel whose error exceeds IMAGE_ATOL is
# excused, and at most this share may be. (Decision pixels themselves are many in dense scenes:
# measured on an H200, 0.6% at 100k@800, 5.7% at 1M@800 and 1M@1600, 13% at 3M@1600, mostly
# depth ties, while nearly all of them agree with gsplat to 1e-5 anyway.) The bound keeps a mask
# that excuses much of the image from passing.
IMAGE_EXCUSED_FRACTION = 2e-2
# Depth ties whose swap changes a pixel by at most T_i a_i a_j <= this are not decision pixels.
DECISION_TIE_WEIGHT = IMAGE_ATOL / 10


def image_agreement(img: torch.Tensor, ref: torch.Tensor, decision: torch.Tensor,
                    max_excused_fraction: float = IMAGE_EXCUSED_FRACTION) -> dict:
    """Whether two renders ``[..., H, W, 3]`` of one scene differ only where a decision may flip.

    ``decision`` ``[..., H, W]`` bool marks the pixels near a compositing decision. Passes when the
    max abs error over the other pixels is below IMAGE_ATOL, their mean abs error at most
    IMAGE_MEAN_ABS, and at most ``max_excused_fraction`` of the pixels are *excused*: decision
    pixels whose error is IMAGE_ATOL or more. Returns those numbers (the decision pixels' count and
    max error too) and ``image_ok``.
    """
    if img.shape != ref.shape or img.shape[-1] != 3:
        raise ValueError(f"images must share a shape [..., H, W, 3], got {tuple(img.shape)} and {tuple(ref.shape)}")
    if decision.shape != img.shape[:-1] or decision.dtype != torch.bool:
        raise ValueError(f"decision must be a bool mask of shape {tuple(img.shape[:-1])}, got "
                         f"{decision.dtype} {tuple(decision.shape)}")
    err = (img.detach().double() - ref.detach().double()).abs().amax(-1)  # per pixel, max over channels
    mean_err = (img.detach().double() - ref.detach().double()).abs().mean(-1)
    off = ~decision.to(err.device)
    pixels, n_decision = err.numel(), int((~off).sum().item())
    n_excused = int(((~off) & (err >= IMAGE_ATOL)).sum().item())
    zero = err.new_zeros(())
    out = {"image_max_abs_err": err.max().item(),
           "image_max_abs_err_off_decision": (err[off].max() if off.any() else zero).item(),
           "image_mean_abs_err_off_decision": (mean_err[off].mean() if off.any() else zero).item(),
           "image_max_abs_err_on_decision": (err[~off].max() if n_decision else zero).item(),
           "image_pixels": pixels, "image_decision_pixels": n_decision,
           "image_decision_fraction": n_decision / max(pixels, 1), "image_excused_pixels": n_excused,
           "image_excused_fraction": n_excused / max(pixels, 1), "image_atol": IMAGE_ATOL,
           "image_mean_abs": IMAGE_MEAN_ABS, "image_max_excused_fraction": max_excused_fraction}
    out["image_ok"] = (out["image_max_abs_err_off_decision"] < IMAGE_ATOL
                       and out["image_mean_abs_err_off_decision"] <= IMAGE_MEAN_ABS
                       and out["image_excused_fraction"] <= max_excused_fraction)
    return out


@torch.no_grad()
def decision_pixels(s: "Scene") -> torch.Tensor:
    """``[..., C, H, W]`` bool: the pixels of the scene near a compositing decision, found in float64
    over the tile runs of ``intersect_tiles`` (3.33-sigma boxes), so that it scales to millions of
    splats (:func:`orster4d.ops.rasterize.reference.near_decision_pixels`)."""
    from orster4d.ops.rasterize import reference
    from orster4d.ops.rasterize._ops import TILE_SIZE, extension

    lead = s.means.shape[:-2]
    m, q, sc = (x.double().reshape(-1, *x.shape[-2:]) for x in (s.means, s.quats, s.scales))
    o = s.opacities.double().reshape(-1, s.opacities.shape[-1])
    vm = s.viewmats.double().reshape(-1, *s.viewmats.shape[-3:])
    K = s.Ks.double().reshape(-1, *s.Ks.shape[-3:])
    radii, means2d, depths, conics = reference.project(m, q, sc, vm, K, s.width, s.height)
    ops = extension("cuda" if m.is_cuda else "cpu")
    tw, th = math.ceil(s.width / TILE_SIZE), math.ceil(s.height / TILE_SIZE)
    offsets, ids = ops.intersect_tiles(means2d.float().contiguous(), radii.contiguous(), depths.float().contiguous(),
                                       TILE_SIZE, tw, th)
    flags = reference.near_decision_pixels(means2d, conics, o, depths, radii, s.width, s.height,
                                           tie_weight=DECISION_TIE_WEIGHT, tiles=(offsets, ids, TILE_SIZE))
    return flags.reshape(*lead, vm.shape[1], s.height, s.width)


def camera(res: int, azimuth_deg: float = 0.0, device="cuda"):
    """World-to-camera viewmat [4, 4] and K [3, 3] of a camera DISTANCE from the origin looking at it."""
    vm, K = orbit_cameras([azimuth_deg], 0.0, DISTANCE, FOV_DEG, res, res, device=device)
    return vm[0], K[0]


@dataclass
class Scene:
    means: torch.Tensor      # [..., N, 3]
    quats: torch.Tensor      # [..., N, 4]
    scales: torch.Tensor     # [..., N, 3]
    opacities: torch.Tensor  # [..., N]
    colors: torch.Tensor     # [..., N, 3]
    viewmats: torch.Tensor   # [..., C, 4, 4]
    Ks: torch.Tensor         # [..., C, 3, 3]
    width: int
    height: int

    def leaves(self):
        return [self.means, self.quats, self.scales, self.opacities, self.colors]

    def with_grad(self) -> "Scene":
        m, q, s, o, c = (x.detach().clone().requires_grad_(True) for x in self.leaves())
        return Scene(m, q, s, o, c, self.viewmats, self.Ks, self.width, self.height)

    def clamp_opacity(self, cap: float = 0.99) -> "Scene":
        """Same scene with opacities <= cap (where the 0.99 / 0.999 alpha caps cannot differ)."""
        return Scene(self.means, self.quats, self.scales, self.opacities.clamp(max=cap), self.colors,
                     self.viewmats, self.Ks, self.width, self.height)

    def timestep(self, t: int) -> "Scene":
        """The t-th element of a batched (4D) scene as an unbatched scene."""
        return Scene(*(x[t] for x in self.leaves()), self.viewmats[t], self.Ks[t], self.width, self.height)


def random_gaussians(n: int, *lead, generator=None, device="cuda"):
    g = generator
    means = torch.rand(*lead, n, 3, generator=g, device=device) * 2 - 1
    scales = torch.exp(torch.randn(*lead, n, 3, generator=g, device=device) * 0.3 - 4.0)
    quats = torch.randn(*lead, n, 4, generator=g, device=device)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    opacities = torch.sigmoid(torch.randn(*lead, n, generator=g, device=device))
    colors = torch.rand(*lead, n, 3, generator=g, device=device)
    return means, quats, scales, opacities, colors


def make_scene(n: int, res: int, seed: int = 0, device="cuda") -> Scene:
    g = torch.Generator(device=device).manual_seed(seed)
    means, quats, scales, opacities, colors = random_gaussians(n, generator=g, device=device)
    vm, K = camera(res, 0.0, device)
    return Scene(means, quats, scales, opacities, colors, vm[None], K[None], res, res)


def make_scene_4d(T: int = T4D, n: int = N4D, res: int = RES4D, seed: int = 0, device="cuda") -> Scene:
    """T deformed copies of one scene, each seen by its own orbital camera (azimuth 360 t / T)."""
    g = torch.Generator(device=device).manual_seed(seed)
    means, quats, scales, opacities, colors = random_gaussians(n, generator=g, device=device)
    t = torch.linspace(0, 1, T, device=device).view(T, 1, 1)
    offset = 0.05 * torch.sin(2 * math.pi * t + 3 * means.unsqueeze(0))
    az = 360.0 * torch.arange(T, dtype=torch.float64) / T
    vms, Ks = orbit_cameras(az, 0.0, DISTANCE, FOV_DEG, res, res, device=device)
    vms, Ks = vms[:, None], Ks[:, None]
    rep = lambda x: x.unsqueeze(0).expand(T, *x.shape).contiguous()  # noqa: E731
    return Scene(rep(means) + offset, rep(quats), rep(scales), rep(opacities), rep(colors), vms, Ks, res, res)


# ------------------------------------------------------------------ renderers (rgb [..., C, H, W, 3])
def render_ours(s: Scene) -> torch.Tensor:
    from orster4d.ops.rasterize import rasterize_gaussians

    return rasterize_gaussians(s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks,
                               s.width, s.height).rgb


def render_ours_ops(s: Scene) -> torch.Tensor:
    """Ours through the dispatcher ops only (no input validation, RGB colours): the kernels' cost
    without the Python entry point's checks."""
    from orster4d.ops.rasterize._ops import TILE_SIZE, extension

    ops = extension("cuda")
    lead = s.means.shape[:-2]
    m, q, sc = (x.reshape(-1, *x.shape[-2:]) for x in (s.means, s.quats, s.scales))
    o = s.opacities.reshape(-1, s.opacities.shape[-1])
    vm = s.viewmats.reshape(-1, *s.viewmats.shape[-3:])
    K = s.Ks.reshape(-1, *s.Ks.shape[-3:])
    B, C, N = m.shape[0], vm.shape[1], m.shape[1]
    radii, means2d, depths, conics = ops.project_fwd(m, q, sc, vm, K, s.width, s.height, 0.01, 1e10, 0.3)
    col = s.colors.reshape(B, 1, N, 3).expand(B, C, N, 3).contiguous()
    tw, th = math.ceil(s.width / TILE_SIZE), math.ceil(s.height / TILE_SIZE)
    offsets, ids = ops.intersect_tiles(means2d.detach(), radii, depths.detach(), TILE_SIZE, tw, th, conics.detach(),
                                       o.detach())
    rgb = ops.rasterize_fwd(means2d, conics, col, o, depths, None, s.width, s.height, TILE_SIZE, offsets, ids)[0]
    return rgb.reshape(*lead, C, s.height, s.width, 3)


def gsplat_available() -> tuple[bool, str]:
    try:
        import gsplat  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return False, f"gsplat is not importable: {exc!r}"
    if getattr(gsplat, "__version__", "") != "1.5.3":
        return True, f"gsplat {gsplat.__version__} (expected 1.5.3)"
    return True, "gsplat 1.5.3"


def render_gsplat(s: Scene) -> torch.Tensor:
    from gsplat import rasterization

    rgb, _, _ = rasterization(s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks,
                              s.width, s.height, packed=False, rasterize_mode="classic", render_mode="RGB")
    return rgb


def render_per_timestep(render, s: Scene) -> list:
    """The 4D scene rendered with one call per timestep (the Python loop the batched launch replaces)."""
    return [render(s.timestep(t)) for t in range(s.means.shape[0])]


# ------------------------------------------------------------------ timed closures
def step_fn(render, s: Scene, backward: bool, per_timestep: bool = False):
    """A closure running one forward (and backward) pass; inputs with grad are made once, outside."""
    sg = s.with_grad() if backward else s
    grads = {}

    def run():
        outs = render_per_timestep(render, sg) if per_timestep else [render(sg)]
        if backward:
            for o in outs:
                if "g" not in grads or grads["g"].shape != o.shape:
                    grads["g"] = torch.rand(o.shape, device=o.device, generator=torch.Generator(o.device).manual_seed(1))
                o.backward(grads["g"])
            for x in sg.leaves():
                x.grad = None
        return outs

    return run


# ------------------------------------------------------------------ correctness
def compare_with_gsplat(s: Scene) -> dict:
    """Images and gradients of ours vs gsplat on the scene (opacities capped at 0.99, see docs).

    Returns the image numbers of :func:`image_agreement`, relative L2 gradient error per input,
    and whether both pass (``image_ok``, ``grads_ok``). Also the max image error on the uncapped scene.
    """
    out = {}
    raw_a, raw_b = render_ours(s), render_gsplat(s)
    out["image_max_abs_err_uncapped"] = (raw_a - raw_b).abs().max().item()
    del raw_a, raw_b
    sc = s.clamp_opacity(0.99)
    a_s, b_s = sc.with_grad(), sc.with_grad()
    img_a, img_b = render_ours(a_s), render_gsplat(b_s)
    out.update(image_agreement(img_a, img_b, decision_pixels(sc)))
    gen = torch.Generator(img_a.device).manual_seed(2)
    v = torch.rand(img_a.shape, device=img_a.device, generator=gen)
    img_a.backward(v)
    img_b.backward(v)
    names = ["means", "quats", "scales", "opacities", "colors"]
    rel = {}
    for name, x, y in zip(names, a_s.leaves(), b_s.leaves()):
        rel[name] = ((x.grad - y.grad).norm() / y.grad.norm().clamp_min(1e-30)).item()
    out["grad_rel_l2_err"] = rel
    out["grads_ok"] = all(r <= GRAD_RTOL for r in rel.values())
    out["grad_rtol"] = GRAD_RTOL
    return out


# ------------------------------------------------------------------ pytest-benchmark
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the rasterizer benchmark needs a CUDA device")
_SCENES: dict = {}


def _scene(name):
    if name not in _SCENES:
        _SCENES.clear()
        torch.cuda.empty_cache()
        if name == "4d":
            _SCENES[name] = make_scene_4d()
        else:
            _, n, res = next(c for c in SIZES if c[0] == name)
            _SCENES[name] = make_scene(n, res)
    return _SCENES[name]


def _renderer(impl):
    if impl == "gsplat":
        ok, why = gsplat_available()
        if not ok:
            pytest.skip(why)
        return render_gsplat
    return render_ours


CASES = [c[0] for c in SIZES]


def _bench(benchmark, fn, impl, extra):
    fn()  # warm-up (JIT builds, allocator)
    torch.cuda.synchronize()
    benchmark.extra_info["peak_mem_mb"] = peak_extra_mb(fn)
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info.update(extra)

    def timed():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(timed, rounds=10, iterations=1, warmup_rounds=2)


@needs_cuda
@pytest.mark.parametrize("impl", ["ours", "gsplat"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES)
def test_rasterize(benchmark, case, mode, impl):
    benchmark.group = f"rasterize {case} {mode}"
    scene = _scene(case)
    render = _renderer(impl)
    _bench(benchmark, step_fn(render, scene, backward=mode == "fwd+bwd"), impl, {"case": case, "mode": mode})


@needs_cuda
@pytest.mark.parametrize("impl", ["ours", "gsplat"])
@pytest.mark.parametrize("launch", ["one launch", "T calls"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_rasterize_4d(benchmark, mode, launch, impl):
    benchmark.group = f"rasterize 4D T={T4D} x {N4D} @{RES4D} {mode}"
    scene = _scene("4d")
    render = _renderer(impl)
    fn = step_fn(render, scene, backward=mode == "fwd+bwd", per_timestep=launch == "T calls")
    _bench(benchmark, fn, impl, {"case": "4d", "mode": mode, "launch": launch})


@needs_cuda
@pytest.mark.parametrize("case", CASES + ["4d"])
def test_correctness_vs_gsplat(benchmark, case):
    """Not a timing: ours vs gsplat images and gradients on the benchmark scene (recorded in extra_info)."""
    ok, why = gsplat_available()
    if not ok:
        pytest.skip(why)
    res = compare_with_gsplat(_scene(case))
    benchmark.extra_info.update(res)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert res["image_ok"], (f"images differ beyond float32 decision flips: max "
                             f"{res['image_max_abs_err_off_decision']:.3g} off decision pixels (bound {IMAGE_ATOL}), "
                             f"mean {res['image_mean_abs_err_off_decision']:.3g} (bound {IMAGE_MEAN_ABS}), "
                             f"{res['image_excused_pixels']} decision pixels beyond it of {res['image_pixels']} "
                             f"(share {res['image_excused_fraction']:.3g}, bound {IMAGE_EXCUSED_FRACTION}; "
                             f"{res['image_decision_pixels']} decision pixels in all)")
    assert res["grads_ok"], f"gradient relative L2 errors {res['grad_rel_l2_err']} > {GRAD_RTOL}"


# ------------------------------------------------------------------ JSON report
def _versions():
    v = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": python_version()}
    for name in ("triton", "gsplat"):
        try:
            v[name] = __import__(name).__version__
        except Exception:
            v[name] = None
    return v


def reference_check(seed: int = 0) -> dict:
    """CUDA vs the float64 PyTorch reference on a small scene (images and every gradient)."""
    from orster4d.ops.rasterize import rasterize_gaussians

    g = torch.Generator(device="cuda").manual_seed(seed)
    B, C, N, res = 2, 2, 300, 64
    m, q, s, o, c = random_gaussians(N, B, generator=g)
    s = s * 8  # larger splats on the small image
    cams = [camera(res, az) for az in (0.0, 40.0)]
    vm = torch.stack([x[0] for x in cams])[None].expand(B, C, 4, 4).contiguous()
    K = torch.stack([x[1] for x in cams])[None].expand(B, C, 3, 3).contiguous()
    bg = torch.rand(B, C, 3, device="cuda", generator=g)
    inputs = [m, q, s, o, c, bg]
    outs = {}
    for name, dt, backend in (("cuda", torch.float32, None), ("ref", torch.float64, "reference")):
        xs = [x.detach().to(dt).requires_grad_(True) for x in inputs]
        r = rasterize_gaussians(xs[0], xs[1], xs[2], xs[3], xs[4], vm.to(dt), K.to(dt), res, res, backgrounds=xs[5],
                                backend=backend)
        w = torch.rand(r.rgb.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(5)).to(dt)
        wd = torch.rand(r.alpha.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(6)).to(dt)
        ((r.rgb * w).sum() + (r.alpha * wd).sum() + (r.depth * r.alpha * wd).sum() * 0.1).backward()
        outs[name] = (r.rgb.detach().double(), r.alpha.detach().double(), [x.grad.double() for x in xs])
    a, b = outs["cuda"], outs["ref"]
    return {
        "image_max_abs_err": (a[0] - b[0]).abs().max().item(),
        "alpha_max_abs_err": (a[1] - b[1]).abs().max().item(),
        "grad_rel_l2_err": {n: ((x - y).norm() / y.norm().clamp_min(1e-30)).item()
                            for n, x, y in zip(["means", "quats", "scales", "opacities", "colors", "backgrounds"],
                                               a[2], b[2])},
    }


def time_case(scene, per_timestep=False, with_gsplat=True, iters=10) -> dict:
    out = {}
    impls = [("ours", render_ours), ("ours_ops", render_ours_ops)]
    impls += [("gsplat", render_gsplat)] if with_gsplat else []
    for impl, render in impls:
        for mode in ("fwd", "fwd+bwd"):
            fn = step_fn(render, scene, backward=mode == "fwd+bwd", per_timestep=per_timestep)
            out[f"{impl}_{mode}_ms"] = cuda_median_ms(fn, warmup=2, iters=iters)
            out[f"{impl}_{mode}_peak_mem_mb"] = peak_extra_mb(fn)
    if with_gsplat:
        for mode in ("fwd", "fwd+bwd"):
            out[f"ratio_{mode}"] = out[f"ours_{mode}_ms"] / out[f"gsplat_{mode}_ms"]
            out[f"mem_ratio_{mode}"] = out[f"ours_{mode}_peak_mem_mb"] / max(out[f"gsplat_{mode}_peak_mem_mb"], 1e-9)
    return out


def main(argv=None) -> int:
    p = report_parser("GPU report of the CUDA rasterizer: build time, correctness, speed and memory vs gsplat 1.5.3")
    p.add_argument("--sizes", default=",".join(CASES), help=f"comma list of {CASES}")
    p.add_argument("--no-4d", action="store_true")
    p.add_argument("--no-gsplat", action="store_true")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args(argv)
    wanted = [s for s in args.sizes.split(",") if s]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown:
        p.error(f"--sizes: unknown sizes {unknown}; known: {CASES}")
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to report", file=sys.stderr)
        return 1
    report = {"gpu": torch.cuda.get_device_name(), "versions": _versions(), "cases": {}, "errors": []}

    def save():
        write_json(args.json, report)

    from orster4d.build import load_extension

    t0 = time.time()
    load_extension("rasterize", "cuda")
    report["jit_build_s"] = time.time() - t0
    print(f"built orster4d_rasterize_cuda in {report['jit_build_s']:.1f} s", flush=True)
    if os.environ.get("ORSTER4D_COLD_BUILD_S"):  # measured by a driver that built before running tests
        report["jit_build_cold_s"] = float(os.environ["ORSTER4D_COLD_BUILD_S"])
    ok, why = gsplat_available()
    with_gsplat = ok and not args.no_gsplat
    report["gsplat"] = why if ok else f"skipped: {why}"
    if with_gsplat:
        t0 = time.time()
        render_gsplat(make_scene(1000, 64))
        torch.cuda.synchronize()
        report["gsplat_first_call_s"] = time.time() - t0
        print(f"gsplat first call (JIT) {report['gsplat_first_call_s']:.1f} s", flush=True)
    save()
    try:
        report["reference_check"] = reference_check()
        print("reference check", report["reference_check"], flush=True)
    except Exception:
        report["errors"].append(traceback.format_exc())
        print(report["errors"][-1], flush=True)
    save()
    for name, n, res in SIZES:
        if name not in wanted:
            continue
        try:
            torch.cuda.empty_cache()
            scene = make_scene(n, res)
            case = {"N": n, "res": res}
            if with_gsplat:
                case["correctness"] = compare_with_gsplat(scene)
            case.update(time_case(scene, with_gsplat=with_gsplat, iters=args.iters))
            report["cases"][name] = case
            print(name, json.dumps(case), flush=True)
        except Exception:
            report["errors"].append(f"{name}: " + traceback.format_exc())
            print(report["errors"][-1], flush=True)
        save()
    if not args.no_4d:
        try:
            torch.cuda.empty_cache()
            scene = make_scene_4d()
            case = {"T": T4D, "N": N4D, "res": RES4D}
            if with_gsplat:
                case["correctness"] = compare_with_gsplat(scene)
            one = time_case(scene, with_gsplat=with_gsplat, iters=args.iters)
            sep = time_case(scene, per_timestep=True, with_gsplat=with_gsplat, iters=max(3, args.iters // 2))
            case["one_launch"], case["T_calls"] = one, sep
            for mode in ("fwd", "fwd+bwd"):
                case[f"ours_speedup_one_launch_vs_T_calls_{mode}"] = sep[f"ours_{mode}_ms"] / one[f"ours_{mode}_ms"]
            report["cases"]["4d"] = case
            print("4d", json.dumps(case), flush=True)
        except Exception:
            report["errors"].append("4d: " + traceback.format_exc())
            print(report["errors"][-1], flush=True)
        save()
    print(f"wrote {args.json}")
    return 0 if not report["errors"] else 2


if __name__ == "__main__":
    sys.exit(main())
