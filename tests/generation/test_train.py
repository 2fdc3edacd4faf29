"""Training stages 1-4 (tiny preset, CPU): loss falls on a fixed batch, exact resume, Ctrl-C
checkpoint, merged export, config/CLI overrides and every bad-input error."""
import json
import os
import shutil

import pytest
import torch

from helpers import make_videos, make_workspace, tiny_overrides
from orster4d.cli.train import main as cli_main
from orster4d.generation.training.config import resolve_config
from orster4d.generation.training.data import OrbitalVideoDataset, ResumableSampler
from orster4d.generation.training.trainer import Trainer

pytest.importorskip("diffusers")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(str(tmp_path_factory.mktemp("ws")))


def _cfg(ws, out, stage, steps=6, **extra):
    return resolve_config("tiny", stage, overrides=tiny_overrides(ws, out, steps=steps, **extra))


def _fixed_batch(ws):
    ds = OrbitalVideoDataset(ws["data"], 8, 32)
    items = [ds[0], ds[1]]
    return {"video": torch.stack([i["video"] for i in items]), "prompt": [i["prompt"] for i in items],
            "static_video": torch.stack([i["static_video"] for i in items])}


def _fixed_loss(trainer, batch):
    """The stage's loss on a fixed batch with fixed timesteps/noise (eval mode: no dropout)."""
    trainer.stage.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        loss, _ = trainer.stage(batch, torch.Generator().manual_seed(1234))
    trainer.stage.train()
    return float(loss)


def _log(out, stage):
    with open(os.path.join(out, f"stage{stage}", "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_four_stages_end_to_end_loss_falls(ws, tmp_path):
    out = str(tmp_path / "run")
    batch = _fixed_batch(ws)
    for stage, steps in ((1, 10), (2, 10), (3, 10), (4, 10)):
        tr = Trainer(_cfg(ws, out, stage, steps=steps), progress=False)
        before = _fixed_loss(tr, batch)
        final = tr.train()
        after = _fixed_loss(tr, batch)
        assert after < before, (stage, before, after)
        assert os.path.isfile(os.path.join(out, f"stage{stage}", "final", "state.json"))
        cfg_saved = json.load(open(os.path.join(final, "config.json")))
        assert cfg_saved["stage"] == stage and cfg_saved["train"]["steps"] == steps
        assert len(_log(out, stage)) == steps
    for kind in ("image", "static3d"):  # the other two conditions, from the same stage-3 checkpoint
        kout = str(tmp_path / kind)
        tr = Trainer(_cfg(ws, kout, 4, steps=10, **{"cond.kind": kind,
                                                     "init": os.path.join(out, "stage3", "final")}), progress=False)
        before = _fixed_loss(tr, batch)
        tr.train()
        assert _fixed_loss(tr, batch) < before, kind
    import diffusers

    for stage in (2, 3, 4):  # the unified 4D-UNet is exported at the end of stages 2-4
        merged = os.path.join(out, f"stage{stage}", "final", "model", "merged_unet")
        assert isinstance(diffusers.UNet3DConditionModel.from_pretrained(merged), diffusers.UNet3DConditionModel)
    assert os.path.isfile(os.path.join(out, "stage4", "final", "model", "cond", "diffusion_pytorch_model.safetensors"))


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_resume_after_ctrl_c_matches_uninterrupted(ws, tmp_path, monkeypatch, stage, stage1_done, stage3_done):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    extra = {1: {}, 2: {"init": os.path.join(stage1_done, "stage1", "final")},
             3: {"init": os.path.join(stage3_done, "stage2", "final")},
             4: {"init": os.path.join(stage3_done, "stage3", "final")}}[stage]
    Trainer(_cfg(ws, a, stage, steps=6, **extra), progress=False).train()
    full = [r["loss"] for r in _log(a, stage)]

    tr = Trainer(_cfg(ws, b, stage, steps=6, **extra), progress=False)
    orig = type(tr.stage).forward
    calls = {"n": 0}

    def interrupting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(type(tr.stage), "forward", interrupting)
    with pytest.raises(KeyboardInterrupt):
        tr.train()
    monkeypatch.setattr(type(tr.stage), "forward", orig)
    ck = os.path.join(b, f"stage{stage}", "checkpoint-000003")
    model = {1: ["model/unet/config.json"], 2: ["model/std4d/diffusion_pytorch_model.safetensors"],
             3: ["model/merged_unet/diffusion_pytorch_model.safetensors"],
             4: ["model/merged_unet/diffusion_pytorch_model.safetensors",
                 "model/cond/diffusion_pytorch_model.safetensors"]}[stage]
    for name in (*model, "optimizer.pt", "lr_scheduler.pt", "ema.safetensors", "rng.pt", "state.json", "config.json"):
        assert os.path.isfile(os.path.join(ck, name)), name
    Trainer(_cfg(ws, b, stage, steps=6, **extra), resume=True, progress=False).train()
    resumed = [r["loss"] for r in _log(b, stage)]
    assert [r["step"] for r in _log(b, stage)] == [1, 2, 3, 4, 5, 6]
    assert resumed == pytest.approx(full, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("mode", ["no_disentangle", "no_spatial", "no_temporal"])
def test_stage2_ablation_modes_train(ws, tmp_path, stage1_done, mode):
    import diffusers

    cfg = _cfg(ws, str(tmp_path), 2, steps=2, **{"model.mode": mode,
                                                 "init": os.path.join(stage1_done, "stage1", "final")})
    final = Trainer(cfg, progress=False).train()
    assert all(r["loss"] == r["loss"] for r in _log(str(tmp_path), 2))  # finite, not NaN
    diffusers.UNet3DConditionModel.from_pretrained(os.path.join(final, "model", "merged_unet"))


def test_sampler_is_deterministic_sharded_and_resumable():
    s = ResumableSampler(5, seed=3)
    it = iter(s)
    stream = [next(it) for _ in range(17)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    it = iter(ResumableSampler(5, seed=3, start=7))
    assert [next(it) for _ in range(10)] == stream[7:17]
    shards = [iter(ResumableSampler(5, seed=3, rank=r, world=2)) for r in range(2)]
    got = [[next(sh) for _ in range(4)] for sh in shards]
    assert got[0] == stream[0:8:2] and got[1] == stream[1:8:2]


def test_config_overrides_and_presets():
    cfg = resolve_config("small", 2, overrides=["train.lr=3e-5", "data.resolution=128", "model.mode=no_spatial",
                                                 "model.unet.layers_per_block=2"])
    assert cfg["train"]["lr"] == 3e-5 and cfg["data"]["resolution"] == 128 and cfg["data"]["frames"] == 16
    assert cfg["model"]["mode"] == "no_spatial" and cfg["model"]["unet"]["layers_per_block"] == 2
    assert resolve_config("paper", 1, overrides=["model.backbone_dir=/x"])["train"]["steps"] == 5000
    with pytest.raises(ValueError, match="train.lrr"):
        resolve_config("tiny", 1, overrides=["train.lrr=1"])
    with pytest.raises(ValueError, match="preset"):
        resolve_config("huge", 1)
    with pytest.raises(ValueError, match="backbone_dir"):
        resolve_config("paper", 1)
    with pytest.raises(ValueError, match="model.mode"):
        resolve_config("tiny", 2, overrides=["model.mode=three_channel"])
    with pytest.raises(ValueError, match="cond.kind"):
        resolve_config("tiny", 4, overrides=["cond.kind=audio"])


@pytest.mark.parametrize("stage", ["0", "5", "two", "1.5"])
def test_unknown_stage(stage, capsys):
    with pytest.raises(ValueError, match="unknown stage"):
        resolve_config("tiny", stage)
    assert cli_main(["--stage", stage, "--print-config"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_stage_without_predecessor_checkpoint(ws, tmp_path, capsys):
    for stage in (2, 3, 4):
        with pytest.raises(FileNotFoundError, match=f"stage {stage} needs stage {stage - 1}"):
            Trainer(_cfg(ws, str(tmp_path / "empty"), stage), progress=False)
    args = ["--stage", "3", "--no-progress"] + sum((["--set", o] for o in tiny_overrides(ws, str(tmp_path / "e"))), [])
    assert cli_main(args) == 2
    assert "stage 3 needs stage 2" in capsys.readouterr().err


@pytest.fixture(scope="module")
def stage1_done(ws, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("s1"))
    Trainer(_cfg(ws, out, 1, steps=1), progress=False).train()
    return out


def test_wrong_predecessor_stage(ws, stage1_done):
    init = os.path.join(stage1_done, "stage1", "final")
    with pytest.raises(ValueError, match="from stage 1, expected stage 2"):
        Trainer(_cfg(ws, stage1_done, 3, init=init), progress=False)


def test_teacher_errors_stop_stage2(ws, stage1_done, tmp_path):
    with pytest.raises(FileNotFoundError, match="temporal teacher"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.temporal_dir": str(tmp_path / "missing")}), progress=False)
    bad = tmp_path / "bad"
    shutil.copytree(ws["teacher_spatial"], bad)
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="spatial teacher .* does not load"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.spatial_dir": str(bad)}), progress=False)
    tmap = [{"teacher": "temporal", "block": "up_blocks.9.temp_attentions.0",
             "student": "down_blocks.0.temp_attentions.0"}]
    with pytest.raises(ValueError, match="up_blocks.9.temp_attentions.0"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.map": tmap}), progress=False)
    tmap = [{"teacher": "temporal", "block": "down_blocks.0.temp_attentions.0", "student": "mid_block.nope"}]
    with pytest.raises(ValueError, match="mid_block.nope"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.map": tmap}), progress=False)


def test_data_mismatch_errors(ws, tmp_path):
    with pytest.raises(ValueError, match="data.frames=16"):
        Trainer(_cfg(ws, str(tmp_path), 1, **{"data.frames": 16}), progress=False)
    with pytest.raises(ValueError, match="data.resolution=64"):
        Trainer(_cfg(ws, str(tmp_path), 1, **{"data.resolution": 64}), progress=False)
    other = make_videos(str(tmp_path / "d"), n=1, frames=6)
    with pytest.raises(ValueError, match="has 6 frames"):
        Trainer(_cfg(ws, str(tmp_path), 1, **{"data.root": other}), progress=False)
    no_static = str(tmp_path / "ns")
    from orster4d.generation.training.data import write_video_folder

    write_video_folder(os.path.join(no_static, "v"), torch.rand(8, 32, 32, 3).numpy())
    ds = OrbitalVideoDataset(no_static, 8, 32)
    with pytest.raises(ValueError, match="static3d"):
        ds.require_static()
    with pytest.raises(FileNotFoundError, match="data.root"):
        Trainer(_cfg(ws, str(tmp_path), 1, **{"data.root": str(tmp_path / "none")}), progress=False)


def test_missing_weights_name_the_file(ws, tmp_path):
    vae = tmp_path / "vae"
    shutil.copytree(ws["vae"], vae)
    os.remove(vae / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        Trainer(_cfg(ws, str(tmp_path), 1, **{"model.vae_dir": str(vae)}), progress=False)
    from orster4d.perceptual import load_lpips

    with pytest.raises(FileNotFoundError, match="lpips_alex.pth"):
        load_lpips(str(tmp_path))


def test_cli_runs_a_stage(ws, tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = ["--stage", "1", "--no-progress"] + sum((["--set", o] for o in tiny_overrides(ws, out, steps=2)), [])
    assert cli_main(args) == 0
    assert capsys.readouterr().out.strip().endswith("checkpoint-000002")
    assert len(_log(out, 1)) == 2


@pytest.mark.slow
def test_ddp_two_processes_gloo(ws, tmp_path):
    """``torchrun --nproc_per_node=2`` on CPU (gloo): the run completes, rank 0 alone writes."""
    import subprocess
    import sys

    out = str(tmp_path / "ddp")
    args = ["--stage", "1", "--no-progress"] + sum((["--set", o] for o in tiny_overrides(ws, out, steps=3)), [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "orster4d.cli.train"] + args
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1].endswith("checkpoint-000003")
    assert res.stdout.count("checkpoint-000003") == 1  # only rank 0 reports and writes
    assert [r["step"] for r in _log(out, 1)] == [1, 2, 3]
    st = json.load(open(os.path.join(out, "stage1", "final", "state.json")))
    assert st["world_size"] == 2 and st["step"] == 3


def test_stage1_from_pretrained_backbone_folder(ws, tmp_path):
    out = str(tmp_path / "bb")
    cfg = _cfg(ws, out, 1, steps=1, **{"model.backbone_dir": ws["teacher_spatial"], "model.unet.block_out_channels": [8, 8]})
    tr = Trainer(cfg, progress=False)
    assert list(tr.cfg["model"]["unet"]["block_out_channels"]) == [32, 64]  # architecture from the folder
    ref = dict(__import__("diffusers").UNet3DConditionModel.from_pretrained(ws["teacher_spatial"]).state_dict())
    assert all(torch.equal(v, ref[k]) for k, v in tr.stage.unet.state_dict().items())
    with pytest.raises(FileNotFoundError, match="model.backbone_dir"):
        Trainer(_cfg(ws, out, 1, **{"model.backbone_dir": str(tmp_path / "none")}), progress=False)


def test_teacher_map_must_pair_spatial_and_temporal(ws, stage1_done):
    tmap = [{"teacher": "spatial", "block": "down_blocks.0.attentions.0", "student": "down_blocks.0.attentions.0"}]
    with pytest.raises(ValueError, match="1 spatial and 0 temporal"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.map": tmap}), progress=False)
    with pytest.raises(ValueError, match="teacher_map\\[0\\].teacher"):
        Trainer(_cfg(ws, stage1_done, 2, **{"teachers.map": [dict(tmap[0], teacher="audio")]}), progress=False)


# -- conventions: config untouched, unused parameters, fused EMA, bit-exact checkpoints ----------
@pytest.fixture(scope="module")
def stage3_done(ws, stage1_done, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("s3"))
    Trainer(_cfg(ws, out, 2, steps=1, init=os.path.join(stage1_done, "stage1", "final")), progress=False).train()
    Trainer(_cfg(ws, out, 3, steps=1), progress=False).train()
    return out


@pytest.mark.parametrize("case", [1, "1-backbone", 2, 3, 4])
def test_stages_do_not_change_the_config_they_are_given(ws, tmp_path, stage1_done, stage3_done, case):
    import copy

    from orster4d.generation.training.stages import STAGE_CLASSES

    out = str(tmp_path / "run")
    extra = {1: {}, "1-backbone": {"model.backbone_dir": ws["teacher_spatial"]},
             2: {"init": os.path.join(stage1_done, "stage1", "final")},
             3: {"init": os.path.join(stage3_done, "stage2", "final")},
             4: {"init": os.path.join(stage3_done, "stage3", "final")}}[case]
    stage_n = 1 if case == "1-backbone" else case
    cfg = _cfg(ws, out, stage_n, **extra)
    before = copy.deepcopy(cfg)
    STAGE_CLASSES[stage_n](cfg, torch.device("cpu"))
    assert cfg == before
    tr = Trainer(cfg, progress=False)
    assert cfg == before
    assert tr.cfg["model"]["unet"] == dict(tr.stage.unet_config)  # the trainer's own resolved copy


@pytest.mark.parametrize("case", ["stage1", "stage2", "stage2-lambda1", "stage2-nokernel", "stage2-noorster", "stage3",
                                  "stage4-image", "stage4-mixed"])
def test_find_unused_parameters_is_set_exactly_where_needed(ws, tmp_path, stage1_done, stage3_done, case):
    """A stage that tells DDP not to look for unused parameters gives every trainable parameter a
    gradient in a step; the options that leave some without one say so."""
    init = {"init": os.path.join(stage1_done, "stage1", "final")}
    stage, extra = {"stage1": (1, {}), "stage2": (2, init),
                    "stage2-lambda1": (2, dict(init, **{"orster.lambda_o": 1.0})),
                    "stage2-nokernel": (2, dict(init, **{"orster.options": {"use_kernel": False}})),
                    "stage2-noorster": (2, dict(init, **{"orster.weight": 0.0})),
                    "stage3": (3, {"init": os.path.join(stage3_done, "stage2", "final")}),
                    "stage4-image": (4, {"init": os.path.join(stage3_done, "stage3", "final"),
                                         "cond.kind": "image"}),
                    "stage4-mixed": (4, {"init": os.path.join(stage3_done, "stage3", "final"),
                                         "cond.kind": "mixed"})}[case]
    tr = Trainer(_cfg(ws, str(tmp_path / "r"), stage, **extra), progress=False)
    loss, _ = tr.stage(_fixed_batch(ws), torch.Generator().manual_seed(0))
    loss.backward()
    no_grad = [k for k, p in tr.stage.named_parameters() if p.requires_grad and p.grad is None]
    if tr.stage.find_unused_parameters:
        assert no_grad, "find_unused_parameters=True but every parameter got a gradient"
    else:
        assert no_grad == []
    assert tr.stage.find_unused_parameters == (case in ("stage2-lambda1", "stage2-nokernel"))


def test_stage2_without_orster_never_touches_the_teachers(ws, tmp_path, stage1_done, monkeypatch):
    """orster.weight=0: the teachers are not loaded (their folders may be missing) nor run, the loss is
    L_ldm + KL terms, and the checkpoints hold no orster/ model; with the transfer on, a missing
    teacher folder is still an error."""
    import orster4d.generation.training.stages as S

    calls = []
    monkeypatch.setattr(S, "load_teachers", lambda *a, **k: calls.append(a) or {})
    extra = {"init": os.path.join(stage1_done, "stage1", "final"), "orster.weight": 0.0,
             "teachers.spatial_dir": str(tmp_path / "missing_s"), "teachers.temporal_dir": str(tmp_path / "missing_t")}
    out = str(tmp_path / "r")
    tr = Trainer(_cfg(ws, out, 2, steps=2, **extra), progress=False)
    assert calls == [] and tr.stage.frozen.teachers == {} and tr.stage.orster is None and not tr.stage.transfer
    loss, logs = tr.stage(_fixed_batch(ws), torch.Generator().manual_seed(0))
    assert set(logs) == {"ldm", "kl"}
    assert float(loss.detach()) >= float(logs["ldm"])  # L_ldm plus the non-negative KL terms, no transfer term
    final = tr.train()
    assert not os.path.exists(os.path.join(final, "model", "orster"))
    assert os.path.isdir(os.path.join(final, "model", "merged_unet"))
    monkeypatch.undo()
    with pytest.raises((FileNotFoundError, ValueError), match="missing_s|teacher"):
        Trainer(_cfg(ws, str(tmp_path / "r2"), 2, **dict(extra, **{"orster.weight": 1.0})), progress=False)


def test_ema_update_is_one_fused_operation(monkeypatch, rng_seed):
    from orster4d.generation.training.trainer import EMA

    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))
    net[1].bias.requires_grad_(False)
    ema = EMA(net, decay=0.9)
    ref = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    calls = []
    real = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: (calls.append(1), real(*a))[1])
    ema.update()
    assert len(calls) == 1
    params = dict(net.named_parameters())
    assert set(ema.shadow) == {"0.weight", "0.bias", "1.weight"}
    for k, v in ema.shadow.items():
        torch.testing.assert_close(v, 0.9 * ref[k] + 0.1 * params[k].detach(), rtol=1e-6, atol=1e-7)


def test_checkpoint_round_trips_bit_exactly(ws, tmp_path, stage1_done):
    """Everything a stage-2 checkpoint stores comes back bit for bit in a resumed trainer."""
    out = str(tmp_path / "rt")
    cfg = _cfg(ws, out, 2, steps=3, init=os.path.join(stage1_done, "stage1", "final"))
    a = Trainer(cfg, progress=False)
    a.train()
    b = Trainer(cfg, resume=True, progress=False)
    assert b.step == a.step == 3
    sa, sb = a.stage.state_dict(), b.stage.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(k.startswith("orster.") for k in sa)  # the Orster kernels are part of it
    ea, eb = a.ema.shadow, b.ema.shadow
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)
    oa, ob = a.opt.state_dict(), b.opt.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    for i, st in oa["state"].items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(ob["state"][i][n])) for n, v in st.items())
    assert torch.equal(a.gen.get_state(), b.gen.get_state())
    assert a.sched.state_dict()["last_epoch"] == b.sched.state_dict()["last_epoch"]
    for name in ("std4d", "orster", "merged_unet"):
        cfg_file = os.path.join(out, "stage2", "final", "model", name, "config.json")
        assert json.load(open(cfg_file))["_class_name"]


def test_config_values_are_range_checked(capsys):
    from orster4d.generation.training.config import RANGES

    for key, (kind, lo, hi, lo_open, hi_open, null_means) in RANGES.items():
        bad = [v for v in (None if lo is None else lo - 1, None if hi is None else hi + 1) if v is not None]
        bad += ([lo] if lo_open else []) + ([hi] if hi_open else []) + ([] if null_means else [None])
        bad += ["3", True] + ([2.5] if kind == "int" else [])
        for v in bad:
            with pytest.raises(ValueError, match=key.replace(".", r"\.")):
                resolve_config("tiny", 1, overrides=[f"{key}={json.dumps(v)}"])
    with pytest.raises(ValueError, match="beta_end"):
        resolve_config("tiny", 1, overrides=["noise.beta_end=0.0001"])
    for steps in ("0", "-3", "two"):
        with pytest.raises(SystemExit) as e:
            cli_main(["--stage", "1", "--steps", steps, "--print-config"])
        assert e.value.code == 2
        assert "--steps" in capsys.readouterr().err
    assert cli_main(["--stage", "1", "--set", "train.steps=0", "--print-config"]) == 2
    assert "train.steps=0" in capsys.readouterr().err


def test_prune_orders_by_step_and_keeps_the_newest(tmp_path):
    from orster4d.generation.training.outputs import StageFolder

    for steps, newest, keep, want in (([10, 20, 30, 5], 5, 3, [5, 10, 20, 30]),
                                      ([999998, 999999, 1000000], 1000000, 2, [999999, 1000000]),
                                      ([1, 2, 3, 4], 4, 1, [4]), ([3, 1, 2], 2, None, [1, 2, 3])):
        folder = StageFolder(str(tmp_path / f"s{newest}-{keep}"))
        for s in steps:
            os.makedirs(os.path.join(folder.path, f"checkpoint-{s:06d}"))
            folder.own(f"checkpoint-{s:06d}/")
        folder.prune(keep, keep_step=newest)
        assert [s for s, _ in folder.checkpoints()] == want
        assert sorted(os.listdir(folder.path)) == sorted([f"checkpoint-{s:06d}" for s in want] + ["orster4d-manifest.json"])
