"""The C++/CUDA kernels as dispatcher ops (``torch.ops.orster4d.*``).

* every op is defined once, has a kernel for the CPU (and, with a GPU, CUDA) dispatch key under
  that one name, and the differentiable ones an autograd kernel;
* ``torch.library.opcheck`` on every op with fresh random inputs: schema (mutation, aliasing),
  autograd registration, fake kernel against the real one (shapes, dtypes, strides) and AOT
  dispatch with dynamic shapes (forward and, where inputs need gradients, backward);
* ``torch.compile`` traces a small 4D-construction step (deformation field -> rasterizer -> loss)
  with no graph break, and the compiled step's loss and gradients equal eager.
"""
import random

import pytest
import torch

from orster4d.data.scenes import random_scene
from orster4d.ops.hexplane import HexPlaneLayout
from orster4d.ops.hexplane._ops import extension as hexplane_ops
from orster4d.ops.rasterize._ops import TILE_SIZE, extension as rasterize_ops

RASTERIZE_OPS = ("nonfinite_flags", "project_fwd", "project_bwd", "sh_fwd", "sh_bwd", "intersect_tiles",
                 "rasterize_fwd", "rasterize_bwd")
HEXPLANE_OPS = ("hexplane_fwd", "hexplane_fwd_out", "hexplane_bwd")
DIFFERENTIABLE = ("project_fwd", "sh_fwd", "rasterize_fwd", "hexplane_fwd")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module", autouse=True)
def loaded():
    backends = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    for backend in backends:  # both libraries of a family in one process: each op is still defined once
        rasterize_ops(backend)
        hexplane_ops(backend)
    return backends


def test_every_op_has_one_schema_and_a_kernel_per_backend(loaded):
    for name in RASTERIZE_OPS + HEXPLANE_OPS:
        op = getattr(torch.ops.orster4d, name)
        assert op.overloads() == ["default"], name
        assert op.default._schema.name == f"orster4d::{name}"
        for key in loaded:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"orster4d::{name}", key.upper()), (name, key)
        has_autograd = torch._C._dispatch_has_kernel_for_dispatch_key(f"orster4d::{name}", "Autograd")
        assert has_autograd == (name in DIFFERENTIABLE), name


def test_each_family_registers_its_python_parts_once_per_process():
    """The shared loader calls a family's registration once, however often and for whichever backend
    it is asked; ``ensure_loaded`` is marked constant for ``torch.compile``."""
    from orster4d.ops._extensions import kernel_loaders

    calls = []
    extension, ensure_loaded = kernel_loaders("hexplane", lambda: calls.append(1))
    assert extension("cpu") is torch.ops.orster4d and ensure_loaded("cpu") is True
    extension("cpu")
    assert calls == [1]
    assert getattr(ensure_loaded, "_dynamo_marked_constant", False)
    with pytest.raises(ValueError, match="backend must be 'cpu' or 'cuda'"):
        extension("tpu")


# ------------------------------------------------------------------------------------- inputs
def scene_inputs(seed: int, device: str, sh_degree=None):
    """A random 2-time, 2-camera scene in the ops' flattened layout: ``means [B, N, 3]`` ..."""
    s = random_scene(25, 2, 37, 21, batch=(2,), sh_degree=sh_degree, log_scale_mean=-2.3,
                     generator=torch.Generator().manual_seed(seed))
    f = lambda x: x.to(device=device, dtype=torch.float32).contiguous()  # noqa: E731
    return s, [f(x) for x in (s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks)]


def projected(seed: int, device: str):
    s, (m, q, sc, o, col, vm, k) = scene_inputs(seed, device)
    radii, means2d, depths, conics = torch.ops.orster4d.project_fwd(m, q, sc, vm, k, s.width, s.height, 0.01,
                                                                    1e10, 0.3)
    assert (radii > 0).any()
    return s, m, q, sc, o, col, vm, k, radii, means2d, depths, conics


def tiles(s):
    return -(-s.width // TILE_SIZE), -(-s.height // TILE_SIZE)


def needs_grad(*xs):
    return [x.detach().clone().requires_grad_() for x in xs]


def rasterize_args(seed: int, device: str, backgrounds: bool):
    s, m, q, sc, o, col, vm, k, radii, means2d, depths, conics = projected(seed, device)
    tw, th = tiles(s)
    offsets, ids = torch.ops.orster4d.intersect_tiles(means2d, radii, depths, TILE_SIZE, tw, th, conics, o)
    B, C, N = radii.shape
    colors = torch.rand(B, C, N, 3, device=device)
    bg = torch.rand(B, C, 3, device=device) if backgrounds else None
    diff = needs_grad(means2d, conics, colors, o, depths) + ([] if bg is None else needs_grad(bg))
    bg = diff[5] if backgrounds else None
    return (*diff[:5], bg, s.width, s.height, TILE_SIZE, offsets, ids)


# ------------------------------------------------------------------------------------ opcheck
def test_opcheck_nonfinite_flags(rng_seed):
    """CPU only: opcheck compares output values right after each call, and the CUDA kernel's host flags
    are valid only once the stream has synchronised (tested with that in test_rasterize_validation)."""
    g = torch.Generator().manual_seed(rng_seed)
    xs = [torch.randn(5, 3, generator=g), torch.randn(2, 4, generator=g).t(), torch.randn(0, generator=g)]
    xs[0][2, 1] = float("nan")
    torch.library.opcheck(torch.ops.orster4d.nonfinite_flags, (xs,))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_project(rng_seed, device):
    s, m, q, sc, o, col, vm, k, radii, means2d, depths, conics = projected(rng_seed, device)
    fwd = (*needs_grad(m, q, sc), vm, k, s.width, s.height, 0.01, 1e10, 0.3)
    # opcheck's AOT backward check sums every output into one tensor starting from the first, and
    # the first output (radii) is int32, so adding the float outputs to it fails inside opcheck.
    # That check runs here without gradients (forward only); the backward under AOT dispatch with
    # dynamic shapes is checked below on the float outputs.
    torch.library.opcheck(torch.ops.orster4d.project_fwd, fwd,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    torch.library.opcheck(torch.ops.orster4d.project_fwd, [x.detach() if torch.is_tensor(x) else x for x in fwd],
                          test_utils="test_aot_dispatch_dynamic")
    weights = [torch.randn_like(x) for x in (means2d, depths, conics)]

    def loss(means, quats, scales):
        out = torch.ops.orster4d.project_fwd(means, quats, scales, *fwd[3:])
        return sum((w * x).sum() for w, x in zip(weights, out[1:]))

    eager = torch.autograd.grad(loss(*fwd[:3]), fwd[:3])
    aot = torch.autograd.grad(torch.compile(loss, backend="aot_eager", dynamic=True, fullgraph=True)(*fwd[:3]),
                              fwd[:3])
    for a, b in zip(aot, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = [torch.randn_like(x) for x in (means2d, depths, conics)]
    torch.library.opcheck(torch.ops.orster4d.project_bwd,
                          (m, q, sc, vm, k, s.width, s.height, 0.3, radii, conics, *grads))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_sh(rng_seed, device):
    degree = random.Random(rng_seed).randint(0, 3)
    s, (m, q, sc, o, coeffs, vm, k) = scene_inputs(rng_seed, device, sh_degree=degree)
    radii = torch.ops.orster4d.project_fwd(m, q, sc, vm, k, s.width, s.height, 0.01, 1e10, 0.3)[0]
    dirs = (m.unsqueeze(1) - torch.randn(*vm.shape[:2], 1, 3, device=device)).contiguous()
    for r in (radii, None):
        torch.library.opcheck(torch.ops.orster4d.sh_fwd, (degree, *needs_grad(dirs, coeffs), r))
        v_colors = torch.randn(*dirs.shape, device=device)
        torch.library.opcheck(torch.ops.orster4d.sh_bwd, (degree, dirs, coeffs, r, v_colors))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_intersect_tiles(rng_seed, device):
    """The intersection count is data dependent: the fake kernel gives it a dynamic size."""
    s, m, q, sc, o, col, vm, k, radii, means2d, depths, conics = projected(rng_seed, device)
    tw, th = tiles(s)
    torch.library.opcheck(torch.ops.orster4d.intersect_tiles, (means2d, radii, depths, TILE_SIZE, tw, th))
    torch.library.opcheck(torch.ops.orster4d.intersect_tiles,
                          (means2d, radii, depths, TILE_SIZE, tw, th, conics, o))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backgrounds", [False, True])
def test_opcheck_rasterize(rng_seed, device, backgrounds):
    args = rasterize_args(rng_seed, device, backgrounds)
    torch.library.opcheck(torch.ops.orster4d.rasterize_fwd, args)
    fwd = [x.detach() if isinstance(x, torch.Tensor) else x for x in args]
    render, render_depth, last_ids, transmittance = torch.ops.orster4d.rasterize_fwd(*fwd)
    for extra in ((torch.randn_like(render_depth), torch.randn_like(render_depth)), (None, None)):
        torch.library.opcheck(torch.ops.orster4d.rasterize_bwd,
                              (*fwd, render, render_depth, transmittance, last_ids, torch.randn_like(render), *extra))


def hexplane_args(seed: int, device: str):
    rng = random.Random(seed)
    res = tuple((rng.randint(2, 6), rng.randint(2, 6), rng.randint(2, 6), rng.randint(2, 4))
                for _ in range(rng.randint(1, 2)))
    layout = HexPlaneLayout(channels=rng.randint(1, 5), resolutions=res)
    points = (torch.rand(17, 4, dtype=torch.float64, device=device) * 2.2 - 1.1)
    packed = torch.rand(layout.rows, layout.channels, dtype=torch.float64, device=device)
    return layout, points, packed


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_hexplane(rng_seed, device):
    layout, points, packed = hexplane_args(rng_seed, device)
    meta = layout.meta()
    torch.library.opcheck(torch.ops.orster4d.hexplane_fwd, (*needs_grad(points, packed), meta))
    out = torch.full((points.shape[0], layout.out_dim), float("nan"), dtype=torch.float64, device=device)
    # The out variant returns the buffer it writes (as aten's out= ops do), so that tests can see
    # that the kernel wrote in place; AOT dispatch cannot functionalize a custom op whose output
    # aliases an input, so test_aot_dispatch_dynamic is left out. The variant is for tests and
    # benchmarks that need a poisoned output buffer; nothing traced calls it.
    torch.library.opcheck(torch.ops.orster4d.hexplane_fwd_out, (points, packed, meta, out),
                          test_utils=("test_schema", "test_faketensor"))
    grad = torch.randn(points.shape[0], layout.out_dim, dtype=torch.float64, device=device)
    for need_points, need_planes in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(torch.ops.orster4d.hexplane_bwd, (grad, points, packed, meta, need_points, need_planes))


def test_opcheck_check_finite(rng_seed):
    token = torch.randint(0, 100, (3, 2, 5), dtype=torch.int32)
    torch.library.opcheck(torch.ops.orster4d.check_finite, (token, torch.ones(4, dtype=torch.bool), list("abcd")))
    bad = torch.ones(4, dtype=torch.bool)
    bad[rng_seed % 4] = False
    with pytest.raises(ValueError, match=f"{'abcd'[rng_seed % 4]} must be finite"):
        torch.ops.orster4d.check_finite(token, bad, list("abcd"))


# ----------------------------------------------------------------------------- torch.compile
def construct_step_inputs(seed: int):
    """A tiny 4D-construction step: Gaussians, a fused-HexPlane deformation field, 2 times x 2 views."""
    from orster4d.recon.deformation import DeformationField
    from orster4d.recon.gaussians import GaussianModel

    g = torch.Generator().manual_seed(seed)
    gauss = GaussianModel.from_points(2 * torch.rand(40, 3, generator=g) - 1, 0.5 + 0.1 * torch.rand(40, 3, generator=g),
                                      max_sh_degree=1)
    gauss.active_sh_degree = 1
    with torch.no_grad():
        gauss.log_scales.add_(1.0)
        gauss.logit_opacities.add_(2.0)
        gauss.sh_rest.normal_(0, 0.2, generator=g)
    field = DeformationField(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), channels=4, resolution=(6, 3),
                             multires=(1,), width=16, backend="fused")
    with torch.no_grad():
        field.hexplane.data.uniform_(0.5, 1.5, generator=g)
        field.heads.head_weight("pos").normal_(0, 0.1, generator=g)
    s = random_scene(1, 2, 24, 20, batch=(2,), radius=3.0, generator=g)
    times = torch.tensor([0.25, 0.75])
    gt = torch.rand(2, 2, 20, 24, 3, generator=g)
    return gauss, field, times, s.viewmats.float(), s.Ks.float(), gt


def construct_loss(gauss, field, times, viewmats, Ks, gt):
    """Deform -> rasterize (SH colours, backgrounds) -> L1 + depth term + plane regularisers."""
    from orster4d.recon.fit import render

    out = render(gauss, field, times, viewmats, Ks, gt.shape[-2], gt.shape[-3], (0.1, 0.2, 0.3))
    return ((out.rgb - gt).abs().mean() + 1e-2 * (out.depth * out.alpha).mean() + field.regularisation())


def test_compiled_construct_step_has_no_graph_break_and_matches_eager(rng_seed, one_thread):
    """The step traces as one graph holding every orster4d op, and the compiled step's loss and
    gradients equal eager (one thread: the CPU kernels' atomics then add in a fixed order).

    The number of tile intersections is data dependent, so tracing through ``intersect_tiles`` needs
    dynamo's ``capture_dynamic_output_shape_ops`` (as ``aten.nonzero`` does). Without it dynamo
    splits the graph there, and that is its only break: checked at the end.
    """
    gauss, field, times, vm, Ks, gt = construct_step_inputs(rng_seed)
    params = list(gauss.parameters()) + list(field.parameters())
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        explained = torch._dynamo.explain(construct_loss)(gauss, field, times, vm, Ks, gt)
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1
        traced = {str(n.target) for n in explained.graphs[0].graph.nodes if n.op == "call_function"}
        assert {f"orster4d.{op}" for op in ("hexplane_fwd", "project_fwd", "sh_fwd", "intersect_tiles",
                                            "check_finite", "rasterize_fwd")} <= traced, traced

        loss = construct_loss(gauss, field, times, vm, Ks, gt)
        grads = torch.autograd.grad(loss, params)
        compiled = torch.compile(construct_loss, backend="aot_eager", fullgraph=True)
        loss_c = compiled(gauss, field, times, vm, Ks, gt)
        grads_c = torch.autograd.grad(loss_c, params)
    torch.testing.assert_close(loss_c, loss, rtol=1e-6, atol=0)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7 * b.abs().max().item())
    n_gauss = len(list(gauss.parameters()))
    planes = next(i for i, p in enumerate(params) if p is field.hexplane.data)
    reached = grads[:n_gauss] + (grads[planes],)
    assert all(g.abs().max() > 0 for g in reached)  # through the rasterizer to the Gaussians and the planes

    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=False):
        default = torch._dynamo.explain(construct_loss)(gauss, field, times, vm, Ks, gt)
    assert default.graph_break_count >= 1
    for reason in default.break_reasons:
        assert "orster4d.intersect_tiles" in reason.reason and "output shape depends on" in reason.reason, reason
