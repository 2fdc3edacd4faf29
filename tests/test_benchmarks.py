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
    """``[1, H, W]`` pixels on a compositing decision (found in float64): there float32 and float64
    renders may rightly differ by a whole splat (a real flip, not rounding)."""
    from orster4d.ops.rasterize import reference

    m, q, s, o, _, vm, K, res = scene
    d = [x.double() for x in (m, q, s, o, vm, K)]
    radii, means2d, depths, conics = reference.project(d[0][None], d[1][None], d[2][None], d[4][None, None],
                                                       d[5][None, None], res, res)
    return reference.near_decision_pixels(means2d, conics, d[3][None], depths, radii, res, res)[0]


@pytest.fixture
def scene(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    res = 80
    m, q, s, o, c = rc.random_gaussians(300, generator=g, device="cpu")
    vm, K = rc.camera(res, 360 * torch.rand((), generator=g).item(), device="cpu")
    return m, q, s * 8, o, c, vm, K, res  # splats of a few pixels cover the small image


def test_image_criterion_accepts_float32_noise_and_decision_flips(scene, rng_seed):
    ref = _render(scene, torch.float64)
    img = _render(scene, torch.float32)
    on_decision = _decision_pixels(scene)
    # a small image of few splats has a larger share of decision pixels than a benchmark render:
    # allow up to 10% of them to be excused here
    share = on_decision.float().mean().item()
    assert share < 0.1
    res = rc.image_agreement(img, ref, on_decision, max_excused_fraction=0.1)
    assert res["image_ok"], res
    assert res["image_max_abs_err_off_decision"] < 1e-5  # float32 vs float64 alone
    assert res["image_decision_pixels"] == int(on_decision.sum())
    flipped = img.clone()  # decision pixels gain a faint splat, as where a 1/255 decision flips
    flipped[on_decision] += 3.9e-3
    assert rc.image_agreement(flipped, ref, on_decision, max_excused_fraction=0.1)["image_ok"]
    g = torch.Generator().manual_seed(rng_seed)
    off = (~on_decision[0]).nonzero()
    y, x = (int(v) for v in off[torch.randint(0, len(off), (1,), generator=g)][0])
    flipped[0, y, x] += 3.9e-3  # the same change off every decision is an error
    assert not rc.image_agreement(flipped, ref, on_decision, max_excused_fraction=0.1)["image_ok"]
    flipped = img.clone()
    flipped[on_decision] += 3.9e-3
    too_many = rc.image_agreement(flipped, ref, on_decision, max_excused_fraction=0.5 * share)
    assert too_many["image_excused_pixels"] == int(on_decision.sum())
    assert not too_many["image_ok"]  # too many pixels excused: the check would test little


def test_image_criterion_rejects_convention_errors(scene):
    ref = _render(scene, torch.float64)
    on_decision = _decision_pixels(scene)

    def check(img):
        return rc.image_agreement(img, ref, on_decision, max_excused_fraction=0.1)

    shifted = check(_render(scene, torch.float32, cx_shift=0.5))  # half a pixel
    assert not shifted["image_ok"] and shifted["image_max_abs_err_off_decision"] > 1e-2
    assert not check(_render(scene, torch.float32).flip(-3))["image_ok"]  # image y axis flipped
    assert not check(_render(scene, torch.float32).transpose(-3, -2))["image_ok"]  # x and y swapped
    biased = check((ref + 5e-4).float())  # below the per-pixel bound everywhere
    assert biased["image_max_abs_err_off_decision"] < 1e-3 and not biased["image_ok"]
    with pytest.raises(ValueError, match="share a shape"):
        rc.image_agreement(ref[..., :2], ref[..., :2], on_decision)
    with pytest.raises(ValueError, match="decision must be a bool mask"):
        rc.image_agreement(ref, ref, on_decision[0])


def test_decision_pixels_of_a_benchmark_scene_match_the_dense_search(rng_seed):
    """benchmarks.rasterize.decision_pixels (tile runs, chunked) flags what the dense search flags."""
    from orster4d.ops.rasterize import reference

    g = torch.Generator().manual_seed(rng_seed)
    res = 48
    m, q, s, o, c = rc.random_gaussians(400, 2, generator=g, device="cpu")
    vms, Ks = zip(*(rc.camera(res, a, device="cpu") for a in (20.0, 140.0)))
    scene = rc.Scene(m, q, s * 8, o, c, torch.stack(vms)[:, None], torch.stack(Ks)[:, None], res, res)
    tiled = rc.decision_pixels(scene)
    d = [x.double() for x in (m, q, s * 8, o)]
    radii, means2d, depths, conics = reference.project(*d[:3], scene.viewmats.double(), scene.Ks.double(), res, res)
    dense = reference.near_decision_pixels(means2d, conics, d[3], depths, radii, res, res,
                                           tie_weight=rc.DECISION_TIE_WEIGHT)
    assert tiled.shape == (2, 1, res, res)
    assert torch.equal(tiled, dense)


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


def test_flex_pack_count_and_packing_round_trip(rng_seed):
    assert attn.flex_pack_count(8 * 64 * 64, 16, 128) == 8  # temporal_16: 128 queries per packed sequence
    assert attn.flex_pack_count(8 * 64 * 64, 24, 128) == 16  # temporal_24: 384, three whole blocks
    assert attn.flex_pack_count(3, 24, 128) == 3  # never more than the batch
    with pytest.raises(ValueError, match="query length"):
        attn.flex_pack_count(4, 0, 128)
    x = torch.randn(12, 3, 5, 7, generator=torch.Generator().manual_seed(rng_seed))
    packed = attn._pack(x, 4)
    assert packed.shape == (3, 3, 20, 7)
    torch.testing.assert_close(packed[1, 2, 5:10], x[5, 2])  # batch 4 * 1 + 1, head 2: the second slot
    assert torch.equal(attn._unpack(packed, 4), x)


@pytest.mark.parametrize("mode", ["pairwise", "density"])
def test_flex_runner_packed_and_in_chunks_matches_eager(monkeypatch, mode, rng_seed):
    """The uncompiled Flex path on short sequences, packed under a block-diagonal mask (the batch
    padded to a multiple of the pack count), cut into batch chunks and forced off its decoding
    kernel, computes the same attention as the eager formula."""
    case = attn.Case("tiny", B=40, H=2, Nq=5, Nk=7, D=16, Dk=4)
    inp, params = attn.make_inputs(case, mode, torch.float32, device="cpu", requires_grad=False, seed=rng_seed)
    monkeypatch.setattr(attn, "FLEX_BLOCK", 16)  # 16 sequences per pack: 40 padded to 48, 3 packs of 80 queries
    monkeypatch.setattr(attn, "FLEX_GRID_LIMIT", 4)  # 3 x 2 > 4: three calls of 1 x 2
    calls = []
    real = attn._pack
    monkeypatch.setattr(attn, "_pack", lambda x, P: calls.append(P) or real(x, P))
    with torch.no_grad():
        out = attn.run_flex(inp, params, mode, compiled=False)
        ref = attn.run_eager(inp, params, mode)
    assert calls and set(calls) == {16}
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


def test_construct_report_runs_on_the_demo_models_prior_tokens(tmp_path):
    """benchmarks.construct --priors-model: the shipped model's prior tokens of the scene drive an
    ST-HexPlane run beside the plain one, fitted here to the single orbital video (CPU, tiny)."""
    from benchmarks import construct as bc
    from orster4d.generation.demo import default_demo_folder

    out = tmp_path / "r.json"
    assert bc.main(["--json", str(out), "--device", "cpu", "--families", "hopper", "--backends", "fused",
                    "--size", "32", "--frames", "4", "--views", "2", "--coarse-iters", "4", "--fine-iters", "2",
                    "--priors-model", str(default_demo_folder()), "--gen-steps", "1", "--input", "orbital",
                    "--workdir", str(tmp_path / "w")]) == 0
    rep = json.loads(out.read_text())
    entry = rep["objects"]["hopper"]
    assert rep["input"] == "orbital" and {"fused", "fused+priors[both]"} <= set(entry)
    priors = torch.load(tmp_path / "w" / "hopper-priors" / "gen" / "priors.pt")
    assert set(priors) == {"spatial", "temporal"} and priors["spatial"].dim() == 2
    assert all(math.isfinite(entry[k]["heldout"]["psnr"]) for k in ("fused", "fused+priors[both]"))
    # --priors-only: the same scene (reused from the work folder), the priors' run alone
    out2 = tmp_path / "r2.json"
    assert bc.main(["--json", str(out2), "--device", "cpu", "--families", "hopper", "--backends", "fused",
                    "--size", "32", "--frames", "4", "--views", "2", "--coarse-iters", "4", "--fine-iters", "2",
                    "--priors-model", str(default_demo_folder()), "--gen-steps", "1", "--input", "orbital",
                    "--priors-only", "--workdir", str(tmp_path / "w")]) == 0
    entry2 = json.loads(out2.read_text())["objects"]["hopper"]
    assert {k for k, v in entry2.items() if isinstance(v, dict)} == {"fused+priors[both]"}


def test_attention_table_adds_the_frozen_column_only_when_measured():
    """Reports before ``ours_frozen`` existed keep their columns; a report with it gets one more."""
    case = {"case": "c", "mode": "pairwise", "methods": {"ours": {"ms_fwd": 1.0, "ms_fwd_bwd": 3.0}}}
    rep = {"gpu": "g", "torch": "t", "triton": "tr", "cases": [case]}
    assert "ours_frozen" not in report.table_from(rep, "attention")
    case["methods"]["ours_frozen"] = {"ms_fwd": 0.5, "ms_fwd_bwd": 2.0}
    lines = report.table_from(rep, "attention").splitlines()
    assert "ours_frozen fwd / fwd+bwd (ms)" in lines[2] and "| 0.50 / 2.00 |" in lines[4]
    assert set(attn.RUNNERS) == set(attn.METHODS)


def test_host_time_and_step_split_tables():
    """The docs' tables of the host-time and step-split reports: one row per call or case."""
    from benchmarks import report

    host = {"device": "cuda", "reps": 10, "rows": {"rasterize_fwd": 344.78, "project_fwd_grad": 24.4}}
    lines = report.table_from(host, "host_time").splitlines()
    assert len(lines) == 4 and "| rasterize_fwd | 344.8 |" in lines
    split = {"cases": {"c": {"wall_ms": 3.0, "device_ms": 1.0, "host_gap_ms": 2.0, "by_op": {
        "autograd::engine::evaluate_function: torch::autograd::CppNode<orster4d::RasterizeFn>": {"ms": 0.5},
        "orster4d::rasterize_fwd": {"ms": 0.25}, "autograd::engine::evaluate_function: AddmmBackward0": {"ms": 0.1},
        "aten::sum": {"ms": 0.01}}}}}
    row = report.table_from(split, "step_split").splitlines()[2]
    assert row == "| c | 3.00 | 1.00 | 2.00 | RasterizeFn (backward) 0.500; rasterize_fwd 0.250; Addmm (backward) 0.100 |"


def test_step_split_attributes_every_op_of_a_call(tmp_path):
    """benchmarks.step_split on the CPU: each case's categories add up to its profiled time, and
    the rasterizer call's time sits in the rasterizer's ops, the construct step's in all five."""
    from benchmarks import step_split as ss

    out = tmp_path / "s.json"
    assert ss.main(["--json", str(out), "--device", "cpu", "--sizes", "2k@48", "--no-4d", "--construct-size", "24",
                    "--construct-gaussians", "300", "--steps", "1"]) == 0
    rep = json.loads(out.read_text())
    assert set(rep["cases"]) == {"rasterize 2k@48", "construct step 24px"}
    for case in rep["cases"].values():
        assert math.isclose(sum(case["by_category"].values()), case["device_ms"], rel_tol=1e-9)
        assert math.isclose(sum(v["ms"] for v in case["by_op"].values()), case["device_ms"], rel_tol=1e-3)
        assert 0 < case["device_ms"] <= case["wall_ms"] * 1.5
    ras, step = rep["cases"]["rasterize 2k@48"], rep["cases"]["construct step 24px"]
    assert ras["by_category"]["rasterizer"] > 0.5 * ras["device_ms"] and ras["by_category"]["hexplane"] == 0
    assert any(k.startswith("orster4d::intersect_tiles") for k in ras["by_op"])
    assert all(step["by_category"][c] > 0 for c in ss.CATEGORIES)
    assert ss.category(["aten::mm", "autograd::engine::evaluate_function: MmBackward0"]) == "mlp"
    assert ss.category(["aten::zeros_like", "orster4d::hexplane_bwd"]) == "hexplane"
    assert ss.category(["aten::add_", "Optimizer.step#Adam.step"]) == "optimiser"


def test_host_time_reports_every_row_on_the_cpu(tmp_path):
    """benchmarks.host_time on the CPU: every row is a positive time and a full render costs more
    than its input check."""
    from benchmarks import host_time as ht

    out = tmp_path / "h.json"
    assert ht.main(["--json", str(out), "--device", "cpu", "--reps", "20", "--label", "test"]) == 0
    rep = json.loads(out.read_text())
    rows = rep["rows"]
    assert set(rows) == {"rasterize_fwd", "rasterize_fwd_bwd", "rasterize_check_inputs", "project_fwd_grad",
                         "project_fwd_nograd", "hexplane_fwd_bwd"}
    assert all(v > 0 and math.isfinite(v) for v in rows.values())
    assert rows["rasterize_fwd"] > rows["rasterize_check_inputs"] and rep["label"] == "test"


def test_trace_timeline_on_a_hand_built_trace(tmp_path):
    """benchmarks.trace_timeline on a two-call trace whose answers are worked out by hand: windows
    cut at the device synchronisations, the GPU's busy time as a union, launches matched to the op
    that made them, and the backward thread's ops listed after the Python thread's."""
    import gzip
    from benchmarks import trace_timeline as tt

    def X(name, cat, ts, dur, tid=1, corr=None):
        e = {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "tid": tid, "pid": 1}
        if corr is not None:
            e["args"] = {"correlation": corr}
        return e

    events = []
    for i, t0 in enumerate((0.0, 1000.0)):  # two calls of 1000 us, cut by syncs at t0 - 10
        c = 10 * i
        events += [
            X("cudaDeviceSynchronize", "cuda_runtime", t0 - 10, 10),
            X("aten::check", "cpu_op", t0 + 0, 100),
            X("cudaLaunchKernel", "cuda_runtime", t0 + 50, 10, corr=c + 1),
            X("orster4d::project_fwd", "cpu_op", t0 + 200, 100),
            X("cudaLaunchKernel", "cuda_runtime", t0 + 250, 10, corr=c + 2),
            X("cudaMemsetAsync", "cuda_runtime", t0 + 270, 5, corr=c + 3),
            X("backward_node", "cpu_op", t0 + 500, 300, tid=2),
            X("cudaLaunchKernel", "cuda_runtime", t0 + 510, 10, tid=2, corr=c + 4),
            # device: 20 us, then 100 + 50 us overlapping by 30 (union 120), then 200 us
            X("fill_kernel", "kernel", t0 + 60, 20, tid=7, corr=c + 1),
            X("project_fwd_kernel", "kernel", t0 + 300, 100, tid=7, corr=c + 2),
            X("Memset (Device)", "gpu_memset", t0 + 370, 50, tid=7, corr=c + 3),
            X("bwd_kernel", "kernel", t0 + 600, 200, tid=7, corr=c + 4),
        ]
    events.append(X("cudaDeviceSynchronize", "cuda_runtime", 1990.0, 10))
    path = tmp_path / "t.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events[::-1]}, f)  # out of order on purpose
    rep = tt.timeline(tt.load(str(path)))
    assert rep["calls"] == 2 and rep["host_ms"] == 0.99  # 1000 us less the 10 us sync
    assert rep["device_busy_ms"] == 0.34 and rep["device_idle_ms"] == 0.65  # 20 + 120 + 200 us
    assert rep["first_kernel_ms"] == 0.3 and rep["launches"] == 4
    assert rep["api"]["cudaLaunchKernel"] == {"calls": 3, "host_us": 30.0}
    ops = [(r["thread"], r["op"], r["launches"], r["device_ms"]) for r in rep["host_ops"]]
    assert ops == [("python", "aten::check", 1, 0.02), ("python", "orster4d::project_fwd", 2, 0.15),
                   ("thread 1", "backward_node", 1, 0.2)]
    with pytest.raises(ValueError, match="cudaDeviceSynchronize"):
        tt.timeline(events[:3])


def test_construct_runs_table_lists_every_run_with_its_kinds():
    """The docs' table of a raw benchmarks.construct report: one row per object and run, the
    held-out kinds where the report has them and '-' where it does not (orbital input)."""
    from benchmarks import report

    def run(psnr, kinds):
        return {"wall_seconds": 12.4, "num_gaussians": 900, "train": {"psnr": 30.0},
                "heldout": {"psnr": psnr, "ssim": 0.91234, "psnr_by_kind": kinds}}

    rep = {"size": 96, "frames": 16, "coarse_iters": 600, "fine_iters": 300, "device": "cpu (2 threads)",
           "input": "multiview", "objects": {"hopper": {
               "scene_seconds": 3.0, "fused": run(25.0, {"novel_time": {"psnr": 24.5}}),
               "fused+priors[both]": run(25.5, {})}}}
    text = report.table_from(rep, "construct_runs")
    assert text.startswith("input multiview, 96 px, 16 frames, 600 + 300 iterations, cpu (2 threads)")
    rows = text.splitlines()[4:]
    assert rows == ["| hopper | fused | 12 | 900 | 30.00 | 25.00 | 0.912 | - | 24.50 | - |",
                    "| hopper | fused+priors[both] | 12 | 900 | 30.00 | 25.50 | 0.912 | - | - | - |"]


def test_attention_precision_emulation_separates_the_roundings():
    """benchmarks.attention_precision at small shapes: each bf16 rounding the old kernels made moves
    the scalars' gradient by far more than the split kernels' arithmetic does (measured: single
    roundings 8e-4 to 1e-2 of the scale, the split about 1e-5)."""
    from benchmarks.attention_precision import VARIANTS, scalar_grad_errors

    for seed in range(3):
        err = scalar_grad_errors(seed, Nq=128, Nk=64)
        assert set(err) == set(VARIANTS)
        assert err["split"] < 1e-4, (seed, err)
        assert min(err["pf"], err["P"], err["pf+P"]) > 10 * err["split"], (seed, err)
