"""HexPlane regularisers (vectorised) against per-plane, per-element loops."""
import random

import pytest
import torch

from orster4d.ops.hexplane import HexPlaneLayout, plane_tv, time_l1, time_smoothness
from orster4d.recon.hexplane_field import HexPlaneField


def random_planes(rng: random.Random) -> list[torch.Tensor]:
    levels = rng.choice([1, 2, 3])
    # equal spatial resolutions on some levels (one stacked group), unequal on others
    res = []
    for _ in range(levels):
        r = rng.randint(1, 6)
        res.append((r, r, r, rng.randint(1, 6)) if rng.random() < 0.5 else tuple(rng.randint(1, 6) for _ in range(4)))
    layout = HexPlaneLayout(channels=rng.randint(1, 3), resolutions=tuple(res))
    return [
        torch.randn(layout.plane_shape(l, p), dtype=torch.float64, requires_grad=True)
        for l in range(layout.levels)
        for p in range(6)
    ]


def naive_tv(planes):
    total = torch.zeros((), dtype=torch.float64)
    for i, pl in enumerate(planes):
        if i % 6 >= 3:
            continue
        c, h, w = pl.shape
        for diffs, count in (
            ([pl[k, y + 1, x] - pl[k, y, x] for k in range(c) for y in range(h - 1) for x in range(w)], c * (h - 1) * w),
            ([pl[k, y, x + 1] - pl[k, y, x] for k in range(c) for y in range(h) for x in range(w - 1)], c * h * (w - 1)),
        ):
            if count:
                total = total + 2 * sum(d * d for d in diffs) / count
    return total


def naive_time_smoothness(planes):
    total = torch.zeros((), dtype=torch.float64)
    for i, pl in enumerate(planes):
        if i % 6 < 3:
            continue
        c, h, w = pl.shape  # h runs along t
        terms = [pl[k, y + 2, x] - 2 * pl[k, y + 1, x] + pl[k, y, x] for k in range(c) for y in range(h - 2) for x in range(w)]
        if terms:
            total = total + sum(d * d for d in terms) / len(terms)
    return total


def naive_time_l1(planes):
    total = torch.zeros((), dtype=torch.float64)
    for i, pl in enumerate(planes):
        if i % 6 < 3:
            continue
        vals = [abs(1 - v) for v in pl.flatten()]
        total = total + sum(vals) / len(vals)
    return total


@pytest.mark.parametrize(
    "fast,naive", [(plane_tv, naive_tv), (time_smoothness, naive_time_smoothness), (time_l1, naive_time_l1)]
)
@pytest.mark.parametrize("trial", range(2))
def test_regulariser_matches_naive_loops(rng_seed, fast, naive, trial):
    planes = random_planes(random.Random(rng_seed + trial))
    a, b = fast(planes), naive(planes)
    assert a.shape == ()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # A layout whose planes are all 1 texel wide has no differences at all: the naive sum is then a
    # constant with no graph, whose gradient is zero everywhere.
    no_grad = (None,) * len(planes)
    ga = torch.autograd.grad(a, planes, allow_unused=True) if a.requires_grad else no_grad
    gb = torch.autograd.grad(b, planes, allow_unused=True) if b.requires_grad else no_grad
    for x, y, pl in zip(ga, gb, planes):
        x = torch.zeros_like(pl) if x is None else x
        y = torch.zeros_like(pl) if y is None else y
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_field_regularisers_at_init_and_gradients():
    field = HexPlaneField(channels=2, resolution=(4, 5), multires=(1, 2)).double()
    # time planes start at one: no L1 and no time smoothness; spatial planes are noisy
    assert time_l1(field.planes()) == 0 and field.time_l1() == 0
    assert field.time_smoothness() == 0
    assert field.plane_tv() > 0
    with torch.no_grad():
        field.data.add_(torch.randn_like(field.data))
    loss = field.plane_tv() + field.time_smoothness() + field.time_l1()
    loss.backward()
    ref = naive_tv(field.planes()) + naive_time_smoothness(field.planes()) + naive_time_l1(field.planes())
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    assert field.data.grad is not None and field.data.grad.abs().sum() > 0


def test_field_regularisation_is_the_weighted_terms_on_one_unpacking(rng_seed):
    """HexPlaneField.regularisation: the weighted sum of the three terms, value and gradient, with
    the planes unpacked once (one split of the packed tensor, whose views each plane is); a term of
    weight 0 is left out."""
    field = HexPlaneField(channels=3, resolution=(5, 4), multires=(1, 2)).double()
    with torch.no_grad():
        field.data.add_(torch.randn_like(field.data))
    planes = field.planes()
    offs = field.layout.offsets()
    for i, pl in enumerate(planes):  # each plane is a view of its own rows of the packed tensor
        l, p = divmod(i, 6)
        _, h, w = field.layout.plane_shape(l, p)
        assert pl.untyped_storage().data_ptr() == field.data.untyped_storage().data_ptr()
        torch.testing.assert_close(pl.permute(1, 2, 0).reshape(-1, 3), field.data[offs[l][p]: offs[l][p] + h * w],
                                   rtol=0, atol=0)
    w = (0.3, 0.7, 1.3)
    got = field.regularisation(*w)
    (g_got,) = torch.autograd.grad(got, field.data)
    ref = naive_tv(field.planes()) * w[0] + naive_time_smoothness(field.planes()) * w[1] \
        + naive_time_l1(field.planes()) * w[2]
    (g_ref,) = torch.autograd.grad(ref, field.data)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-12)
    only_tv = field.regularisation(0.3, 0.0, 0.0)
    torch.testing.assert_close(only_tv, 0.3 * naive_tv(field.planes()), rtol=1e-12, atol=1e-12)


def test_regularisers_reject_bad_planes():
    with pytest.raises(ValueError, match="6 tensors per level"):
        plane_tv([torch.rand(2, 3, 3)] * 4)
    with pytest.raises(TypeError, match="planes must be a list"):
        time_l1(torch.rand(6, 2, 3, 3))
