"""C++ CPU rasterizer against the dense PyTorch reference (forward, every gradient), gradcheck of
the reference, batching, edge cases and non-contiguous inputs (the densification statistics built on
``means2d`` are tested in ``tests/recon/test_strategy.py``).

Every test draws fresh random scenes (seeded by the ``rng_seed`` fixture, printed on failure).
Outputs of the C++ ops are poisoned: with deterministic algorithms on, torch fills every
uninitialised tensor (``at::empty``) with NaN, so an element a kernel forgets to write shows.
"""
import math

import pytest
import torch

from orster4d.ops.rasterize import RenderOutput, rasterize_gaussians, reference
from orster4d.ops.rasterize._ops import TILE_SIZE, extension
from orster4d.data.scenes import random_scene

FIELDS = ("rgb", "depth", "alpha", "radii", "means2d")


@pytest.fixture
def poison():
    """Uninitialised tensors (at::empty in the kernels included) are filled with NaN / int max."""
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(prev)


def make_scene(seed, n=120, cams=2, w=40, h=30, batch=(2,), sh=None, log_scale=-2.3):
    g = torch.Generator().manual_seed(seed)
    return random_scene(n, cams, w, h, batch=batch, sh_degree=sh, log_scale_mean=log_scale, generator=g)


def near_decisions(s, **project_kw):
    """``[*batch, C, H, W]`` pixels of scene ``s`` near a compositing decision, found in float64.

    There (a splat's alpha within rounding of 1/255, say) float32 kernels and a float64 reference
    may rightly differ by a whole splat, so comparisons leave these few pixels out.
    ``project_kw`` (near, far, eps2d) are the projection settings the test renders with.
    """
    m, q, sc, o, _, vm, k = (x.double().reshape(-1, *x.shape[-d:])
                             for x, d in zip(inputs(s), (2, 2, 2, 1, 2, 3, 3)))
    radii, means2d, depths, conics = reference.project(m, q, sc, vm, k, s.width, s.height, **project_kw)
    flags = reference.near_decision_pixels(means2d, conics, o, depths, radii, s.width, s.height)
    assert flags.float().mean() < 0.05, "a scene with many pixels on decisions tests little"
    return flags.reshape(*s.viewmats.shape[:-2], s.height, s.width)


def inputs(s, dtype=torch.float32):
    return [x.to(dtype) for x in (s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks)]


def render(s, backend=None, dtype=torch.float32, backgrounds=None, **kw):
    bg = None if backgrounds is None else backgrounds.to(dtype)
    return rasterize_gaussians(*inputs(s, dtype), s.width, s.height, sh_degree=s.sh_degree, backgrounds=bg,
                               backend=backend, **kw)


def assert_forward_close(out, ref, skip):
    """Forward within 1e-5 relative (depth: where the pixel is not nearly transparent), at every pixel
    but those in ``skip`` ``[..., H, W]`` (see :func:`near_decisions`)."""
    assert torch.equal(out.radii, ref.radii)
    torch.testing.assert_close(out.means2d.double(), ref.means2d.double(), rtol=1e-5, atol=1e-4)
    keep = ~skip
    for name in ("rgb", "alpha"):
        torch.testing.assert_close(getattr(out, name).double()[keep], getattr(ref, name).double()[keep],
                                   rtol=1e-5, atol=1e-5)
    acc, acc_ref = (out.depth * out.alpha).double()[keep], (ref.depth * ref.alpha).double()[keep]
    torch.testing.assert_close(acc, acc_ref, rtol=1e-5, atol=1e-5 * acc_ref.abs().max().item())
    solid = (ref.alpha > 0.05) & keep.unsqueeze(-1)
    torch.testing.assert_close(out.depth.double()[solid], ref.depth.double()[solid], rtol=1e-5, atol=1e-5)


def test_poison_fixture_fills_nan(poison):
    assert torch.isnan(torch.empty(4)).all()


@pytest.mark.parametrize("sh", [None, 0, 1, 2, 3])
def test_forward_matches_reference(rng_seed, poison, sh):
    s = make_scene(rng_seed, sh=sh)
    bg = torch.rand(2, 2, 3)
    out = render(s, backgrounds=bg)
    ref = render(s, backend="reference", dtype=torch.float64, backgrounds=bg)
    assert (out.radii > 0).float().mean() > 0.5 and out.alpha.max() > 0.9  # a scene that shows something
    for name in FIELDS:
        assert torch.isfinite(getattr(out, name).double()).all(), name
    assert_forward_close(out, ref, near_decisions(s))


def test_forward_without_background_and_float32_reference(rng_seed, poison):
    s = make_scene(rng_seed, batch=())
    out = render(s)
    assert out.rgb.shape == (2, 30, 40, 3) and out.radii.dtype == torch.int32
    assert_forward_close(out, render(s, backend="reference"), near_decisions(s))


def test_batched_equals_separate(rng_seed, poison):
    """T copies with their own cameras in one call == one call per copy."""
    s = make_scene(rng_seed, n=80, batch=(2, 3), sh=1)
    bg = torch.rand(2, 3, 2, 3)
    out = render(s, backgrounds=bg)
    assert out.rgb.shape == (2, 3, 2, 30, 40, 3) and out.means2d.shape == (2, 3, 2, 80, 2)
    args = inputs(s)
    for i in range(2):
        for j in range(3):
            one = rasterize_gaussians(*[a[i, j] for a in args], s.width, s.height, sh_degree=1, backgrounds=bg[i, j])
            for name in FIELDS:
                torch.testing.assert_close(getattr(out, name)[i, j], getattr(one, name), rtol=1e-6, atol=1e-6)


def test_broadcast_leading_dims(rng_seed):
    """Inputs without the leading dims (e.g. colours shared over time) are broadcast, gradients summed."""
    s = make_scene(rng_seed, n=60, batch=(3,))
    colors = s.colors[0].clone().requires_grad_()
    opac = s.opacities[0].clone().requires_grad_()
    out = rasterize_gaussians(s.means, s.quats, s.scales, opac, colors, s.viewmats, s.Ks, s.width, s.height)
    colors_e = colors.detach().expand(3, -1, -1).clone().requires_grad_()
    opac_e = opac.detach().expand(3, -1).clone().requires_grad_()
    full = rasterize_gaussians(s.means, s.quats, s.scales, opac_e, colors_e, s.viewmats, s.Ks, s.width, s.height)
    torch.testing.assert_close(out.rgb, full.rgb)
    w = torch.randn_like(out.rgb)
    (out.rgb * w).sum().backward()
    (full.rgb * w).sum().backward()
    torch.testing.assert_close(colors.grad, colors_e.grad.sum(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opac.grad, opac_e.grad.sum(0), rtol=1e-5, atol=1e-6)


def _grads(s, backend, dtype, bg, weights, sh):
    names = ("means", "quats", "scales", "opacities", "colors")
    leaves = [getattr(s, n).to(dtype).clone().requires_grad_() for n in names]
    bg = bg.to(dtype).clone().requires_grad_()
    out = rasterize_gaussians(*leaves, s.viewmats.to(dtype), s.Ks.to(dtype), s.width, s.height, sh_degree=sh,
                              backgrounds=bg, backend=backend)
    out.means2d.retain_grad()
    loss = sum((getattr(out, k).double() * w).sum() for k, w in weights.items())
    loss.backward()
    grads = {n: x.grad for n, x in zip(names, leaves)}
    grads["backgrounds"] = bg.grad
    grads["means2d"] = out.means2d.grad
    return grads


@pytest.mark.parametrize("sh", [None, 2, 3])
def test_gradients_match_reference_autograd_float64(rng_seed, poison, sh):
    s = make_scene(rng_seed, n=100, sh=sh)
    bg = torch.rand(2, 2, 3)
    weights = {k: torch.randn(2, 2, 30, 40, c, dtype=torch.float64) for k, c in (("rgb", 3), ("alpha", 1))}
    weights["depth"] = 0.1 * torch.randn(2, 2, 30, 40, 1, dtype=torch.float64)
    keep = ~near_decisions(s).unsqueeze(-1)  # no loss where float32 may rightly flip a splat
    weights = {k: w * keep for k, w in weights.items()}
    got = _grads(s, None, torch.float32, bg, weights, sh)
    want = _grads(s, "reference", torch.float64, bg, weights, sh)
    for name, g in want.items():
        assert got[name] is not None and torch.isfinite(got[name]).all(), name
        scale = g.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(got[name].double(), g, rtol=1e-3, atol=5e-5 * scale, msg=lambda m: f"{name}: {m}")


def _tiny_scene(seed, sh=None):
    """3 wide, overlapping Gaussians on an 8x8 image: alpha >= 1/255 everywhere, never near the cap or the
    transmittance stop, distinct depths, so the reference is smooth around the point."""
    g = torch.Generator().manual_seed(seed)
    n = 3
    means = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.4 - 0.2
    means[:, 2] = torch.tensor([-0.3, 0.0, 0.3], dtype=torch.float64)[torch.randperm(n, generator=g)]
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = 1.5 + 0.5 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    opac = 0.3 + 0.3 * torch.rand(n, generator=g, dtype=torch.float64)
    if sh is None:
        colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    else:
        colors = 0.2 * torch.randn(n, (sh + 1) ** 2, 3, generator=g, dtype=torch.float64)
        colors[:, 0] += 1.0  # keep the colour away from the clamp at 0
    view = torch.eye(4, dtype=torch.float64)
    view[2, 3] = 4.0
    K = torch.tensor([[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1]], dtype=torch.float64)
    bg = torch.rand(1, 3, generator=g, dtype=torch.float64)
    return means, quats, scales, opac, colors, view[None], K[None], bg


@pytest.mark.parametrize("sh", [None, 2])
def test_gradcheck_reference(rng_seed, sh):
    means, quats, scales, opac, colors, view, K, bg = _tiny_scene(rng_seed, sh)

    def f(m, q, s, o, c, b):
        out = rasterize_gaussians(m, q, s, o, c, view, K, 8, 8, sh_degree=sh, backgrounds=b, backend="reference")
        return out.rgb, out.depth, out.alpha

    rgb, _, alpha = f(means, quats, scales, opac, colors, bg)
    assert alpha.min() > 0.1 and alpha.max() < 0.95  # every pixel sees the splats, none saturates
    leaves = [x.clone().requires_grad_() for x in (means, quats, scales, opac, colors, bg)]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_cpu_gradients_on_tiny_scene(rng_seed):
    """The gradcheck scene through the C++ backend (float32) against reference autograd (float64)."""
    means, quats, scales, opac, colors, view, K, bg = _tiny_scene(rng_seed, sh=1)
    w = torch.randn(1, 8, 8, 3, dtype=torch.float64)
    grads = []
    for backend, dt in ((None, torch.float32), ("reference", torch.float64)):
        leaves = [x.to(dt).clone().requires_grad_() for x in (means, quats, scales, opac, colors, bg)]
        out = rasterize_gaussians(*leaves[:5], view.to(dt), K.to(dt), 8, 8, sh_degree=1, backgrounds=leaves[5],
                                  backend=backend)
        ((out.rgb.double() * w).sum() + out.depth.double().sum() + out.alpha.double().sum()).backward()
        grads.append([x.grad.double() for x in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


def _edge_scene(kind, seed):
    s = make_scene(seed, n=40, cams=1, w=24, h=20, batch=())
    means, opac = s.means.clone(), s.opacities.clone()
    if kind == "behind":
        # mirror every mean through the camera centre: all behind the camera
        R, t = s.viewmats[0, :3, :3], s.viewmats[0, :3, 3]
        centre = -R.T @ t
        means = 2 * centre - means
    elif kind == "outside":
        R, t = s.viewmats[0, :3, :3], s.viewmats[0, :3, 3]
        means = means + 50.0 * R[0]  # far to the right of the image
    elif kind == "zero_opacity":
        opac = torch.zeros_like(opac)
    elif kind == "empty":
        return [x[:0] for x in (means, s.quats, s.scales, opac, s.colors)], s
    return [means, s.quats, s.scales, opac, s.colors], s


@pytest.mark.parametrize("backend", [None, "reference"])
@pytest.mark.parametrize("kind", ["behind", "outside", "zero_opacity", "empty"])
def test_edge_cases_render_background_without_nans(rng_seed, poison, kind, backend):
    gauss, s = _edge_scene(kind, rng_seed)
    leaves = [x.clone().requires_grad_() for x in gauss]
    bg = torch.rand(1, 3, requires_grad=True)
    out = rasterize_gaussians(*leaves, s.viewmats, s.Ks, s.width, s.height, backgrounds=bg, backend=backend)
    assert torch.equal(out.rgb, bg.detach().reshape(1, 1, 1, 3).expand(1, 20, 24, 3))
    assert torch.equal(out.alpha, torch.zeros(1, 20, 24, 1))
    assert torch.equal(out.depth, torch.zeros(1, 20, 24, 1))
    if kind != "zero_opacity":
        assert (out.radii == 0).all()
    out.means2d.retain_grad()
    (out.rgb.sum() + out.depth.sum() + out.alpha.sum()).backward()
    for x in leaves + [out.means2d]:
        assert torch.isfinite(x.grad).all() and (x.grad == 0).all()
    torch.testing.assert_close(bg.grad, torch.full((1, 3), 20.0 * 24.0))


def test_partially_visible_scene_has_finite_gradients(rng_seed, poison):
    """Half the Gaussians behind the camera, some with zero opacity: finite gradients, zero for culled ones."""
    s = make_scene(rng_seed, n=60, cams=1, batch=())
    R, t = s.viewmats[0, :3, :3], s.viewmats[0, :3, 3]
    means = s.means.clone()
    means[:30] = 2 * (-R.T @ t) - means[:30]
    opac = s.opacities.clone()
    opac[30:35] = 0
    leaves = [x.clone().requires_grad_() for x in (means, s.quats, s.scales, opac, s.colors)]
    out = rasterize_gaussians(*leaves, s.viewmats, s.Ks, s.width, s.height)
    assert (out.radii[0, :30] == 0).all() and (out.radii[0, 30:] > 0).any()
    (out.rgb.sum() + out.depth.sum()).backward()
    for x in leaves:
        assert torch.isfinite(x.grad).all()
        assert (x.grad[:30] == 0).all()


def test_non_contiguous_inputs(rng_seed):
    s = make_scene(rng_seed, n=50, batch=(2,), sh=1)
    args = inputs(s)
    # the same values behind strided storage
    strided = [torch.stack([x, torch.full_like(x, float('nan'))], -1)[..., 0] for x in args]
    assert not any(x.is_contiguous() for x in strided)
    a = rasterize_gaussians(*args, s.width, s.height, sh_degree=1)
    b = rasterize_gaussians(*strided, s.width, s.height, sh_degree=1)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_render_output_type(rng_seed):
    out = render(make_scene(rng_seed, n=10, batch=()))
    assert isinstance(out, RenderOutput)
    assert out.means2d.grad_fn is None  # no inputs require grad


def test_intersect_tiles_sorted_and_complete(rng_seed, poison):
    """Each (camera, tile) run holds exactly the Gaussians whose box touches the tile, front to back."""
    ext = extension("cpu")
    s = make_scene(rng_seed, n=60, cams=2, w=50, h=37, batch=(2,))
    radii, means2d, depths, conics = ext.project_fwd(s.means, s.quats, s.scales, s.viewmats, s.Ks, 50, 37, 0.01,
                                                     1e10, 0.3)
    tw, th = math.ceil(50 / TILE_SIZE), math.ceil(37 / TILE_SIZE)
    offsets, ids = ext.intersect_tiles(means2d, radii, depths, TILE_SIZE, tw, th)
    assert offsets.shape == (4, th, tw) and ids.dtype == torch.int32
    flat_off = offsets.reshape(-1).tolist() + [ids.numel()]
    flat_m, flat_r, flat_d = means2d.reshape(-1, 2), radii.reshape(-1), depths.reshape(-1)
    n_cn = 60
    for bin_ in range(4 * th * tw):
        cam, tile = divmod(bin_, th * tw)
        ty, tx = divmod(tile, tw)
        run = ids[flat_off[bin_]:flat_off[bin_ + 1]].long()
        expect = []
        for gid in range(cam * n_cn, (cam + 1) * n_cn):
            r = flat_r[gid].item()
            if r <= 0:
                continue
            mx, my = (flat_m[gid] / TILE_SIZE).tolist()
            x0, x1 = max(0, math.floor(mx - r / TILE_SIZE)), min(tw, math.ceil(mx + r / TILE_SIZE))
            y0, y1 = max(0, math.floor(my - r / TILE_SIZE)), min(th, math.ceil(my + r / TILE_SIZE))
            if x0 <= tx < x1 and y0 <= ty < y1:
                expect.append(gid)
        assert sorted(run.tolist()) == expect
        assert (flat_d[run][1:] >= flat_d[run][:-1]).all()


def test_near_far_culling_matches_reference(rng_seed, poison):
    """Planes through the scene cull part of it; the kernels and the reference agree on which part
    (with a non-default low-pass filter too)."""
    s = make_scene(rng_seed, n=100, batch=())
    planes = dict(near=3.5, far=4.5, eps2d=0.8)
    out = render(s, **planes)
    ref = render(s, backend="reference", dtype=torch.float64, **planes)
    frac = (ref.radii > 0).float().mean().item()
    assert 0.1 < frac < 0.9
    assert_forward_close(out, ref, near_decisions(s, **planes))


def test_intersect_tiles_tight_boxes_drop_only_invisible_splats(rng_seed, poison):
    """With conics and opacities the boxes shrink, but a dropped (Gaussian, tile) pair never has a pixel
    with alpha >= 1/255; runs stay sorted front to back."""
    ext = extension("cpu")
    s = make_scene(rng_seed, n=60, cams=1, w=50, h=37, batch=(), log_scale=-2.0)
    s.opacities = s.opacities * 0.2  # low opacities: the opacity-aware box is smaller than the circle
    radii, means2d, depths, conics = ext.project_fwd(s.means[None].contiguous(), s.quats[None].contiguous(),
                                                     s.scales[None].contiguous(), s.viewmats[None].contiguous(),
                                                     s.Ks[None].contiguous(), 50, 37, 0.01, 1e10, 0.3)
    opac = s.opacities[None].contiguous()
    tw, th = math.ceil(50 / TILE_SIZE), math.ceil(37 / TILE_SIZE)
    off_c, ids_c = ext.intersect_tiles(means2d, radii, depths, TILE_SIZE, tw, th)
    off_t, ids_t = ext.intersect_tiles(means2d, radii, depths, TILE_SIZE, tw, th, conics, opac)
    assert ids_t.numel() < ids_c.numel()
    runs = lambda off, ids: [ids[a:b].tolist() for a, b in zip(off.reshape(-1).tolist(), off.reshape(-1).tolist()[1:] + [ids.numel()])]  # noqa: E731
    m, con, o = means2d[0, 0].double(), conics[0, 0].double(), s.opacities.double()
    for tile, (circ, tight) in enumerate(zip(runs(off_c, ids_c), runs(off_t, ids_t))):
        assert set(tight) <= set(circ)
        assert (depths.reshape(-1)[tight][1:] >= depths.reshape(-1)[tight][:-1]).all()
        dropped = torch.tensor(sorted(set(circ) - set(tight)), dtype=torch.long)
        if dropped.numel() == 0:
            continue
        ty, tx = divmod(tile, tw)
        ys, xs = torch.meshgrid(torch.arange(ty * 16, min(ty * 16 + 16, 37), dtype=torch.float64) + 0.5,
                                torch.arange(tx * 16, min(tx * 16 + 16, 50), dtype=torch.float64) + 0.5, indexing="ij")
        dx = m[dropped, 0, None] - xs.reshape(1, -1)
        dy = m[dropped, 1, None] - ys.reshape(1, -1)
        sigma = 0.5 * (con[dropped, 0, None] * dx**2 + con[dropped, 2, None] * dy**2) + con[dropped, 1, None] * dx * dy
        alpha = o[dropped, None] * torch.exp(-sigma)
        assert (alpha < reference.ALPHA_MIN).all()
