"""Shared scenes, runners and checks for the rasterizer benchmarks and the GPU report.

Used by ``benchmarks/bench_rasterize.py`` (pytest-benchmark) and
``scripts/gpu_rasterize_report.py`` (JSON report), so both time and check exactly the same thing.

Scene (issue 2): means uniform in [-1, 1]^3, log-scales normal(-4, 0.3), random unit
quaternions, opacities sigmoid(normal(0, 1)), RGB colours uniform in [0, 1]; pinhole cameras
4 units from the origin looking at it, 50 degree field of view, square images.
The 4D case: T = 16 copies of 200k Gaussians (each copy's means moved by a small
time-dependent offset), one camera per copy on an orbit, 512 x 512.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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
IMAGE_ATOL = 1e-3


def camera(res: int, azimuth_deg: float = 0.0, device="cuda"):
    """World-to-camera viewmat [4, 4] and K [3, 3] of a camera DISTANCE from the origin looking at it."""
    a = math.radians(azimuth_deg)
    # camera centre on a circle in the x-z plane; +z_cam points at the origin, +y_cam is world -y... (OpenCV)
    centre = torch.tensor([DISTANCE * math.sin(a), 0.0, -DISTANCE * math.cos(a)], dtype=torch.float64)
    fwd = -centre / centre.norm()
    down = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    right = torch.linalg.cross(down, fwd)
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # rows: camera axes in world coordinates
    vm = torch.eye(4, dtype=torch.float64)
    vm[:3, :3] = R
    vm[:3, 3] = -R @ centre
    f = 0.5 * res / math.tan(math.radians(FOV_DEG) / 2)
    K = torch.tensor([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1]], dtype=torch.float64)
    return vm.float().to(device), K.float().to(device)


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
    cams = [camera(res, 360.0 * i / T, device) for i in range(T)]
    vms = torch.stack([c[0] for c in cams])[:, None]
    Ks = torch.stack([c[1] for c in cams])[:, None]
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
    from orster4d.ops.rasterize._autograd import TILE_SIZE, extension

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

    Returns max abs image error, relative L2 gradient error per input, and whether both are
    within IMAGE_ATOL / GRAD_RTOL.  Also the max image error on the uncapped scene.
    """
    out = {}
    raw_a, raw_b = render_ours(s), render_gsplat(s)
    out["image_max_abs_err_uncapped"] = (raw_a - raw_b).abs().max().item()
    del raw_a, raw_b
    sc = s.clamp_opacity(0.99)
    a_s, b_s = sc.with_grad(), sc.with_grad()
    img_a, img_b = render_ours(a_s), render_gsplat(b_s)
    err = (img_a - img_b).detach().abs()
    out["image_max_abs_err"] = err.max().item()
    out["image_pixels_over_atol"] = int((err.amax(-1) > IMAGE_ATOL).sum().item())
    out["image_pixels"] = int(err[..., 0].numel())
    out["image_mean_abs_err"] = err.mean().item()
    del err
    gen = torch.Generator(img_a.device).manual_seed(2)
    v = torch.rand(img_a.shape, device=img_a.device, generator=gen)
    img_a.backward(v)
    img_b.backward(v)
    names = ["means", "quats", "scales", "opacities", "colors"]
    rel = {}
    for name, x, y in zip(names, a_s.leaves(), b_s.leaves()):
        rel[name] = ((x.grad - y.grad).norm() / y.grad.norm().clamp_min(1e-30)).item()
    out["grad_rel_l2_err"] = rel
    out["image_ok"] = out["image_max_abs_err"] <= IMAGE_ATOL
    out["grads_ok"] = all(r <= GRAD_RTOL for r in rel.values())
    out["image_atol"] = IMAGE_ATOL
    out["grad_rtol"] = GRAD_RTOL
    return out
