"""Bad input to rasterize_gaussians raises ValueError/TypeError naming the argument and what was expected."""
import pytest
import torch

from orster4d.ops.rasterize import rasterize_gaussians
from orster4d.data.scenes import random_scene

W, H = 16, 12


def good(seed, sh=None):
    s = random_scene(7, 2, W, H, batch=(2,), sh_degree=sh, generator=torch.Generator().manual_seed(seed))
    return dict(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities, colors=s.colors,
                viewmats=s.viewmats, Ks=s.Ks, backgrounds=torch.rand(2, 2, 3))


def call(args, width=W, height=H, **kw):
    a = dict(args)
    bg = a.pop("backgrounds")
    return rasterize_gaussians(a["means"], a["quats"], a["scales"], a["opacities"], a["colors"], a["viewmats"],
                               a["Ks"], width, height, backgrounds=bg, **kw)


def test_good_input_renders(rng_seed):
    out = call(good(rng_seed))
    assert out.rgb.shape == (2, 2, H, W, 3)


# (argument, how to break it, error type, words the message must contain)
SHAPE_CASES = [
    ("quats", lambda x: x[:, :-1], ValueError, ["quats", "N=7", "[..., N, 4]"]),
    ("scales", lambda x: x[:, :5], ValueError, ["scales", "N=7"]),
    ("opacities", lambda x: x[:, :6], ValueError, ["opacities", "N=7", "[..., N]"]),
    ("colors", lambda x: x[:, :3], ValueError, ["colors", "N=7"]),
    ("means", lambda x: x[..., :2], ValueError, ["means", "[..., N, 3]"]),
    ("quats", lambda x: x[..., :3], ValueError, ["quats", "[..., N, 4]"]),
    ("scales", lambda x: torch.cat([x, x[..., :1]], -1), ValueError, ["scales", "[..., N, 3]"]),
    ("colors", lambda x: x[..., :2], ValueError, ["colors", "[..., N, 3]"]),
    ("viewmats", lambda x: x[..., :3, :], ValueError, ["viewmats", "[..., C, 4, 4]"]),
    ("Ks", lambda x: x[..., :1, :, :], ValueError, ["Ks", "C=2"]),
    ("Ks", lambda x: x[..., :2, :2], ValueError, ["Ks", "[..., C, 3, 3]"]),
    ("backgrounds", lambda x: x[..., :2], ValueError, ["backgrounds", "[..., C, 3]"]),
    ("backgrounds", lambda x: x[:, :1], ValueError, ["backgrounds", "C=2"]),
    ("means", lambda x: torch.cat([x, x[:1]]), ValueError, ["leading batch dims", "means"]),
    ("viewmats", lambda x: torch.cat([x, x, x]), ValueError, ["leading batch dims", "viewmats"]),
    ("means", lambda x: x[0, 0], ValueError, ["means", "[..., N, 3]"]),
]


@pytest.mark.parametrize("name,breaker,exc,words", SHAPE_CASES)
def test_bad_shapes(rng_seed, name, breaker, exc, words):
    args = good(rng_seed)
    args[name] = breaker(args[name])
    with pytest.raises(exc) as info:
        call(args)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "backgrounds"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float64])
def test_bad_dtypes(rng_seed, name, dtype):
    args = good(rng_seed)
    args[name] = (args[name] * 10).to(dtype)
    with pytest.raises(TypeError) as info:
        call(args)
    msg = str(info.value)
    assert name in msg and "float32" in msg and str(dtype) in msg


def test_float64_only_with_reference(rng_seed):
    args = {k: v.double() for k, v in good(rng_seed).items()}
    with pytest.raises(TypeError, match="float64 only with backend='reference'"):
        call(args)
    out = call(args, backend="reference")
    assert out.rgb.dtype == torch.float64
    mixed = dict(args, Ks=args["Ks"].float())
    with pytest.raises(TypeError, match="Ks must have the dtype of means"):
        call(mixed, backend="reference")


def test_not_a_tensor(rng_seed):
    args = good(rng_seed)
    args["scales"] = args["scales"].tolist()
    with pytest.raises(TypeError, match="scales must be a torch.Tensor"):
        call(args)


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "backgrounds"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite(rng_seed, name, value):
    args = good(rng_seed)
    x = args[name].clone()
    x.view(-1)[torch.randint(x.numel(), ())] = value
    args[name] = x
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        call(args)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["means", "opacities", "colors", "Ks", "backgrounds"])
def test_non_finite_cuda(rng_seed, name):
    """On CUDA a kernel writes the flags into pinned host memory, read after the intersection's
    synchronisation (or after a synchronisation of its own when nothing is projected): a bad input is
    still named, and good inputs around it still render."""
    cuda = lambda: {k: v.cuda() for k, v in good(rng_seed).items()}
    assert call(cuda()).rgb.isfinite().all()
    args = cuda()
    args[name].view(-1)[torch.randint(args[name].numel(), ())] = float("nan")
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        call(args)
    empty = cuda()
    empty["means"], empty["quats"], empty["scales"] = (empty[k][:, :0] for k in ("means", "quats", "scales"))
    empty["opacities"], empty["colors"] = empty["opacities"][:, :0], empty["colors"][:, :0]
    empty["Ks"] = empty["Ks"].clone()
    empty["Ks"][0, 0, 0, 0] = float("inf")  # no Gaussian: the intersection returns without synchronising
    with pytest.raises(ValueError, match="Ks must be finite"):
        call(empty)
    assert call(cuda()).rgb.isfinite().all()


# (base shape, the layout the op sees): contiguous, transposed, expanded, sliced, empty, large, offset
_LAYOUTS = [((100, 3), lambda x: x), ((7, 4), lambda x: x.t()), ((4, 1), lambda x: x.expand(4, 1000)),
            ((50, 6), lambda x: x[:, 1:4]), ((0, 3), lambda x: x), ((300_000,), lambda x: x), ((1,), lambda x: x),
            ((9, 9), lambda x: x), ((33,), lambda x: x), ((2, 5, 3), lambda x: x.transpose(0, 2)),
            ((70_003,), lambda x: x[1:])]  # starts 4 bytes past a 16-byte aligned address


def _flag_inputs(gen, device):
    """Float32 tensors of the layouts above, with NaN or +-inf planted at a random element that
    the layout shows, in a random half of them."""
    bad = set(torch.randperm(len(_LAYOUTS), generator=gen)[: len(_LAYOUTS) // 2].tolist())
    xs = []
    for i, (shape, layout) in enumerate(_LAYOUTS):
        base = torch.randn(shape, generator=gen)
        x = layout(base)
        if i in bad and x.numel():
            index = [int(torch.randint(n, (), generator=gen)) for n in x.shape]
            x[tuple(index)] = (float("nan"), float("inf"), -float("inf"))[i % 3]  # writes through to base
        xs.append(layout(base.to(device)))
    return xs


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_nonfinite_flags_op(rng_seed, device):
    """``orster4d::nonfinite_flags`` against ``isfinite().all()`` of each input, over layouts, sizes
    and more inputs than one CUDA launch takes (8)."""
    from orster4d.ops.rasterize._ops import extension

    ops = extension(device)
    gen = torch.Generator().manual_seed(rng_seed)
    for _ in range(3):
        xs = _flag_inputs(gen, device)
        flags = ops.nonfinite_flags(xs)
        if device == "cuda":
            torch.cuda.synchronize()  # the op's contract: read after the stream synchronises
        assert flags.device.type == "cpu" and flags.dtype == torch.int32
        expect = [int(not bool(torch.isfinite(x).all())) for x in xs]
        assert flags.tolist() == expect
        assert 0 < sum(expect) < len(xs)


def test_different_devices(rng_seed):
    args = good(rng_seed)
    args["colors"] = args["colors"].to("meta")
    with pytest.raises(ValueError) as info:
        call(args)
    assert "colors" in str(info.value) and "device" in str(info.value) and "meta" in str(info.value)


def test_backend_device_mismatch(rng_seed):
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        call(good(rng_seed), backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        call(good(rng_seed), backend="opengl")


@pytest.mark.parametrize("width,height,exc,word", [
    (0, H, ValueError, "width"), (W, -3, ValueError, "height"), (16.0, H, TypeError, "width"),
    (W, True, TypeError, "height"), (W, "12", TypeError, "height"),
])
def test_bad_image_size(rng_seed, width, height, exc, word):
    with pytest.raises(exc, match=word):
        call(good(rng_seed), width=width, height=height)


def test_bad_near_far_eps(rng_seed):
    with pytest.raises(ValueError, match="near and far"):
        call(good(rng_seed), near=1.0, far=0.5)
    with pytest.raises(ValueError, match="near and far"):
        call(good(rng_seed), near=0.0)
    with pytest.raises(ValueError, match="eps2d"):
        call(good(rng_seed), eps2d=-0.1)


def test_bad_sh_degree(rng_seed):
    args = good(rng_seed, sh=1)  # K = 4
    with pytest.raises(ValueError, match=r"K >= \(sh_degree \+ 1\)\^2 = 9 for sh_degree=2, got K=4"):
        call(args, sh_degree=2)
    with pytest.raises(ValueError, match="sh_degree must be None or an int in 0..3"):
        call(args, sh_degree=4)
    with pytest.raises(TypeError, match="sh_degree"):
        call(args, sh_degree=1.0)
    with pytest.raises(ValueError, match="colors must have shape"):
        call(good(rng_seed), sh_degree=0)  # RGB colours [..., N, 3] given with an SH degree
    rgb_for_sh = good(rng_seed, sh=0)
    with pytest.raises(ValueError, match="colors must have shape"):
        call(rgb_for_sh)  # SH coefficients [..., N, 1, 3] given without a degree
    # more coefficients than the degree needs: the first (degree + 1)^2 are used
    a = call(args, sh_degree=0)
    b = call(dict(args, colors=args["colors"][..., :1, :].contiguous()), sh_degree=0)
    assert torch.equal(a.rgb, b.rgb)
