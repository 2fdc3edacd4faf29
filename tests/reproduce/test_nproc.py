"""``orster4d-reproduce --nproc N``: each training run goes through torchrun with N processes."""
import json
import os

import pytest

from orster4d.reproduce.cli import build_parser
from orster4d.reproduce.protocol import ProtocolOptions, check_options, torchrun_command, train_distributed

pytest.importorskip("diffusers")


def test_command_and_option_checks(tmp_path):
    cmd = torchrun_command({"stage": 3, "preset": "small"}, "/x/cfg.json", 2, resume=True, progress=False)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:13] == ["-m", "orster4d.cli.train", "--stage", "3", "--preset", "small", "--config", "/x/cfg.json"]
    assert "--resume" in cmd and "--no-progress" in cmd
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--root", str(tmp_path), "--nproc", "0"])
    assert build_parser().parse_args(["--root", str(tmp_path), "--nproc", "2"]).nproc == 2
    with pytest.raises(ValueError, match="--nproc"):
        check_options(ProtocolOptions(root=str(tmp_path), nproc=0))


def test_a_stage_trains_under_torchrun_with_two_processes(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "generation"))
    from helpers import make_workspace, tiny_overrides

    from orster4d.generation.training.config import resolve_config

    ws = make_workspace(str(tmp_path / "ws"))
    out = str(tmp_path / "run")
    cfg = resolve_config("tiny", 1, overrides=tiny_overrides(ws, out, steps=3))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train_distributed(cfg, 2, progress=False)
    st = json.load(open(os.path.join(out, "stage1", "final", "state.json")))
    assert st["world_size"] == 2 and st["step"] == 3
    with open(os.path.join(out, "stage1", "log.jsonl")) as f:
        assert [json.loads(ln)["step"] for ln in f] == [1, 2, 3]
    bad = dict(cfg, data=dict(cfg["data"], batch_size=3))
    with pytest.raises(ValueError, match="not divisible"):
        train_distributed(bad, 2, progress=False)
