"""CPU checks of the benchmark machinery: the image criterion against gsplat, the FlexAttention
runner's batch chunks, the docs' generated tables, report merging and A/B comparison."""
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import attention as attn
from benchmarks import rasterize as rc
from benchmarks import report
from orster4d.ops.rasterize import rasterize_gaussians

ROOT = Path(__file__).resolve().parent.parent


def _render(scene, dtype, cx_shift=0.0):
    m, q, s, o, c, vm, K, res = scene
    K = K.clone()
    K[0, 2] += cx_shift
    x = [t.to(dtype) for t in (m, q, s, o, c)]
    return rasterize_gaussians(*x, vm.to(dtype)[None], K.to(dtype)[None], res, res, backend="reference").rgb


def _decision_pixels(scene) -> torch.Tensor:
    """``[H, W]`` pixels on a compositing decision (found in float64): there float32 and float64
    renders may rightly differ by a whole splat (a real flip, not rounding)."""
    from orster4d.ops.rasterize import reference

    m, q, s, o, _, vm, K, res = scene
    d = [x.double() for x in (m, q, s, o, vm, K)]
    radii, means2d, depths, conics = reference.project(d[0][None], d[1][None], d[2][None], d[4][None, None],
                                                       d[5][None, None], res, res)
    return reference.near_decision_pixels(means2d, conics, d[3][None], depths, radii, res, res)[0, 0]


@pytest.fixture
def scene(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    res = 80
    m, q, s, o, c = rc.random_gaussians(300, generator=g, device="cpu")
    vm, K = rc.camera(res, 360 * torch.rand((), generator=g).item(), device="cpu")
    return m, q, s * 8, o, c, vm, K, res  # splats of a few pixels cover the small image


def test_image_criterion_accepts_float32_noise_and_rare_flips(scene, rng_seed):
    ref = _render(scene, torch.float64)
    img = _render(scene, torch.float32)
    on_decision = _decision_pixels(scene)
    # a few per cent at most (150 seeds: max 2.8%, 4% of seeds over 1%): the overwrite below
    # leaves most of the image to the rounding check
    assert on_decision.float().mean() < 0.1
    img[0, on_decision] = ref[0, on_decision].float()  # leave the scene's own (real) flips out: rounding alone
    res = rc.image_agreement(img, ref)
    assert res["image_ok"], res
    assert res["image_max_abs_err"] < 1e-5  # float32 vs float64 alone
    flipped = img.clone()  # one pixel gains a faint splat, as where a 1/255 decision flips
    g = torch.Generator().manual_seed(rng_seed)
    y, x = (int(v) for v in torch.randint(0, scene[-1], (2,), generator=g))
    flipped[0, y, x] += 3.9e-3
    assert res["image_outliers_allowed"] == 1
    assert rc.image_agreement(flipped, ref)["image_ok"]
    flipped[0, (y + 7) % scene[-1], x] += 3.9e-3  # one more than ceil(1e-5 x 6400) = 1
    assert not rc.image_agreement(flipped, ref)["image_ok"]


def test_image_criterion_rejects_convention_errors(scene):
    ref = _render(scene, torch.float64)
    shifted = rc.image_agreement(_render(scene, torch.float32, cx_shift=0.5), ref)
    assert not shifted["image_ok"] and shifted["image_pixels_over_atol"] > 20 * shifted["image_outliers_allowed"]
    flipped = rc.image_agreement(_render(scene, torch.float32).flip(-3), ref)  # image y axis flipped
    assert not flipped["image_ok"]
    biased = rc.image_agreement((ref + 5e-4).float(), ref)  # below the per-pixel bound everywhere
    assert biased["image_pixels_over_atol"] == 0 and not biased["image_ok"]
    with pytest.raises(ValueError, match="share a shape"):
        rc.image_agreement(ref[..., :2], ref[..., :2])


def test_flex_batch_chunk(rng_seed):
    assert attn.flex_batch_chunk(8 * 64 * 64, 8, 65535) == 4096  # the temporal shapes: 8 calls
    g = torch.Generator().manual_seed(rng_seed)
    for _ in range(20):
        B, H, limit = (int(v) for v in (torch.randint(1, 3000, (1,), generator=g), torch.randint(1, 9, (1,), generator=g),
                                        torch.randint(9, 500, (1,), generator=g)))
        d = attn.flex_batch_chunk(B, H, limit)
        assert B % d == 0 and d * H <= limit
        assert all(B % e or e * H > limit for e in range(d + 1, B + 1))
    with pytest.raises(ValueError, match="heads"):
        attn.flex_batch_chunk(4, 100, 50)


@pytest.mark.parametrize("mode", ["pairwise", "density"])
def test_flex_runner_in_chunks_matches_eager(monkeypatch, mode, rng_seed):
    """The uncompiled Flex path, cut into batch chunks and forced off its decoding kernel (short
    queries), computes the same attention as the eager formula."""
    case = attn.Case("tiny", B=6, H=2, Nq=5, Nk=7, D=16, Dk=4)
    inp, params = attn.make_inputs(case, mode, torch.float32, device="cpu", requires_grad=False, seed=rng_seed)
    monkeypatch.setattr(attn, "FLEX_GRID_LIMIT", 4)  # 6 x 2 > 4: three calls of 2 x 2
    with torch.no_grad():
        out = attn.run_flex(inp, params, mode, compiled=False)
        ref = attn.run_eager(inp, params, mode)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_docs_tables_match_committed_reports():
    figures = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        assert report.render_docs(text, ROOT, figures) == text, f"{page.name}: a generated table is stale " \
                                                               "(python -m benchmarks.report docs)"
    for png, img in figures.items():
        assert report._same_image(png, img), f"{png.name}: a generated figure is stale (python -m benchmarks.report docs)"
    assert "<!-- report: rasterize " in (ROOT / "docs" / "performance.md").read_text()
    assert "<!-- report: repro_table1 " in (ROOT / "docs" / "experiments.md").read_text()


def test_docs_block_is_rebuilt_from_its_report(tmp_path):
    rep = json.loads((ROOT / "benchmarks/results/rasterize_recheck_NVIDIA_H100_80GB_HBM3.json").read_text())
    rep["cases"]["4d"]["one_launch"]["ours_fwd+bwd_ms"] = 123.456
    (tmp_path / "r.json").write_text(json.dumps(rep))
    text = "intro\n<!-- report: rasterize_brief r.json -->\nstale\n<!-- end report -->\nafter\n"
    new = report.render_docs(text, tmp_path)
    assert "stale" not in new and "| 4d | 123.46 |" in new and new.endswith("<!-- end report -->\nafter\n")
    with pytest.raises(ValueError, match="unknown report kind"):
        report.render_docs("<!-- report: nope r.json -->\n<!-- end report -->", tmp_path)


def test_merge_and_compare(tmp_path, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    a = {"gpu": "X", "cases": {"c1": {"ours_fwd_ms": 1.0 + torch.rand((), generator=g).item(), "ratio_fwd": 0.9,
                                      "peak_mem_mb": 3.0}},
         "attn": [{"case": "s", "mode": "pairwise", "methods": {"ours": {"ms_fwd": 2.0, "tflops_fwd": 9.0}}}]}
    (tmp_path / "hexplane.json").write_text(json.dumps(a))
    (tmp_path / "parts.json").write_text(json.dumps({"hexplane": {"returncode": 0, "seconds": 1.0}}))
    (tmp_path / "gpu_report_X.json").write_text("{}")
    merged = report.merge(tmp_path, "X")
    assert merged["hexplane"] == a and merged["parts"]["hexplane"]["returncode"] == 0
    assert "gpu_report_X" not in merged and "parts.json" not in merged
    b = json.loads(json.dumps(a))
    b["cases"]["c1"]["ours_fwd_ms"] *= 1.08
    b["attn"][0]["methods"]["ours"]["ms_fwd"] *= 1.01
    rows, off = report.compare(a, b, 0.05)
    assert off == 1 and {r[0] for r in rows} == {"cases/c1/ours_fwd_ms", "attn/s/pairwise/methods/ours/ms_fwd"}
    flagged = [r for r in rows if r[4]]
    assert flagged[0][0] == "cases/c1/ours_fwd_ms" and math.isclose(flagged[0][3], 1.08)
    assert report.compare(a, a, 0.05)[1] == 0
