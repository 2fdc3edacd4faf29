"""One training step at the ``small`` preset: stage 1 vs stage 2 (teachers included), side by side.

    pytest benchmarks/bench_train.py --benchmark-only

Stage 2's step runs both frozen teachers, the two-channel student forward and backward, and the
Orster transfer; ``extra_info`` records the share of the stage-2 step spent in the Orster
attention (``orster_attention`` calls timed with synchronisation) and the stage-2/stage-1 ratio.
Correctness in the same run: both losses are finite and stage 2 computes every loss term.
Random weights (see ``train_cases.py``). Skips without CUDA.
"""
import pytest
import torch

from train_cases import AttentionTimer, make_small_workspace, small_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the training benchmark needs a CUDA device")

_STATE = {}


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    from orster4d.generation.training.trainer import Trainer

    root = str(tmp_path_factory.mktemp("bench_train"))
    ws = make_small_workspace(root + "/ws")
    out = root + "/run"
    t1 = Trainer(small_config(ws, out, 1, steps=1), progress=False)
    t1.train()  # writes stage 1's final checkpoint, read by stage 2
    t2 = Trainer(small_config(ws, out, 2, steps=1), progress=False)
    return {1: t1, 2: t2}


def _batch(tr):
    from torch.utils.data import default_collate

    b = default_collate([tr.dataset[i % len(tr.dataset)] for i in range(tr.local_batch)])
    return {k: (v.to(tr.device) if torch.is_tensor(v) else v) for k, v in b.items()}


@pytest.mark.parametrize("stage", [1, 2])
def test_train_step(benchmark, trainers, stage):
    tr = trainers[stage]
    batch = _batch(tr)
    loss, logs = tr.train_step(batch)
    assert torch.isfinite(loss)
    if stage == 2:
        assert {"ldm", "orster", "orster_nll", "kl"} <= set(logs)

    def run():
        tr.train_step(batch)
        torch.cuda.synchronize()

    benchmark.group = "small preset: one training step"
    benchmark.pedantic(run, warmup_rounds=3, rounds=15, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once for correctness only
        return
    _STATE[stage] = benchmark.stats.stats.median
    if stage == 2:
        with AttentionTimer() as at:
            torch.cuda.synchronize()
            import time

            t0 = time.perf_counter()
            for _ in range(5):
                run()
            total = time.perf_counter() - t0
        benchmark.extra_info["orster_attention_share"] = at.seconds / total
        benchmark.extra_info["orster_attention_calls_per_step"] = at.calls / 5
        if 1 in _STATE:
            benchmark.extra_info["stage2_over_stage1"] = _STATE[2] / _STATE[1]
