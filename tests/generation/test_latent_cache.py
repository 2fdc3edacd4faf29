"""Latents encoded once per run (data.cache_latents): the same data in the same order as the
DataLoader, the same losses as encoding every step, and refused where a stage needs pixels."""
import json
import os

import pytest
import torch
from torch.utils.data import Dataset

from helpers import make_workspace, tiny_overrides
from orster4d.generation.training.config import resolve_config
from orster4d.generation.training.data import make_loader
from orster4d.generation.training.latents import encode_dataset, latent_batches
from orster4d.generation.training.trainer import Trainer

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(str(tmp_path_factory.mktemp("ws_cache")))


class _Indexed(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"i": torch.tensor(i)}


@pytest.mark.parametrize("world", [1, 2])
def test_bank_batches_follow_the_loader_order(world):
    n, batch, seed, start = 7, 3, 5, 4
    bank = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1, 1) + 100.0
    for rank in range(world):
        loader = iter(make_loader(_Indexed(n), batch, seed, start, rank, world, 0))
        served = latent_batches(bank, batch, seed, start, rank, world, torch.device("cpu"))
        for _ in range(6):  # crosses epoch boundaries
            want = next(loader)["i"]
            got = next(served)["latents"].reshape(-1) - 100.0
            assert got.long().tolist() == want.tolist()


def test_encode_dataset_matches_per_video_encoding(ws):
    from orster4d.generation.models.vae import encode_video, load_image_vae
    from orster4d.generation.training.data import OrbitalVideoDataset

    vae = load_image_vae(ws["vae"], device=torch.device("cpu"))
    ds = OrbitalVideoDataset(ws["data"], 8, 32)
    bank = encode_dataset(vae, ds, torch.device("cpu"))
    assert bank.shape[0] == len(ds) and bank.dtype == torch.float32
    for i in range(len(ds)):
        one = encode_video(vae, ds[i]["video"][None])[0]
        torch.testing.assert_close(bank[i], one, rtol=1e-5, atol=1e-5)
    assert not torch.equal(bank[0], bank[1])


def _losses(out):
    with open(os.path.join(out, "stage1", "log.jsonl")) as f:
        return [json.loads(ln)["loss"] for ln in f]


def test_cached_and_per_step_encoding_train_alike(ws, tmp_path, monkeypatch):
    """Both runs see the same clean latents at every step (to float32 rounding of the batched
    encode); the losses then agree closely (Adam's first steps amplify rounding, hence the bound)."""
    from orster4d.generation.training.stages import Stage1

    orig = Stage1.latents
    seen = {}

    def recording(self, batch):
        z = orig(self, batch)
        seen.setdefault(self._run, []).append(z.detach().clone())
        return z

    monkeypatch.setattr(Stage1, "latents", recording)
    runs = {}
    for cache in (True, False):
        out = str(tmp_path / str(cache))
        cfg = resolve_config("tiny", 1, overrides=tiny_overrides(ws, out, steps=4)
                             + [f"data.cache_latents={json.dumps(cache)}"])
        tr = Trainer(cfg, progress=False)
        tr.stage._run = cache
        assert (tr.latent_bank is not None) == cache
        tr.train()
        runs[cache] = _losses(out)
    assert len(seen[True]) == len(seen[False]) == 4
    for a, b in zip(seen[True], seen[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(seen[True][0], seen[True][1])  # the steps do see different batches
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    assert runs[True] == pytest.approx(runs[False], rel=1e-2)


def test_cache_refused_for_a_stage_that_reads_pixels(ws, tmp_path):
    out = str(tmp_path / "s3")
    cfg = resolve_config("tiny", 3, overrides=tiny_overrides(ws, out, steps=2) + ["data.cache_latents=true"])
    with pytest.raises(ValueError, match="data.cache_latents=true: stage 3 reads the videos' pixels"):
        Trainer(cfg, progress=False)
    assert not os.path.exists(out)
    with pytest.raises(ValueError, match="data.cache_latents='sometimes'"):
        resolve_config("tiny", 1, overrides=tiny_overrides(ws, out) + ["data.cache_latents=sometimes"])
