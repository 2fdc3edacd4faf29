"""The reproduction protocol at the tiny preset: end to end, cached, resumable; the switches do
what they claim; statistics and tables."""
import json
import math
import os

import pytest
import torch

from orster4d.reproduce import protocol as P
from orster4d.reproduce.cache import key_hash, training_key
from orster4d.reproduce.rows import ROWS, find_rows, scarcity_rows
from orster4d.reproduce.stats import mean_ci

ROW_NAMES = ["ours", "w/o Orster", "stage 1 only"]


def _opts(root, **kw):
    return P.ProtocolOptions(root=str(root), preset="tiny", rows=ROW_NAMES, seeds=[0], progress=False, **kw)


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
        assert set(r["runs"]["0"]) == {"stage1", "stage2", "stage3", "stage4"}
    # both rows share stage 1 (same config and inputs), not stage 2
    a, b = _row(saved, "ours")["runs"]["0"], _row(saved, "w/o Orster")["runs"]["0"]
    assert a["stage1"] == b["stage1"] and a["stage2"] != b["stage2"]
    missing = _row(saved, "stage 1 only")
    assert missing["status"] == "not expressible yet" and "stage 4" in missing["reason"]
    md = (root / "reproduction.md").read_text()
    assert "| ours | 1 |" in md and "not expressible yet" in md and "Table 3" in md
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


def test_cached_runs_are_not_retrained_and_interrupted_ones_resume(done):
    root, res = done
    stamps = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/done.json")}
    again = P.run_protocol(_opts(root))
    assert {e["action"] for e in again["events"]} == {"reused"}
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/done.json")} == stamps
    assert _row(again, "ours")["per_seed"] == _row(res, "ours")["per_seed"]
    # interrupt stage 4 of ours: its checkpoint is on disk but the run is not marked done
    s4 = _row(res, "ours")["runs"]["0"]["stage4"]
    (root / "runs" / s4 / "done.json").unlink()
    third = P.run_protocol(_opts(root))
    acts = {e["run"]: e["action"] for e in third["events"]}
    assert acts[s4] == "resumed"
    assert {a for r, a in acts.items() if r != s4} == {"reused"}


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
    assert all(r.name in out for r in ROWS) and "not expressible yet" in out
    assert main(["--root", str(tmp_path / "x"), "--rows", "nope"]) == 2
    assert "unknown row" in capsys.readouterr().err


def test_rows_are_data():
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))
    assert {r.table for r in ROWS} == {1, 2, 3}
    assert all(r.missing for r in ROWS if not r.expressible)
    assert [r.name for r in ROWS if r.all_seeds] == ["ours", "single-channel (Diffusion4D-like)", "w/o Orster"]
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
