"""``orster4d-construct`` end to end on a tiny procedural scene (CPU): quality goes up, every output
file is written and reads back, resume continues from the checkpoint, bad input stops early."""
import json
import shutil

import pytest
import torch

from orster4d.cli.construct import main as cli_main
from orster4d.recon import CHECKPOINT, ConstructConfig, InputError, construct, deform
from orster4d.io.asset import read_asset
from orster4d.data import generate_scene
from orster4d.recon.deformation import DeformationField
from orster4d.recon.gaussians import GaussianModel
from orster4d.io import mp4_available, read_ply, read_video_frame_count

SIZE, FRAMES, VIEWS = 32, 8, 3
# The C++ CPU rasterizer and the fused CPU HexPlane (JIT-built); the ST-HexPlane test takes the
# grid_sample path.
RB = "cpu"
HB = "fused"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    generate_scene(root, "waver", seed=5, num_frames=FRAMES, width=SIZE, height=SIZE, num_views=VIEWS,
                   num_gaussians=400, radius=2.6, backend=RB)
    return root


def _cfg(scene, out, **kw):
    cfg = ConstructConfig(input=str(scene / "multiview"), output=str(out), static=str(scene / "static"),
                          coarse_iters=100, fine_iters=100, init_points=300, max_sh_degree=1, sh_up_every=40,
                          coarse_batch=2, hexplane_channels=4, hexplane_resolution=[8, 4], mlp_width=16,
                          checkpoint_every=40, progress=False, eval_max_frames=8,
                          rasterizer_backend=RB, hexplane_backend=HB, scale_schedule=False)
    cfg.densify.start, cfg.densify.interval, cfg.densify.stop = 20, 20, 80
    cfg.densify.max_gaussians = 600
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _interrupted(cfg, at):
    """Run ``cfg`` until iteration ``at``, then stop it as Ctrl-C does (a checkpoint is written)."""
    def interrupt(it, logs):
        if it == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        construct(cfg, callback=interrupt, log=lambda s: None)


@pytest.fixture(scope="module")
def asset(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("asset") / "a"
    logs = []
    metrics = construct(_cfg(scene, out), log=logs.append)
    return out, metrics, logs


def test_construct_improves_and_writes_every_output(asset):
    out, metrics, logs = asset
    print("train PSNR", metrics["initial_train_psnr"], "->", metrics["train"]["psnr"], "held-out", metrics["heldout"])
    assert metrics["train"]["psnr"] > metrics["initial_train_psnr"] + 3.0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["train"]["psnr"] == metrics["train"]["psnr"]
    held = on_disk["heldout"]
    assert held is not None and held["frames"] > 0 and 0 < held["ssim"] <= 1 and held["psnr"] > 0
    kinds = held["psnr_by_kind"]  # every held-out frame is a novel view, a novel time, or both
    assert set(kinds) == {"novel_view", "novel_time", "novel_view_and_time"}
    assert sum(k["frames"] for k in kinds.values()) == held["frames"]
    assert kinds["novel_time"]["frames"] > 0 and kinds["novel_time"]["psnr"] > 0
    # LPIPS: either measured, or reported unavailable with a reason (also said at start)
    if on_disk["lpips_available"]:
        assert held["lpips"] is not None
    else:
        assert held["lpips"] is None and "LPIPS" in on_disk["lpips_unavailable_reason"]
        assert any("LPIPS term off" in line for line in logs)
    for name in ("deformation/config.json", "deformation/diffusion_pytorch_model.safetensors", "config.json", "trajectory.json", "turntable.gif", CHECKPOINT,
                 "turntable_trajectory.json",
                 "gaussians/canonical.ply", "gaussians/times.json"):
        assert (out / name).is_file(), name
    times = json.loads((out / "gaussians" / "times.json").read_text())
    assert len(times) == FRAMES
    plys = sorted((out / "gaussians").glob("t_*.ply"))
    assert len(plys) == FRAMES


def test_ply_reads_back_to_the_same_gaussians(asset):
    out, metrics, _ = asset
    ck = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    g = GaussianModel.from_state(ck["gaussians"])
    canon = read_ply(out / "gaussians" / "canonical.ply")
    torch.testing.assert_close(canon["means"], g.means.detach())
    torch.testing.assert_close(canon["quats"], g.quats.detach())
    torch.testing.assert_close(canon["log_scales"], g.log_scales.detach())
    torch.testing.assert_close(canon["logit_opacities"], g.logit_opacities.detach())
    torch.testing.assert_close(canon["sh"], g.sh.detach())
    field = DeformationField.from_pretrained(out / "deformation")
    times = json.loads((out / "gaussians" / "times.json").read_text())
    k = len(times) - 1
    with torch.no_grad():
        m, q, s = deform(g, field, torch.tensor([times[k]]))
    tk = read_ply(out / "gaussians" / f"t_{k:04d}.ply")
    torch.testing.assert_close(tk["means"], m[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tk["quats"], q[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tk["log_scales"], s[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tk["means"], canon["means"])  # the field deforms


def test_read_asset_reads_the_field_folder_and_older_deformation_pt(asset, tmp_path):
    out, _, _ = asset
    times = json.loads((out / "gaussians" / "times.json").read_text())
    k = len(times) // 2
    tk = read_ply(out / "gaussians" / f"t_{k:04d}.ply")
    # an older asset: the field as deformation.pt (bounds in the state dict) and its settings in config.json
    old = tmp_path / "old"
    shutil.copytree(out, old)
    field = DeformationField.from_pretrained(old / "deformation")
    shutil.rmtree(old / "deformation")
    sd = dict(field.state_dict(), aabb=field.aabb.clone())
    torch.save(sd, old / "deformation.pt")
    cfg = json.loads((old / "config.json").read_text())
    cfg["deformation"] = {k2: v for k2, v in cfg["deformation"].items()
                          if k2 in ("channels", "resolution", "multires", "width", "backend", "prior_dims",
                                    "attn_dim", "attention_backend")}
    (old / "config.json").write_text(json.dumps(cfg))
    for folder in (out, old):
        a = read_asset(folder)
        g, f, t = a.canonical(), a.deformation_field(), a.times
        torch.testing.assert_close(t, torch.tensor(times))
        with torch.no_grad():
            m, q, s = deform(g, f, t[k:k + 1])
        torch.testing.assert_close(m[0], tk["means"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(s[0], tk["log_scales"], atol=1e-5, rtol=1e-5)
    shutil.rmtree(old / "gaussians")
    with pytest.raises(FileNotFoundError, match="canonical.ply"):
        read_asset(old)


def test_turntable_has_the_expected_frame_count(asset):
    out, metrics, _ = asset
    assert metrics["turntable_frames"] == FRAMES
    assert read_video_frame_count(out / "turntable.gif") == FRAMES
    ok, why = mp4_available()
    if ok:
        assert read_video_frame_count(out / "turntable.mp4") == FRAMES
    else:
        assert metrics["mp4"] is None and metrics["mp4_unavailable_reason"] == why


def test_interrupt_leaves_a_checkpoint_and_resume_continues(scene, tmp_path):
    out = tmp_path / "r"
    cfg = _cfg(scene, out, coarse_iters=30, fine_iters=30, checkpoint_every=1000)
    stop_at = 40
    _interrupted(cfg, stop_at)
    ck = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    assert ck["iteration"] == stop_at and ck["field"] is not None
    seen = []
    metrics = construct(_cfg(scene, out, coarse_iters=30, fine_iters=30), resume=True,
                        callback=lambda it, logs: seen.append(it), log=lambda s: None)
    assert seen[0] == stop_at + 1 and seen[-1] == 60
    assert metrics["iterations"] == 60
    assert (out / "metrics.json").is_file()
    # the resumed run started from the saved Gaussians, not a fresh initialisation
    assert metrics["train"]["psnr"] > metrics["initial_train_psnr"]


def _bad(scene, out, match, **kw):
    with pytest.raises(InputError, match=match):
        construct(_cfg(scene, out, **kw), log=lambda s: None)
    assert not (out / CHECKPOINT).exists()


def test_bad_inputs_stop_before_any_work(scene, tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(scene, out, r"empty.*empty", input=str(empty))
    assert not out.exists()
    # missing and unreadable frames
    for case, action, match in (("missing", "unlink", "r_0003.png: frame file is missing"),
                                ("broken", "garble", "r_0003.png: cannot read image")):
        d = tmp_path / case
        shutil.copytree(scene / "orbital", d)
        f = d / "images" / "r_0003.png"
        f.unlink() if action == "unlink" else f.write_bytes(b"\x89PNG garbage")
        _bad(scene, out, match, input=str(d))
    # trajectory vs frame count
    d = tmp_path / "traj"
    shutil.copytree(scene / "orbital", d)
    t = json.loads((d / "trajectory.json").read_text())
    t["num_frames"] += 1
    (d / "trajectory.json").write_text(json.dumps(t))
    _bad(scene, out, rf"trajectory.json.*num_frames={FRAMES + 1}.*{FRAMES}", input=str(d))
    # static video at another resolution
    other = tmp_path / "other"
    generate_scene(other, "ball", seed=1, num_frames=3, width=SIZE // 2, height=SIZE // 2, num_views=2,
                   num_gaussians=60, backend=RB)
    _bad(scene, out, r"static video resolution 16x16 differs", static=str(other / "static"))
    # prior file of the wrong shape / unreadable
    p = tmp_path / "priors.pt"
    torch.save({"spatial": torch.randn(4, 8), "temporal": torch.randn(4)}, p)
    _bad(scene, out, r"priors.pt: 'temporal' must be .*\[N, D\]", priors=str(p))
    p.write_bytes(b"nope")
    _bad(scene, out, r"priors.pt: cannot read prior tokens", priors=str(p))
    _bad(scene, out, r"hexplane_resolution must be", hexplane_resolution=[64, 1])
    assert not out.exists()


def test_existing_output_is_never_overwritten(scene, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _bad(scene, out, "exists.*--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    rc = cli_main([str(scene / "multiview"), "-o", str(out), "--no-progress"])
    assert rc == 2 and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="no checkpoint"):
        construct(_cfg(scene, tmp_path / "nothing"), resume=True)


def test_st_hexplane_priors_change_the_fitted_field(scene, tmp_path, one_thread):
    """Same seed, same data: two runs with the same prior tokens fit the same field, a run with
    other tokens (same shapes) another one; the tokens are saved with the field's weights."""
    tok = torch.Generator().manual_seed(3)
    token_sets = {"a": {"spatial": torch.randn(10, 6, generator=tok),
                        "temporal": torch.randn(FRAMES, 5, generator=tok)}}
    token_sets["b"] = {k: torch.randn(v.shape, generator=tok) for k, v in token_sets["a"].items()}
    fields = {}
    for name, tokens in (("a", "a"), ("a_again", "a"), ("b", "b")):
        p = tmp_path / f"priors_{tokens}.pt"
        torch.save(token_sets[tokens], p)
        out = tmp_path / name
        construct(_cfg(scene, out, priors=str(p), coarse_iters=6, fine_iters=8, hexplane_backend="grid_sample",
                       exports=[], tensorboard=False, eval_max_frames=1), log=lambda s: None)
        fields[name] = DeformationField.from_pretrained(out / "deformation").eval()
    sd = fields["a"].state_dict()
    assert torch.equal(sd["prior_spatial"], token_sets["a"]["spatial"])
    assert torch.equal(sd["prior_temporal"], token_sets["a"]["temporal"])
    # the fitted offsets at fixed probe points inside the field's bounds, at every training time
    lo, hi = fields["a"].bounds
    means = lo + (hi - lo) * torch.rand(200, 3, generator=torch.Generator().manual_seed(0))
    times = torch.linspace(0, 1, FRAMES)
    with torch.no_grad():
        dp = {name: f(means, times)[0] for name, f in fields.items()}
    assert torch.equal(dp["a"], dp["a_again"])  # deterministic: only the tokens may differ
    scale = dp["a"].abs().mean()
    assert scale > 0  # the field has moved off the identity
    # the feature layer's prior columns start at zero, so in 8 fine steps the tokens' share of the
    # offsets is small (about 1e-3 of them); with tokens that do not reach the field it would be 0
    h_dim = fields["a"].hexplane.out_dim
    assert float(fields["a"].feature_out.weight[:, h_dim:].abs().max()) > 0  # trained off zero
    assert (dp["a"] - dp["b"]).abs().mean() > 1e-4 * scale, ((dp["a"] - dp["b"]).abs().mean(), scale)


def test_motion_curvature_prior_trains_a_different_field(scene, tmp_path, one_thread):
    """Same seed: two runs without the prior give the same field, a run with it another one; the
    weight is saved with the run."""
    fields = {}
    for name, w in (("off", 0.0), ("off_again", 0.0), ("on", 5.0)):
        out = tmp_path / name
        construct(_cfg(scene, out, coarse_iters=6, fine_iters=8, motion_curvature=w), log=lambda s: None)
        fields[name] = DeformationField.from_pretrained(out / "deformation").state_dict()
        assert torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)["config"]["motion_curvature"] == w
    assert all(torch.equal(fields["off"][k], fields["off_again"][k]) for k in fields["off"])
    assert any(not torch.equal(fields["off"][k], fields["on"][k]) for k in fields["off"])


def test_cli_demo_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli_main(["--demo", "-o", str(out), "--size", "16", "--frames", "4", "--views", "2",
                   "--coarse-iters", "4", "--fine-iters", "4", "--init-points", "80", "--sh-degree", "0",
                   "--no-progress", "--family", "bird", "--rasterizer-backend", RB,
                   "--hexplane-backend", HB])
    assert rc == 0
    assert (out / "metrics.json").is_file() and (tmp_path / "demo-scene" / "multiview" / "transforms.json").is_file()
    assert "asset written to" in capsys.readouterr().out
    rc = cli_main(["--demo", "-o", str(out), "--size", "16", "--no-progress"])
    assert rc == 2  # exists, no --overwrite


def test_orbital_input_uses_reference_video_and_eval_data(scene, tmp_path):
    """The paper's setting: an orbital video plus its reference-view video (L_hex), judged on the
    held-out views and times of separate multi-view ground truth."""
    out = tmp_path / "orb"
    metrics = construct(_cfg(scene, out, input=str(scene / "orbital"), eval_data=str(scene / "multiview"),
                             coarse_iters=8, fine_iters=8), log=lambda s: None)
    assert metrics["l_hex"] is True
    gt = json.loads((scene / "multiview" / "transforms.json").read_text())
    n_test = sum(1 for f in gt["frames"] if f["split"] == "test")
    assert metrics["heldout"]["frames"] == min(n_test, 8)
    traj = json.loads((out / "trajectory.json").read_text())
    assert traj == json.loads((scene / "orbital" / "trajectory.json").read_text())


def test_lpips_term_and_metric_with_local_weights(scene, tmp_path):
    import torchvision

    feats = torchvision.models.alexnet(weights=None).features
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, tmp_path / "alex.pth")
    logs = []
    metrics = construct(_cfg(scene, tmp_path / "lp", lpips_net="alex", lpips_weights=str(tmp_path / "alex.pth"),
                             coarse_iters=6, fine_iters=6), log=logs.append)
    assert metrics["lpips_available"] and metrics["lpips_unavailable_reason"] is None
    assert isinstance(metrics["heldout"]["lpips"], float) and metrics["heldout"]["lpips"] >= 0
    assert not any("LPIPS term off" in line for line in logs)
    ck = torch.load(tmp_path / "lp" / CHECKPOINT, map_location="cpu", weights_only=False)
    assert any("lpips" in h for h in ck["history"])


@pytest.mark.parametrize("flags", [["--coarse-iters", "-5", "--fine-iters", "-5"], ["--coarse-iters", "0"],
                                   ["--fine-iters", "0"], ["--init-points", "0"], ["--lambda-hex", "-1"],
                                   ["--lambda-l1", "nan"], ["--sh-degree", "4"], ["--background", "2", "1", "1"],
                                   ["--hexplane-resolution", "64", "1"], ["--views-per-time", "0"]])
def test_cli_refuses_out_of_range_numbers_at_parse_time(flags, capsys):
    from orster4d.cli.construct import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["in", "-o", "out"] + flags)
    assert e.value.code == 2
    assert flags[0] in capsys.readouterr().err
    args = build_parser().parse_args(["in", "-o", "out", "--skip-fine"])  # a deliberate skip is named
    assert args.skip_fine


# ------------------------------------------------------------------ viewer-ready outputs, logs, manifest
def test_construct_writes_viewer_ready_exports(asset):
    from orster4d.io.splatv import MAGIC

    out, metrics, _ = asset
    a = read_asset(out)
    assert a.num_frames == FRAMES
    for name in ("viewer.html", "viewer.js", "viewer_data.js", "asset.splat", "asset.splatv", "splatv_error.json",
                 "turntable.mp4"):
        assert (out / name).is_file(), name
    assert (out / "asset.splat").stat().st_size == 32 * a.num_gaussians
    assert int.from_bytes((out / "asset.splatv").read_bytes()[:4], "little") == MAGIC
    seq = sorted((out / "supersplat").glob("frame_*.ply"))
    assert [p.read_bytes() for p in seq] == [p.read_bytes() for p in a.paths]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["splatv_error"] == json.loads((out / "splatv_error.json").read_text())
    assert on_disk["splatv_error"]["segments"] == 1
    assert set(on_disk["exports"]) == {"viewer", "supersplat", "splat", "splatv"}
    assert on_disk["mp4"] == "turntable.mp4" and on_disk["mp4_unavailable_reason"] is None
    data = json.loads((out / "viewer_data.js").read_text()[len("window.ORSTER4D_ASSET = "):].rstrip().rstrip(";"))
    assert data["num_gaussians"] == a.num_gaussians and data["num_frames"] == FRAMES


def test_invisible_gaussians_are_pruned_before_export(asset):
    out, metrics, _ = asset
    for p in sorted((out / "gaussians").glob("*.ply")):
        assert float(torch.sigmoid(read_ply(p)["logit_opacities"]).min()) >= 0.005, p.name
    assert metrics["pruned_before_export"] >= 0


def test_prune_invisible_drops_exactly_the_faint_ones(rng_seed):
    from orster4d.recon.fit import prune_invisible
    from orster4d.recon.strategy import DefaultStrategy

    gen = torch.Generator().manual_seed(rng_seed)
    n = 50
    g = GaussianModel.from_points(torch.randn(n, 3, generator=gen), torch.rand(n, 3, generator=gen), 1)
    op = torch.rand(n, generator=gen) * 0.02  # about a quarter under 0.005
    with torch.no_grad():
        g.logit_opacities.copy_(torch.logit(op))
    opt = g.make_optimizer()
    state = DefaultStrategy.initialize_state(n, 1.0)
    state["count"] += torch.arange(n, dtype=torch.int32)
    keep = op >= 0.005
    means = g.means.detach()[keep].clone()
    assert prune_invisible(g, opt, state, 0.005) == int((~keep).sum()) > 0
    torch.testing.assert_close(g.means.detach(), means)
    assert torch.equal(state["count"], torch.arange(n, dtype=torch.int32)[keep])
    assert opt.param_groups[0]["params"][0] is g.means


def test_logs_tensorboard_jsonl_and_curves(asset):
    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics, _ = asset
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/total", "loss/l1", "loss/dep", "loss/hex", "psnr/train", "gaussians/count", "lr/means",
            "lr/grid", "lr/mlp"} <= tags, tags
    total = acc.Scalars("loss/total")
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e.step for e in total] == [rec["it"] for rec in lines] == list(range(10, 201, 10))
    assert [e.value for e in total] == pytest.approx([rec["loss"] for rec in lines], rel=1e-6)
    assert [e.value for e in acc.Scalars("gaussians/count")] == [rec["n"] for rec in lines]
    assert "preview" in acc.Tags()["images"]
    img = np.asarray(Image.open(out / "curves.png").convert("L"))
    assert img.shape[0] > 100 and img.std() > 5 and (img < 128).mean() > 0.005  # drawn, not blank


def test_manifest_lists_everything_construct_wrote(asset):
    from orster4d.recon.manifest import MANIFEST, foreign_entries, read_manifest

    out, _, _ = asset
    listed = read_manifest(out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert listed == on_disk and foreign_entries(out) == []
    assert {"metrics.json", CHECKPOINT, "curves.png", "log.jsonl", "viewer.html"} <= listed


def test_orbital_input_passes_its_prompt_to_condition_json(scene, tmp_path):
    out = tmp_path / "cond"
    construct(_cfg(scene, out, input=str(scene / "orbital"), coarse_iters=3, fine_iters=2, exports=[],
                   tensorboard=False), log=lambda s: None)
    prompt = json.loads((scene / "orbital" / "transforms.json").read_text())["prompt"]
    assert read_asset(out).meta == {"kind": "text", "prompt": prompt}
    assert not (out / "viewer.html").exists() and not (out / "asset.splat").exists()
    assert not (out / "tensorboard").exists() and (out / "log.jsonl").is_file()


# ------------------------------------------------------------------ schedules scale with the iteration counts
def test_schedules_scale_with_the_phase_lengths():
    from orster4d.recon.config import schedules

    paper = schedules(ConstructConfig(input="", output=""))
    assert paper.sh_up_every == 1000 and (paper.coarse.start, paper.coarse.stop, paper.coarse.interval) == (500, 4500, 100)
    assert paper.coarse.opacity_reset_interval == 3000 and (paper.fine.start, paper.fine.stop) == (500, 1800)
    quick = schedules(ConstructConfig(input="", output="", coarse_iters=600, fine_iters=300))
    assert quick.sh_up_every == 100  # three more SH bands within 600 iterations
    c, f = quick.coarse, quick.fine
    assert (c.start, c.stop, c.interval, c.opacity_reset_interval) == (50, 450, 10, 300)
    assert (f.start, f.stop, f.interval) == (50, 180, 10) and not f.opacity_reset
    assert sum(1 for s in range(1, 601) if c.start <= s < c.stop and s % c.interval == 0) == 40  # as 6k: 40 steps
    as_given = schedules(ConstructConfig(input="", output="", coarse_iters=600, fine_iters=300, scale_schedule=False))
    assert as_given.sh_up_every == 1000 and as_given.coarse.stop == 4500


def test_short_run_raises_the_sh_degree(scene, tmp_path):
    """A short run with the default (paper) schedule: scaled, the SH bands rise and f_rest is fitted."""
    out = tmp_path / "sh"
    cfg = ConstructConfig(input=str(scene / "multiview"), output=str(out), static=str(scene / "static"),
                          coarse_iters=60, fine_iters=30, init_points=150, max_sh_degree=3, coarse_batch=2,
                          hexplane_channels=4, hexplane_resolution=[8, 4], mlp_width=16, progress=False,
                          eval_max_frames=4, rasterizer_backend=RB, hexplane_backend=HB, exports=[], tensorboard=False)
    construct(cfg, log=lambda s: None)
    assert json.loads((out / "config.json").read_text())["sh_degree"] == 3
    rest = read_ply(out / "gaussians" / "t_0000.ply")["sh"][:, 1:]
    assert rest.shape[1] == 15 and float(rest.abs().max()) > 0
    sched = json.loads((out / "metrics.json").read_text())["schedule"]
    assert sched["sh_up_every"] == 10 and sched["coarse_densify"]["stop"] == 45


# ------------------------------------------------------------------ resume, LPIPS, late errors, overwrite
def test_resumed_run_reports_total_and_resumed_wall_time(scene, tmp_path):
    out = tmp_path / "w"
    cfg = _cfg(scene, out, coarse_iters=10, fine_iters=10, checkpoint_every=1000, exports=[], tensorboard=False)
    _interrupted(cfg, 12)
    before = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)["wall_time_s"]
    assert before > 0
    m = construct(_cfg(scene, out, coarse_iters=10, fine_iters=10, exports=[], tensorboard=False), resume=True,
                  log=lambda s: None)
    assert m["resumed_at_iteration"] == 12
    assert 0 < m["wall_time_resumed_s"] < m["wall_time_s"]
    assert m["wall_time_s"] == pytest.approx(before + m["wall_time_resumed_s"], abs=0.5)
    fresh = construct(_cfg(scene, tmp_path / "f", coarse_iters=2, fine_iters=1, exports=[], tensorboard=False),
                      log=lambda s: None)
    assert fresh["wall_time_resumed_s"] is None and fresh["resumed_at_iteration"] is None


def test_absent_lpips_weights_are_announced_once_and_recorded(scene, tmp_path):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    logs = []
    m = construct(_cfg(scene, tmp_path / "nolp", lpips_weights=str(empty), coarse_iters=3, fine_iters=2, exports=[],
                       tensorboard=False), log=logs.append)
    said = [line for line in logs if "LPIPS term off" in line]
    assert len(said) == 1 and str(empty) in said[0]
    assert m["lpips_available"] is False and str(empty) in m["lpips_unavailable_reason"]
    on_disk = json.loads((tmp_path / "nolp" / "metrics.json").read_text())
    assert on_disk["lpips_available"] is False and on_disk["lpips_unavailable_reason"] == m["lpips_unavailable_reason"]


def test_inputs_found_bad_late_leave_no_output_folder(scene, tmp_path):
    out = tmp_path / "late"
    _bad(scene, out, "rasterizer backend 'cuda' needs a CUDA device", rasterizer_backend="cuda", device="cpu")
    assert not out.exists()
    _bad(scene, out, r"exports: unknown \['gltf'\]", exports=["viewer", "gltf"])
    assert not out.exists()
    rc = cli_main(["--demo", "-o", str(out), "--size", "16", "--no-progress", "--device", "cpu",
                   "--rasterizer-backend", "cuda"])
    assert rc == 2 and not out.exists() and not (tmp_path / "late-scene").exists()


def _sha(folder):
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_removes_only_what_construct_wrote(scene, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ow"
    base = [sys.executable, "-m", "orster4d.cli.construct", str(scene / "multiview"), "-o", str(out),
            "--static", str(scene / "static"), "--coarse-iters", "3", "--fine-iters", "2", "--init-points", "80",
            "--sh-degree", "0", "--no-progress", "--rasterizer-backend", RB, "--hexplane-backend", HB,
            "--hexplane-resolution", "8", "4"]
    run = lambda *extra: subprocess.run(base + list(extra), capture_output=True, text=True, timeout=600)  # noqa: E731
    r = run("--exports", "splat", "splatv")
    assert r.returncode == 0, r.stderr
    assert (out / "asset.splatv").is_file()
    (out / "notes.txt").write_text("my notes")
    (out / "photos").mkdir()
    (out / "photos" / "a.png").write_bytes(torch.randint(0, 256, (64,), dtype=torch.uint8).numpy().tobytes())
    (out / "gaussians" / "mine.ply").write_bytes(b"a user's own file")
    before = _sha(out)
    r = run("--overwrite", "--exports", "splat")
    assert r.returncode == 2
    for name in ("notes.txt", "photos/", "gaussians/mine.ply"):
        assert name in r.stderr, (name, r.stderr)
    assert _sha(out) == before  # nothing touched
    foreign = {k: v for k, v in before.items() if k in ("notes.txt", "photos/a.png", "gaussians/mine.ply")}
    moved = tmp_path / "moved"
    moved.mkdir()
    for k in foreign:
        (out / k).rename(moved / k.replace("/", "_"))
    (out / "photos").rmdir()
    r = run("--overwrite", "--exports", "splat")
    assert r.returncode == 0, r.stderr
    assert not (out / "asset.splatv").exists()  # written by the first run, removed by the overwrite
    assert (out / "asset.splat").is_file() and (out / "metrics.json").is_file()
    assert {k.replace("/", "_"): v for k, v in foreign.items()} == _sha(moved)


def _to_separate_heads(ck):
    """A checkpoint as fields with three separate heads wrote it (the layout before OffsetHeads):
    the field's ``heads.*`` weights and their Adam moments split into ``{pos,rot,scale}_head.{1,3}``."""
    sd = ck["field"]
    w = sd["heads.hidden.weight"].shape[1]
    dims = (("pos", 3), ("rot", 4), ("scale", 3))

    def split(name, x):
        out, row = {}, 0
        for i, (head, d) in enumerate(dims):
            if name == "heads.hidden.weight" or name == "heads.hidden.bias":
                out[f"{head}_head.1.{name.split('.')[-1]}"] = x[i * w:(i + 1) * w].clone()
            elif name == "heads.out.weight":
                out[f"{head}_head.3.weight"] = x[row:row + d, i * w:(i + 1) * w].clone()
            else:
                out[f"{head}_head.3.bias"] = x[row:row + d].clone()
            row += d
        return out

    fused = ["heads.hidden.weight", "heads.hidden.bias", "heads.out.weight", "heads.out.bias"]
    names = [k for k in sd if k not in fused]
    old_sd = {k: sd[k] for k in names}
    pieces = {n: split(n, sd[n]) for n in fused}
    order = [f"{h}_head.{i}.{p}" for h, _ in dims for i in (1, 3) for p in ("weight", "bias")]
    for k in order:
        old_sd[k] = next(pieces[n][k] for n in fused if k in pieces[n])
    # the optimiser: groups [grid, mlp] over the field's parameters in registration order
    opt = ck["field_opt"]
    params = [k for k in sd if k not in ("prior_spatial", "prior_temporal")]
    new_ids = {n: i for i, n in enumerate([n for n in params if n.startswith("hexplane.")]
                                         + [n for n in params if not n.startswith("hexplane.")])}
    old_params = [k for k in old_sd if k not in ("prior_spatial", "prior_temporal")]
    old_order = ([n for n in old_params if n.startswith("hexplane.")]
                 + [n for n in old_params if not n.startswith("hexplane.")])
    state = {}
    for i, n in enumerate(old_order):
        if n in new_ids:
            state[i] = opt["state"][new_ids[n]]
            continue
        src = next(f for f in fused if n in pieces[f])
        st = dict(opt["state"][new_ids[src]])
        for key in ("exp_avg", "exp_avg_sq"):
            st[key] = split(src, st[key])[n]
        state[i] = st
    n_grid = sum(n.startswith("hexplane.") for n in old_order)
    groups = [{**opt["param_groups"][0], "params": list(range(n_grid))},
              {**opt["param_groups"][1], "params": list(range(n_grid, len(old_order)))}]
    return {**ck, "field": old_sd, "field_opt": {"state": state, "param_groups": groups}}


def test_a_checkpoint_with_separate_heads_resumes_on_the_same_trajectory(scene, tmp_path):
    out = tmp_path / "new"
    cfg = _cfg(scene, out, coarse_iters=10, fine_iters=10, checkpoint_every=1000, exports=[], tensorboard=False)
    _interrupted(cfg, 14)
    old = tmp_path / "old"
    shutil.copytree(out, old)
    ck = torch.load(old / CHECKPOINT, map_location="cpu", weights_only=False)
    assert ck["field"] is not None and "heads.out.weight" in ck["field"]
    old_ck = _to_separate_heads(ck)
    assert "pos_head.3.weight" in old_ck["field"] and "heads.out.weight" not in old_ck["field"]
    torch.save(old_ck, old / CHECKPOINT)
    results = {}
    for name, folder in (("new", out), ("old", old)):
        results[name] = construct(_cfg(scene, folder, coarse_iters=10, fine_iters=10, exports=[], tensorboard=False),
                                  resume=True, log=lambda s: None)
        assert results[name]["resumed_at_iteration"] == 14
    assert results["old"]["train"]["psnr"] == pytest.approx(results["new"]["train"]["psnr"], abs=1e-4)
    a = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    b = torch.load(old / CHECKPOINT, map_location="cpu", weights_only=False)
    for k, v in a["field"].items():
        torch.testing.assert_close(b["field"][k], v, rtol=1e-5, atol=1e-6)
