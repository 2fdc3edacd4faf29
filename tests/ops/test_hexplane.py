"""Fused HexPlane sampling (csrc/hexplane) against the grid_sample composition."""
import random

import pytest
import torch

from orster4d.ops.hexplane._ops import extension
from orster4d.ops.hexplane import (
    PLANE_AXES,
    HexPlaneLayout,
    hexplane_sample,
    hexplane_sample_packed,
    hexplane_sample_reference,
)
from orster4d.recon.hexplane_field import HexPlaneField


def random_layout(rng: random.Random, channels=None, levels=None) -> HexPlaneLayout:
    c = channels or rng.choice([1, 3, 4, 6, 8])
    l = levels or rng.choice([1, 2])
    res = tuple(tuple(rng.randint(2, 9) for _ in range(4)) for _ in range(l))
    return HexPlaneLayout(channels=c, resolutions=res)


def random_planes(layout: HexPlaneLayout, dtype=torch.float64, device="cpu") -> list[torch.Tensor]:
    # values around 1 so that the six-way products stay O(1)
    return [
        (0.5 + torch.rand(layout.plane_shape(l, p), dtype=dtype, device=device)).requires_grad_()
        for l in range(layout.levels)
        for p in range(6)
    ]


def random_points(n, dtype=torch.float64, device="cpu", span=1.3) -> torch.Tensor:
    return ((torch.rand(n, 4, dtype=dtype, device=device) * 2 - 1) * span).requires_grad_()


def off_texel_edges(points: torch.Tensor, layout: HexPlaneLayout, margin: float = 1e-4) -> torch.Tensor:
    """``points`` with those near a texel edge (within ``margin`` texels, at any level) redrawn.

    d(output)/d(point) jumps across a texel edge, so a float32 copy of a point that rounds into the
    neighbouring cell has a different gradient from the float64 reference; these points are redrawn.
    """
    p = points.detach().clone()
    for _ in range(100):
        bad = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
        for res in layout.resolutions:
            for axis, r in enumerate(res):
                if r >= 2:
                    u = (p[:, axis].double() + 1) / 2 * (r - 1)
                    f = u - u.floor()
                    bad |= (f < margin) | (f > 1 - margin)
        if not bad.any():
            break
        p[bad] = random_points(int(bad.sum()), p.dtype, p.device).detach()
    return p.requires_grad_()


def grads(out, inputs, grad_out):
    return torch.autograd.grad(out, inputs, grad_out)


@pytest.mark.parametrize("trial", range(3))
def test_forward_backward_match_reference_float64(rng_seed, trial):
    rng = random.Random(rng_seed + trial)
    layout = random_layout(rng)
    planes = random_planes(layout)
    points = random_points(257)
    ours = hexplane_sample(points, planes, backend="fused")
    ref = hexplane_sample_reference(points, planes)
    assert ours.shape == (257, layout.out_dim)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(grads(ours, [points, *planes], g), grads(ref, [points, *planes], g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("threads,points", [(1, 300), (2, 300), (2, 3)])
def test_cpu_backward_paths_match_reference(rng_seed, threads, points):
    """The CPU backward's three ways of adding plane gradients: plain adds on one thread, private
    per-thread buffers summed in a fixed order (two threads, many points: bitwise repeatable), and
    shared atomics (two threads, few points against large planes)."""
    layout = HexPlaneLayout(channels=4, resolutions=((9, 9, 9, 5), (17, 17, 17, 5)))
    planes = random_planes(layout)
    pts = random_points(points)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.randn(points, layout.out_dim, dtype=torch.float64)
        ours = grads(hexplane_sample(pts, planes, backend="fused"), [pts, *planes], g)
        again = grads(hexplane_sample(pts, planes, backend="fused"), [pts, *planes], g)
    finally:
        torch.set_num_threads(before)
    ref = grads(hexplane_sample_reference(pts, planes), [pts, *planes], g)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    if points > 3:
        assert all(torch.equal(a, b) for a, b in zip(ours, again))


def test_float32_matches_float64_reference(rng_seed):
    layout = HexPlaneLayout(channels=8, resolutions=((7, 7, 7, 5), (13, 13, 13, 5)))
    planes64 = random_planes(layout)
    points64 = off_texel_edges(random_points(500), layout)
    planes32 = [p.detach().float().requires_grad_() for p in planes64]
    points32 = points64.detach().float().requires_grad_()
    ours = hexplane_sample(points32, planes32)
    ref = hexplane_sample_reference(points64, planes64)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    ga = grads(ours, [points32, *planes32], g.float())
    gb = grads(ref, [points64, *planes64], g)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def test_gradcheck_through_kernel(rng_seed):
    layout = HexPlaneLayout(channels=2, resolutions=((3, 4, 2, 3), (5, 3, 4, 2)))
    planes = random_planes(layout)
    # interior points: finite differences must not straddle the clamp at the border
    points = random_points(6, span=0.9)
    packed = layout.pack([p.detach() for p in planes]).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, q: hexplane_sample_packed(x, q, layout), (points, packed))
    assert torch.autograd.gradcheck(lambda x, *pl: hexplane_sample(x, list(pl)), (points, *planes))


def test_gradcheck_reference(rng_seed):
    layout = HexPlaneLayout(channels=2, resolutions=((3, 3, 4, 3),))
    planes = random_planes(layout)
    points = random_points(5, span=0.9)
    assert torch.autograd.gradcheck(lambda x, *pl: hexplane_sample_reference(x, list(pl)), (points, *planes))


def test_border_and_outside_points_are_clamped(rng_seed):
    layout = HexPlaneLayout(channels=4, resolutions=((5, 4, 6, 3), (9, 8, 7, 3)))
    planes = random_planes(layout)
    base = torch.rand(64, 4, dtype=torch.float64) * 2 - 1
    special = torch.tensor([-1.0, 1.0, -1.7, 2.5, -1e6, 1e6], dtype=torch.float64)
    idx = torch.randint(0, len(special), (64, 4))
    mask = torch.rand(64, 4) < 0.5
    points = torch.where(mask, special[idx], base).requires_grad_()
    ours = hexplane_sample(points, planes)
    ref = hexplane_sample_reference(points, planes)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # clamped points sample exactly what the border sample gives
    clamped = hexplane_sample(points.detach().clamp(-1, 1), planes)
    torch.testing.assert_close(ours, clamped, rtol=0, atol=0)
    g = torch.randn_like(ref)
    ga = grads(ours, [points, *planes], g)
    gb = grads(ref, [points, *planes], g)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    # on and beyond the border the coordinate gradient is zero (grid_sample's convention)
    on_border = points.detach().abs() >= 1
    assert on_border.any()
    assert (ga[0][on_border] == 0).all()


def test_resolution_one_and_two(rng_seed):
    layout = HexPlaneLayout(channels=3, resolutions=((1, 2, 3, 1), (2, 1, 2, 2)))
    planes = random_planes(layout)
    points = random_points(40)
    ours = hexplane_sample(points, planes)
    ref = hexplane_sample_reference(points, planes)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(grads(ours, [points, *planes], g), grads(ref, [points, *planes], g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_output_is_written(rng_seed, dtype):
    layout = random_layout(random.Random(rng_seed), channels=5, levels=2)
    planes = [p.detach().to(dtype) for p in random_planes(layout)]
    points = random_points(123, dtype=dtype).detach()
    ext = extension("cpu")
    out = torch.full((123, layout.out_dim), float("nan"), dtype=dtype)
    ret = ext.hexplane_fwd_out(points, layout.pack(planes), layout.meta(), out)
    assert ret.data_ptr() == out.data_ptr()
    assert torch.isfinite(out).all()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, hexplane_sample_reference(points, planes), rtol=tol, atol=tol)


def test_only_requested_gradients(rng_seed):
    layout = random_layout(random.Random(rng_seed))
    planes = [p.detach() for p in random_planes(layout)]
    points = random_points(30)
    (gp,) = torch.autograd.grad(hexplane_sample(points, planes).sum(), [points])
    (gr,) = torch.autograd.grad(hexplane_sample_reference(points, planes).sum(), [points])
    torch.testing.assert_close(gp, gr, rtol=1e-10, atol=1e-11)
    planes = random_planes(layout)
    pts = points.detach()
    ga = torch.autograd.grad(hexplane_sample(pts, planes).sum(), planes)
    gb = torch.autograd.grad(hexplane_sample_reference(pts, planes).sum(), planes)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_empty_points():
    layout = HexPlaneLayout(channels=4, resolutions=((4, 4, 4, 3),))
    planes = random_planes(layout)
    points = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    out = hexplane_sample(points, planes)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert all(p.grad is not None and (p.grad == 0).all() for p in planes)


# --- layout ----------------------------------------------------------------------------


def test_layout_pack_unpack_round_trip(rng_seed):
    layout = random_layout(random.Random(rng_seed))
    planes = [p.detach() for p in random_planes(layout)]
    assert HexPlaneLayout.from_planes(planes) == layout
    packed = layout.pack(planes)
    assert packed.shape == (layout.rows, layout.channels)
    for a, b in zip(layout.unpack(packed), planes):
        assert torch.equal(a, b)
    for p, (a, b) in enumerate(PLANE_AXES):  # width along the first axis, height along the second
        res = layout.resolutions[0]
        assert layout.plane_shape(0, p) == (layout.channels, res[b], res[a])


# --- module ----------------------------------------------------------------------------


def test_field_init_and_backends_agree(rng_seed):
    field = HexPlaneField(channels=4, resolution=(5, 3), multires=(1, 2)).double()
    assert field.out_dim == 8
    assert field.layout.resolutions == ((5, 5, 5, 3), (10, 10, 10, 3))
    planes = field.planes()
    for i, pl in enumerate(planes):
        if i % 6 >= 3:
            assert (pl == 1).all()
        else:
            assert pl.min() >= 0.1 and pl.max() <= 0.5 and pl.std() > 0
    with torch.no_grad():
        field.data.add_(torch.randn_like(field.data) * 0.1)  # time planes off 1 too
    points = random_points(100)
    out_fused = field(points)
    g = torch.randn_like(out_fused)
    ga = torch.autograd.grad(out_fused, [points, field.data], g)
    field.backend = "grid_sample"
    out_ref = field(points)
    gb = torch.autograd.grad(out_ref, [points, field.data], g)
    torch.testing.assert_close(out_fused, out_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_field_state_dict_round_trip():
    a = HexPlaneField(channels=2, resolution=(4, 3), multires=(1,))
    b = HexPlaneField(channels=2, resolution=(4, 3), multires=(1,))
    b.load_state_dict(a.state_dict())
    pts = torch.rand(10, 4) * 2 - 1
    assert torch.equal(a(pts), b(pts))


# --- bad input -------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    layout = HexPlaneLayout(channels=4, resolutions=((4, 4, 4, 3),))
    planes = [p.detach() for p in random_planes(layout)]
    pts = torch.rand(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"points must be \[N, 4\]"):
        hexplane_sample(torch.rand(5, 3, dtype=torch.float64), planes)
    with pytest.raises(TypeError, match="points must be a torch.Tensor"):
        hexplane_sample(pts.tolist(), planes)
    with pytest.raises(TypeError, match="points must have the planes' dtype"):
        hexplane_sample(pts.float(), planes)
    with pytest.raises(ValueError, match="points are on meta"):
        hexplane_sample(pts.to("meta"), planes)
    with pytest.raises(ValueError, match="6 tensors per level"):
        hexplane_sample(pts, planes[:5])
    with pytest.raises(ValueError, match=r"planes\[2\].*3 channels"):
        hexplane_sample(pts, planes[:2] + [planes[2][:3]] + planes[3:])
    with pytest.raises(ValueError, match=r"planes\[3\].*x resolution 5 differs"):
        hexplane_sample(pts, planes[:3] + [torch.rand(4, 3, 5, dtype=torch.float64)] + planes[4:])
    with pytest.raises(ValueError, match=r"planes\[1\] must be \[C, H, W\]"):
        hexplane_sample(pts, [planes[0], planes[1][None]] + planes[2:])
    with pytest.raises(TypeError, match=r"planes\[4\] has dtype torch.float32"):
        hexplane_sample(pts, planes[:4] + [planes[4].float()] + planes[5:])
    with pytest.raises(TypeError, match="float32 and float64"):
        hexplane_sample(pts.half(), [p.half() for p in planes])
    with pytest.raises(ValueError, match="backend must be one of"):
        hexplane_sample(pts, planes, backend="triton")
    with pytest.raises(TypeError, match="planes must be a list"):
        hexplane_sample(pts, torch.stack(planes[:3]))
    with pytest.raises(ValueError, match=r"packed must be \[84, 4\]"):
        hexplane_sample_packed(pts, torch.rand(80, 4, dtype=torch.float64), layout)
    field = HexPlaneField(channels=2, resolution=(4, 3), multires=(1,))
    with pytest.raises(ValueError, match=r"points must be \[N, 4\]"):
        field(torch.rand(5, 4, 1))
    with pytest.raises(TypeError, match="points must have the planes' dtype"):
        field(pts)
    with pytest.raises(ValueError, match="backend must be one of"):
        field.backend = "cuda"
    with pytest.raises(ValueError, match="1 to 8 levels"):
        HexPlaneLayout(channels=2, resolutions=((2, 2, 2, 2),) * 9)


# --- CUDA ------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("channels", [3, 6, 32, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference(rng_seed, channels, dtype):
    layout = HexPlaneLayout(channels=channels, resolutions=((9, 8, 7, 5), (17, 16, 15, 5)))
    planes64 = random_planes(layout, device="cuda")
    points64 = off_texel_edges(random_points(3000, device="cuda"), layout)
    planes = [p.detach().to(dtype).requires_grad_() for p in planes64]
    points = points64.detach().to(dtype).requires_grad_()
    ext = extension("cuda")
    poisoned = torch.full((3000, layout.out_dim), float("nan"), dtype=dtype, device="cuda")
    ext.hexplane_fwd_out(points.detach(), layout.pack([p.detach() for p in planes]), layout.meta(), poisoned)
    ref = hexplane_sample_reference(points64, planes64)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert torch.isfinite(poisoned).all()
    torch.testing.assert_close(poisoned.double(), ref, rtol=tol, atol=tol)
    ours = hexplane_sample(points, planes)
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol)
    g = torch.randn_like(ref)
    ga = grads(ours, [points, *planes], g.to(dtype))
    gb = grads(ref, [points64, *planes64], g)
    gtol = 1e-9 if dtype == torch.float64 else 2e-4
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.double(), b, rtol=gtol, atol=gtol)


@pytest.mark.cuda
def test_cuda_gradcheck_and_border(rng_seed):
    layout = HexPlaneLayout(channels=4, resolutions=((3, 4, 5, 3),))
    planes = random_planes(layout, device="cuda")
    points = random_points(6, device="cuda", span=0.9)
    assert torch.autograd.gradcheck(lambda x, *pl: hexplane_sample(x, list(pl)), (points, *planes))
    special = torch.tensor([-1.0, 1.0, -3.0, 3.0], dtype=torch.float64, device="cuda")
    pts = special[torch.randint(0, 4, (200, 4), device="cuda")].requires_grad_()
    ours, ref = hexplane_sample(pts, planes), hexplane_sample_reference(pts, planes)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(grads(ours, [pts, *planes], g), grads(ref, [pts, *planes], g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
