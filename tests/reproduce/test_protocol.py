"""The reproduction protocol at the tiny preset: end to end, cached, resumable; the switches do
what they claim; statistics and tables."""
import contextlib
import json
import math
import os
import threading
from pathlib import Path

import pytest
import torch

from orster4d.reproduce import protocol as P
from orster4d.reproduce.cache import file_lock, key_hash, training_key
from orster4d.reproduce.rows import ROWS, Row, find_rows, scarcity_rows
from orster4d.reproduce.stats import mean_ci

ROW_NAMES = ["ours", "w/o Orster", "stage 1 only", "w/o consistency stage", "construction w/o temporal prior tokens",
             "w/o construction training"]
KINDS = ("image", "text", "static3d")


def _opts(root, **kw):
    return P.ProtocolOptions(**{"root": str(root), "preset": "tiny", "rows": ROW_NAMES, "seeds": [0], "progress": False,
                                **kw})


@pytest.fixture(scope="module")
def done(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("repro")
    return root, P.run_protocol(_opts(root))


def _row(result, name):
    return next(r for r in result["rows"] if r["name"] == name)


def test_end_to_end_writes_rows_scores_and_tables(done):
    root, res = done
    saved = json.loads((root / "reproduction.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ROW_NAMES
    for name in ("ours", "w/o Orster"):
        r = _row(saved, name)
        assert r["status"] == "done" and r["seeds"] == [0]
        for kind in ("image", "text", "static3d"):
            per = r["per_seed"]["0"]["conditions"][kind]["per_object"]
            assert len(per) == 2 and all(math.isfinite(o["psnr"]) and -1 <= o["ssim"] <= 1 for o in per)
            ci = r["summary"][kind]["psnr"]
            assert ci["n"] == 1 and ci["half_width"] is None
            assert ci["mean"] == pytest.approx(sum(o["psnr"] for o in per) / 2)
    assert set(_row(saved, "ours")["runs"]["0"]) == {"stage1", "stage2", "stage3", "stage4", "gen", "asset"}
    assert set(_row(saved, "w/o Orster")["runs"]["0"]) == {"stage1", "stage2", "stage3", "stage4"}
    assert "per_seed_assets" not in _row(saved, "w/o Orster")
    # both rows share stage 1 (same config and inputs), not stage 2
    a, b = _row(saved, "ours")["runs"]["0"], _row(saved, "w/o Orster")["runs"]["0"]
    assert a["stage1"] == b["stage1"] and a["stage2"] != b["stage2"]
    assert all(r["status"] == "done" for r in saved["rows"])
    # skipped stages: stage 4 follows stage 1 (stage 1 only) or stage 2 (w/o consistency stage)
    s1o, noc = _row(saved, "stage 1 only"), _row(saved, "w/o consistency stage")
    assert s1o["stages"] == [1, 4] and set(s1o["runs"]["0"]) == {"stage1", "stage4", "gen", "asset"}
    assert noc["stages"] == [1, 2, 4] and set(noc["runs"]["0"]) == {"stage1", "stage2", "stage4"}
    assert s1o["runs"]["0"]["stage1"] == a["stage1"] and noc["runs"]["0"]["stage2"] == a["stage2"]
    assert len({a["stage4"], s1o["runs"]["0"]["stage4"], noc["runs"]["0"]["stage4"]}) == 3
    # assets: every asset row has per-object scores under every condition; the construction rows
    # reuse ours' generated videos and build their own assets
    for name in ("ours", "stage 1 only", "construction w/o temporal prior tokens", "w/o construction training"):
        r = _row(saved, name)
        for kind in KINDS:
            per = r["per_seed_assets"]["0"]["conditions"][kind]["per_object"]
            assert len(per) == 2 and all(math.isfinite(o["psnr"]) and -1 <= o["ssim"] <= 1 and o["frames"] > 0
                                         for o in per), name
            assert r["asset_summary"][kind]["psnr"]["mean"] == pytest.approx(sum(o["psnr"] for o in per) / 2)
    for name in ("construction w/o temporal prior tokens", "w/o construction training"):
        r = _row(saved, name)
        assert "per_seed" not in r and r["runs"]["0"]["stage4"] == a["stage4"]
        assert r["runs"]["0"]["gen"] == a["gen"] and r["runs"]["0"]["asset"] != a["asset"]
    assert _row(saved, "stage 1 only")["runs"]["0"]["gen"] != a["gen"]
    md = (root / "reproduction.md").read_text()
    assert "| ours | 1 |" in md and "not expressible" not in md and "Table 3" in md
    assert md.count("### 4D assets") == 3 and "| w/o construction training | 1 |" in md
    assert "lpips" in saved["rows"][0]["summary"]["absent"] or saved["rows"][0]["summary"]["image"]["lpips"]["mean"]
    assert saved["image_vae"]["heldout_psnr_db"] > 0
    assert {v["stage"] for v in saved["throughput_samples_per_s"].values()} == {1, 2, 3, 4}
    strips = list((root / "strips" / "ours" / "seed0").glob("*.png"))
    assert len(strips) == 6


def test_the_generated_scores_are_psnr_against_the_true_video(done):
    """Re-score one object independently: generate with the same seed, compare with the true frames."""
    from orster4d.data.world import heldout_objects
    from orster4d.generation.pipeline import pipeline_from_checkpoint
    from orster4d.generation.training.data import read_video
    from orster4d.reproduce.scoring import _seed

    root, res = done
    r = _row(res, "ours")
    s4 = root / "runs" / r["runs"]["0"]["stage4"] / "stage4" / "final"
    obj = heldout_objects(root / "world")[1]
    true = read_video(obj["folder"])["video"]
    pipe = pipeline_from_checkpoint(str(s4))
    pipe.set_progress_bar_config(disable=True)
    video = pipe(image=true[0], num_inference_steps=2, guidance_scale=1.0,
                 generator=torch.Generator().manual_seed(_seed(0, obj["name"], "image"))).video.clamp(0, 1)
    mse = ((video.double() - true.double()) ** 2).mean(dim=(1, 2, 3))
    want = float((-10 * torch.log10(mse)).mean())
    got = r["per_seed"]["0"]["conditions"]["image"]["per_object"][1]["psnr"]
    assert got == pytest.approx(want, abs=1e-3)


def test_asset_scores_are_the_held_out_views_and_times_of_the_ground_truth(done):
    """Render one asset independently (orster4d-eval's renderer) at the multi-view test frames."""
    from orster4d.data.dataset import load_dataset
    from orster4d.data.world import heldout_objects
    from orster4d.evaluation.asset import render_asset
    from orster4d.io.asset import read_asset
    from orster4d.metrics import psnr

    root, res = done
    r = _row(res, "ours")
    obj = heldout_objects(root / "world")[1]
    asset = read_asset(root / "runs" / r["runs"]["0"]["asset"] / "assets" / f"{obj['name']}_image")
    gt = load_dataset(os.path.join(obj["folder"], "multiview")).split("test")
    assert gt.num_frames > 0
    pred = render_asset(asset, gt.times, gt.viewmats, gt.Ks, gt.width, gt.height)
    want = float(psnr(pred.clamp(0, 1), gt.images).mean())
    got = r["per_seed_assets"]["0"]["conditions"]["image"]["per_object"][1]
    assert got["frames"] == gt.num_frames and got["psnr"] == pytest.approx(want, abs=0.05)


def test_asset_rows_build_what_they_claim(done):
    """The construction rows change the construction only: no fine phase (an identity field) for
    w/o construction training; prior_sides=spatial (temporal tokens replaced by one zero token)
    for the Eq. 8 row; ours attends to both token sets of the generated priors."""
    from orster4d.data.world import heldout_objects
    from orster4d.recon.deformation import DeformationField

    root, res = done
    obj = heldout_objects(root / "world")[0]["name"]

    def asset(row):
        return root / "runs" / _row(res, row)["runs"]["0"]["asset"] / "assets" / f"{obj}_text"

    priors = torch.load(root / "runs" / _row(res, "ours")["runs"]["0"]["gen"] / "gen" / f"{obj}_text" / "priors.pt")
    cfg = lambda row: json.loads((asset(row) / "config.json").read_text())["construct"]  # noqa: E731
    assert cfg("ours")["fine_iters"] > 0 and cfg("w/o construction training")["fine_iters"] == 0
    assert json.loads((asset("w/o construction training") / "metrics.json").read_text())["iterations"] == \
        cfg("ours")["coarse_iters"]
    field = DeformationField.from_pretrained(asset("w/o construction training") / "deformation")
    with torch.no_grad():
        dp, dq, ds = field(torch.randn(5, 3), torch.tensor([0.0, 0.7]))
    assert all(float(x.abs().max()) == 0 for x in (dp, dq, ds))
    ours = DeformationField.from_pretrained(asset("ours") / "deformation")
    assert torch.equal(ours.prior_spatial, priors["spatial"]) and torch.equal(ours.prior_temporal, priors["temporal"])
    off = DeformationField.from_pretrained(asset("construction w/o temporal prior tokens") / "deformation")
    assert cfg("construction w/o temporal prior tokens")["prior_sides"] == ["spatial"]
    assert torch.equal(off.prior_spatial, priors["spatial"])
    assert off.prior_temporal.shape == (1, priors["temporal"].shape[1]) and not off.prior_temporal.any()


def _stage4_start(cfg):
    """Stage 4's UNet weights as it starts (before any step) from ``cfg``, and its notices."""
    from orster4d.generation.training.stages import Stage4

    stage = Stage4(cfg, torch.device("cpu"))
    return stage.unet.state_dict(), stage.notices


def test_stage4_starts_from_the_checkpoint_the_skipped_stages_leave(done, tmp_path):
    """stage 1 only: stage 4 starts from the stage-1 UNet; w/o consistency stage: from stage 2's
    merged unified UNet. Only an explicit init may name those; other stages are refused."""
    from diffusers import UNet3DConditionModel

    from orster4d.generation.training.config import load_config

    root, res = done
    run = lambda row, st: root / "runs" / _row(res, row)["runs"]["0"][f"stage{st}"]  # noqa: E731
    for row, parent, sub in (("stage 1 only", 1, "unet"), ("w/o consistency stage", 2, "merged_unet")):
        cfg = load_config(str(run(row, 4) / "stage4" / "final" / "config.json"))
        init = run(row, parent) / f"stage{parent}" / "final"
        assert cfg["init"] == str(init)
        want = UNet3DConditionModel.from_pretrained(str(init / "model" / sub)).state_dict()
        got, notices = _stage4_start(cfg)
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), row
        assert any(f"stage-{parent} checkpoint" in n and "skipped" in n for n in notices), notices
    cfg = load_config(str(run("w/o consistency stage", 4) / "stage4" / "final" / "config.json"))
    # a stage-4 checkpoint, and a stage-2 checkpoint without its merged UNet, are refused
    with pytest.raises(ValueError, match="from stage 4, expected stage 3"):
        _stage4_start(dict(cfg, init=str(run("ours", 4) / "stage4" / "final")))
    partial = tmp_path / "ck"
    import shutil

    shutil.copytree(run("ours", 2) / "stage2" / "final", partial)
    shutil.rmtree(partial / "model" / "merged_unet")
    with pytest.raises(FileNotFoundError, match="only into its final checkpoint"):
        _stage4_start(dict(cfg, init=str(partial)))
    # the default place (no init) still needs stage 3's checkpoint
    out = tmp_path / "out"
    shutil.copytree(run("ours", 2) / "stage2" / "final", out / "stage3" / "final")
    with pytest.raises(ValueError, match="from stage 2, expected stage 3"):
        _stage4_start(dict(cfg, init=None, out_dir=str(out)))


def test_cached_runs_are_not_retrained_and_interrupted_ones_resume(done):
    root, res = done
    # what the first protocol made carries the seconds it took, the world included
    made = [e for e in res["events"] if e["action"] != "reused"]
    assert made and all(e["seconds"] >= 0 for e in made), made
    assert [e["action"] for e in made if e["run"] == "world"] == ["built"]
    stamps = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/done.json")}
    again = P.run_protocol(_opts(root))
    assert {e["action"] for e in again["events"]} == {"reused"}
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/done.json")} == stamps
    assert _row(again, "ours")["per_seed"] == _row(res, "ours")["per_seed"]
    # interrupt stage 4 of ours: its checkpoint is on disk but the run is not marked done
    s4 = _row(res, "ours")["runs"]["0"]["stage4"]
    (root / "runs" / s4 / "done.json").unlink()
    third = P.run_protocol(_opts(root))
    acts = {}
    for e in third["events"]:
        acts.setdefault(e["run"], []).append(e["action"])
    assert acts[s4][0] == "resumed" and set(acts[s4][1:]) <= {"reused"}  # later rows reuse ours' stage 4
    assert next(e for e in third["events"] if e["run"] == s4)["seconds"] > 0
    assert all("seconds" not in e for e in third["events"] if e["action"] == "reused")
    assert {a for r, v in acts.items() if r != s4 for a in v} == {"reused"}


def _stage_cfg(root, row_name, stage):
    proto = P.Protocol(_opts(root))
    proto.vae_dir = "vae"
    row = find_rows([row_name])[0]
    o = proto.base_overrides(stage, 2, 0, "data")
    o.update(row.stage_overrides(stage))
    return proto.stage_config(stage, o)


def test_cache_keys_follow_the_config(tmp_path):
    k = {name: [key_hash(training_key(_stage_cfg(tmp_path, name, s), {"data": "d"})) for s in (1, 2)]
         for name in ("ours", "lambda_o = 0", "w/o spatial channel")}
    # a stage whose parent is not stage N-1 says so in its key (parent_stage), the others do not
    from types import SimpleNamespace as NS

    proto = P.Protocol(_opts(tmp_path))
    proto.vae_run, proto.vae_dir, proto.clip_dir, proto.clip_id, proto.world_hash = NS(hash="v"), "v", "c", "c", "w"
    proto.teacher_runs = {r: (NS(hash=r), f"/{r}") for r in ("spatial", "temporal")}
    for row, parent in (("stage 1 only", "1"), ("w/o consistency stage", "2"), ("ours", None)):
        seen = {}

        def fake_train(stage, o, inputs, seen=seen):
            seen[stage] = (inputs, o)
            return NS(hash=f"h{stage}"), f"/ck{stage}"

        proto.train = fake_train
        proto.chain(find_rows([row])[0], 0)
        inputs, o = seen[4]
        assert inputs.get("parent_stage") == parent, row
        assert o["init"] == f"/ck{parent or 3}" and inputs["parent"] == f"h{parent or 3}"
    assert k["ours"][0] == k["lambda_o = 0"][0] == k["w/o spatial channel"][0]  # stage 1 shared
    assert len({v[1] for v in k.values()}) == 3  # stage 2 differs
    cfg = _stage_cfg(tmp_path, "ours", 1)
    moved = dict(cfg, out_dir="/elsewhere", data=dict(cfg["data"], root="/other/place"))
    assert key_hash(training_key(cfg, {"data": "d"})) == key_hash(training_key(moved, {"data": "d"}))
    assert key_hash(training_key(cfg, {"data": "d"})) != key_hash(training_key(cfg, {"data": "e"}))


def _orster_loss(cfg):
    from orster4d.generation.training.losses import OrsterTransferLoss

    tmap = cfg["teachers"]["map"]
    return OrsterTransferLoss(tmap, [32, 32], [32, 32], lambda_o=cfg["orster"]["lambda_o"],
                              options=cfg["orster"]["options"])


def _feats(seed):
    g = torch.Generator().manual_seed(seed)
    f = lambda: torch.randn(2, 32, 4, 4, 4, generator=g)  # noqa: E731
    return f(), f(), f(), f()


@pytest.mark.parametrize("row,zero_spatial,zero_temporal", [("ours", False, False), ("lambda_o = 0", True, False),
                                                            ("lambda_o = 1", False, True)])
def test_lambda_o_rows_cut_the_transfer_gradient(tmp_path, rng_seed, row, zero_spatial, zero_temporal):
    cfg = _stage_cfg(tmp_path, row, 2)
    loss_mod = _orster_loss(cfg)
    ts, tt, ss, st = _feats(rng_seed)
    ss.requires_grad_(True)
    st.requires_grad_(True)
    e = loss_mod.entries[0]
    loss, _ = loss_mod({"spatial": {e[0]["block"]: ts}, "temporal": {e[1]["block"]: tt}},
                       {"spatial": {e[0]["student"]: ss}, "temporal": {e[1]["student"]: st}})
    loss.backward()
    grad = lambda x: torch.zeros_like(x) if x.grad is None else x.grad  # noqa: E731  (None: no path at all)
    assert (grad(ss).abs().max() == 0) == zero_spatial
    assert (grad(st).abs().max() == 0) == zero_temporal


def test_attention_and_kernel_rows_change_the_targets(tmp_path, rng_seed):
    from orster4d.generation.orster import OrsterTransfer

    ts, tt, _, _ = _feats(rng_seed)
    mods = {}
    for row in ("ours", "w/o Gaussian kernel", "w/o spatial attention", "w/o temporal attention"):
        cfg = _stage_cfg(tmp_path, row, 2)
        torch.manual_seed(0)
        mods[row] = OrsterTransfer(32, 32, lambda_o=cfg["orster"]["lambda_o"], **cfg["orster"]["options"])
    fs, ft = mods["w/o spatial attention"].targets(ts, tt)
    assert torch.equal(fs, ts) and not torch.equal(ft, tt)  # raw spatial-teacher features as targets
    fs, ft = mods["w/o temporal attention"].targets(ts, tt)
    assert torch.equal(ft, tt) and not torch.equal(fs, ts)
    # without the kernel, the targets do not depend on the kernel parameters; with it they do
    for row, depends in (("ours", True), ("w/o Gaussian kernel", False)):
        m = mods[row]
        before = m.targets(ts, tt)
        with torch.no_grad():
            for p in m.kernel.parameters():
                p.add_(0.5)
        after = m.targets(ts, tt)
        assert (not all(torch.allclose(a, b) for a, b in zip(before, after))) == depends, row
    out = mods["w/o Gaussian kernel"](ts.clone(), tt.clone(), ts, tt)
    assert float(out["nll"]) == 0.0


def test_without_orster_the_student_ignores_the_teachers(done, tmp_path):
    """Stage 2 of the w/o-Orster row trained with other teachers gives the same model; with Orster
    on, other teachers give another model."""
    from safetensors.torch import load_file

    from orster4d.generation.training.config import load_config
    from orster4d.generation.training.tiny_assets import make_tiny_unet
    from orster4d.generation.training.trainer import train_stage

    root, res = done
    other = {r: str(tmp_path / r) for r in ("spatial", "temporal")}
    for i, (r, path) in enumerate(other.items()):
        make_tiny_unet(path, seed=100 + i)

    def weights(folder):
        return load_file(os.path.join(folder, "model", "std4d", "diffusion_pytorch_model.safetensors"))

    for row, same in (("w/o Orster", True), ("ours", False)):
        run = root / "runs" / _row(res, row)["runs"]["0"]["stage2"]
        cfg = load_config(str(run / "stage2" / "final" / "config.json"))
        cfg["teachers"]["spatial_dir"], cfg["teachers"]["temporal_dir"] = other["spatial"], other["temporal"]
        cfg["out_dir"] = str(tmp_path / row.replace("/", "_"))
        train_stage(cfg, progress=False)
        a, b = weights(str(run / "stage2" / "final")), weights(os.path.join(cfg["out_dir"], "stage2", "final"))
        equal = all(torch.equal(a[k], b[k]) for k in a)
        assert equal == same, row


def test_bad_options_fail_before_any_work(tmp_path):
    root = tmp_path / "r"
    for kw, msg in ((dict(rows=["nope"]), "unknown row"), (dict(seeds=[0, 0]), "--seeds"),
                    (dict(seeds=[-1]), "--seeds"), (dict(preset="huge"), "--preset"),
                    (dict(device="tpu"), "--device"), (dict(i3d=str(tmp_path / "none.pt")), "--i3d")):
        opts = P.ProtocolOptions(root=str(root), progress=False, **{"rows": ["ours"], **kw})
        with pytest.raises(ValueError, match=msg):
            P.run_protocol(opts)
    assert not root.exists()


def test_cli(tmp_path, capsys):
    from orster4d.reproduce.cli import main

    assert main(["--list-rows"]) == 0
    out = capsys.readouterr().out
    assert all(r.name in out for r in ROWS) and "not expressible" not in out
    assert main(["--root", str(tmp_path / "x"), "--rows", "nope"]) == 2
    assert "unknown row" in capsys.readouterr().err


def test_rows_are_data():
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))
    assert {r.table for r in ROWS} == {1, 2, 3}
    assert all(r.expressible for r in ROWS)
    assert [r.name for r in ROWS if r.all_seeds] == ["ours", "single-channel (Diffusion4D-like)", "stage 1 only",
                                                     "w/o Orster"]
    assert {r.name for r in ROWS if "asset" in r.score} == {
        "ours", "single-channel (Diffusion4D-like)", "stage 1 only", "construction w/o spatial prior tokens",
        "construction w/o temporal prior tokens", "w/o construction training"}
    for kw, msg in ((dict(skip_stages=(2,)), "skip_stages"), (dict(score=()), "score"),
                    (dict(score=("video",), construct={"fine_iters": 0}), "scores no assets"),
                    (dict(score=("asset",), construct={"fine_itres": 0}), "fine_itres"),
                    (dict(score=("asset",), construct={"output": "x"}), "output"),
                    (dict(skip_stages=(3,), overrides={3: {"loss.l_rec": 0.0}}), "does not train")):
        with pytest.raises(ValueError, match=msg):
            Row("bad", 3, **kw)
    curve = scarcity_rows([3, 5])
    assert [r.scarce4d for r in curve] == [3, 3, 5, 5] and all(r.table == 4 for r in curve)


def test_mean_and_interval_match_scipy(rng_seed):
    from scipy import stats

    g = torch.Generator().manual_seed(rng_seed)
    for n in (2, 3, 5, 40):
        x = (torch.randn(n, generator=g, dtype=torch.float64) * 3 + 20).tolist()
        ci = mean_ci(x)
        lo, hi = stats.t.interval(0.95, n - 1, loc=sum(x) / n, scale=stats.sem(x))
        tol = 1e-3 if n <= 30 else 0.05 * (hi - lo)  # table to 3 decimals; normal quantile beyond 30
        assert ci["n"] == n and ci["low"] == pytest.approx(lo, abs=tol) and ci["high"] == pytest.approx(hi, abs=tol)
    assert mean_ci([1.0, None, float("nan")])["n"] == 1 and mean_ci([])["mean"] is None


def test_cached_only_writes_tables_without_making_anything(done, tmp_path):
    root, res = done
    before = sorted(p.name for p in (root / "runs").iterdir() if p.is_dir())
    result = {}
    with contextlib.ExitStack() as held:  # a worker still holding locks (being stopped) must not block it
        for lock in (root / "runs").glob("*.lock"):
            held.enter_context(file_lock(lock))
        t = threading.Thread(target=lambda: result.update(
            out=P.run_protocol(_opts(root, rows=["ours", "w/o disentangling"], cached_only=True))), daemon=True)
        t.start()
        t.join(300)
        assert not t.is_alive(), "--cached-only waited on a run lock"
    out = result["out"]
    assert {e["action"] for e in out["events"]} == {"reused"}
    assert sorted(p.name for p in (root / "runs").iterdir() if p.is_dir()) == before
    assert _row(out, "ours")["per_seed"] == _row(res, "ours")["per_seed"]
    missing = _row(out, "w/o disentangling")
    assert missing["status"] == "not run" and "not finished" in missing["missing_seeds"]["0"]
    assert "not run" in (root / "reproduction.md").read_text()
    with pytest.raises(ValueError, match="holds no world"):
        P.run_protocol(_opts(tmp_path / "empty", cached_only=True))


def test_jobs_run_tasks_in_workers_that_share_the_cache(done):
    root, res = done
    s4 = _row(res, "ours")["runs"]["0"]["stage4"]
    (root / "runs" / s4 / "done.json").unlink()  # a worker must resume it; everything else is reused
    out = P.run_protocol(_opts(root, rows=["ours"], jobs=2))
    assert [t["task"] for t in out["tasks"]] == [["teacher", "spatial"], ["teacher", "temporal"], ["ours", 0]]
    assert all(t["returncode"] == 0 and os.path.isfile(t["log"]) for t in out["tasks"])
    worker = {(e["run"], e["action"]) for t in out["tasks"] for e in t["events"]}
    assert (s4, "resumed") in worker and (root / "runs" / s4 / "done.json").is_file()
    assert _row(out, "ours")["per_seed"] == _row(res, "ours")["per_seed"]  # the scores are cached, not redone


def test_tasks_of_one_chain_never_run_at_once(tmp_path, monkeypatch):
    """A construction row trains nothing ours does not (same task group): while one of them runs the
    other is held back and the next task in order takes the free worker, instead of a worker waiting
    on the other's run locks."""
    from orster4d.reproduce import workers as W

    rows = ["ours", "construction w/o spatial prior tokens", "w/o temporal channel", "w/o Gaussian kernel"]
    proto = P.Protocol(_opts(tmp_path, rows=rows, seeds=[0]))
    tasks = proto.tasks()
    groups = [proto.task_group(t) for t in tasks]
    assert groups[:2] == [None, None] and groups[2] == groups[3]  # the teachers; ours and the construction row
    assert len({g for g in groups[2:]}) == 3

    running, order, overlap = set(), [], []

    class FakeWorker:  # ours ends on its 30th poll, the others on their 3rd; writes no result (no events)
        def __init__(self, cmd, stdout, stderr):
            self.name = tuple(json.loads(Path(cmd[-2]).read_text()))
            self.polls, self.returncode = 0, None
            self.length = 30 if self.name == ("ours", 0) else 3
            order.append(self.name)
            running.add(self.name)
            overlap.append(set(running))

        def poll(self):
            self.polls += 1
            if self.polls >= self.length and self.returncode is None:
                self.returncode = 0
                running.discard(self.name)
            return self.returncode

    monkeypatch.setattr(W.subprocess, "Popen", FakeWorker)
    recs = W.run_tasks(_opts(tmp_path, jobs=3), tasks, tmp_path / "logs", progress=False, poll_s=0.0,
                       groups=groups)
    assert [r["returncode"] for r in recs] == [0] * len(tasks)
    ours, cons = ("ours", 0), ("construction w/o spatial prior tokens", 0)
    assert not any(ours in now and cons in now for now in overlap)
    assert order.index(("w/o temporal channel", 0)) < order.index(cons)  # it took the worker cons could not
    with pytest.raises(ValueError, match="groups"):
        W.run_tasks(_opts(tmp_path, jobs=3), tasks, tmp_path / "logs", progress=False, groups=[None])


def test_a_failed_worker_task_names_its_log(done):
    from orster4d.reproduce.workers import run_tasks

    root, _ = done
    with pytest.raises(RuntimeError, match=r"no_such_row_seed0 \(status 1, log .*no_such_row_seed0\.log\)"):
        run_tasks(_opts(root, jobs=1), [("no such row", 0)], root / "logs", progress=False)


def test_start_by_stops_starting_tasks_and_makes_nothing_new(done):
    """--start-by: past it no (row, seed) task starts, in workers or in process; what is finished is
    reused and reported, the rest reads "not run", and no run folder is made."""
    from orster4d.reproduce.workers import run_tasks

    root, res = done
    recs = run_tasks(_opts(root, jobs=2), [("ours", 0), ("w/o disentangling", 0)], root / "logs", progress=False,
                     deadline=0.0)
    assert recs == [{"task": ["ours", 0], "started": False}, {"task": ["w/o disentangling", 0], "started": False}]
    before = sorted(p.name for p in (root / "runs").iterdir() if p.is_dir())
    for jobs in (1, 2):
        out = P.run_protocol(_opts(root, rows=["ours", "w/o disentangling"], jobs=jobs, start_by_s=0))
        assert sorted(p.name for p in (root / "runs").iterdir() if p.is_dir()) == before
        assert _row(out, "ours")["per_seed"] == _row(res, "ours")["per_seed"]
        assert _row(out, "w/o disentangling")["status"] == "not run"
        assert any(e["action"].startswith("stopped starting") for e in out["events"])
        if jobs == 2:
            assert all(t.get("started") is False for t in out["tasks"])
    with pytest.raises(ValueError, match="--start-by"):
        P.run_protocol(_opts(root, start_by_s=-1))


def test_run_lock_waits_for_the_holder(tmp_path):
    import threading
    import time

    from orster4d.reproduce.cache import Run

    run = Run(tmp_path, "x", {"k": 1})
    order = []

    def second():
        with run.locked():
            order.append("second")

    with run.locked():
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]


def test_scarcity_adds_the_curve_rows_to_named_rows(tmp_path):
    _, rows = P.check_options(_opts(tmp_path, rows=["ours"], scarcity=True))
    names = [r.name for r in rows]
    assert names[0] == "ours" and names[1:] == [r.name for r in scarcity_rows(P.get_preset("tiny").scarcity)]
    _, rows = P.check_options(_opts(tmp_path, rows=["ours"]))
    assert [r.name for r in rows] == ["ours"]


def test_a_scarcity_row_at_the_full_set_shares_its_full_data_rows_runs(done):
    """ours @ 4D n=<whole set> is ours (the same data and configuration): it finds ours' runs in the
    cache; a smaller n trains on its own subset, under other keys, so nothing of it is cached."""
    root, res = done
    n4d = P.get_preset("tiny").world["scarce4d"]
    out = P.run_protocol(_opts(root, rows=["ours"], scarcity=True, cached_only=True))
    full = _row(out, f"ours @ 4D n={n4d}")
    assert full["status"] == "done" and full["runs"]["0"] == {k: v for k, v in _row(res, "ours")["runs"]["0"].items()
                                                               if k.startswith("stage")}
    assert full["per_seed"] == _row(res, "ours")["per_seed"]
    assert _row(out, "ours @ 4D n=1")["status"] == "not run"
