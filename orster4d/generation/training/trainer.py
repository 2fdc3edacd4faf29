"""The training loop shared by all stages: data, DDP, bf16, EMA, logs, checkpoints, resume.

Output layout (``out_dir/stage{N}/``): ``checkpoint-{step:06d}/`` every ``train.ckpt_every`` steps
and at the end (the last ``train.keep_checkpoints`` are kept), ``final/`` (the last checkpoint's copy, read by stage N+1), ``log.jsonl`` (one JSON
object per logged step: step, losses (averaged over ranks), lr, step and data-wait time, samples/s), ``events.*`` when
``train.tensorboard`` is on and TensorBoard is installed. A checkpoint holds ``model/`` (the
stage's model folders), ``optimizer.pt``, ``lr_scheduler.pt``, ``ema.safetensors``, ``rng.pt``
(Python, NumPy, torch CPU/CUDA and the training generator), ``state.json`` (stage, step) and the
resolved ``config.json``.

Exact resume: the data order is a function of (seed, global position), timesteps/noise come from
a generator whose state is checkpointed, so a resumed run reproduces the uninterrupted losses.
Ctrl-C: the loop finishes nothing half-way; the last completed step is checkpointed, then
``KeyboardInterrupt`` propagates.
Several GPUs: under ``torchrun`` (``WORLD_SIZE`` > 1) the stage module is wrapped in DDP (NCCL on
CUDA, gloo on CPU); ``data.batch_size`` is the global batch, split evenly across ranks; only rank
0 writes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from typing import Dict, Optional

import numpy as np
import torch

from orster4d.generation.training.config import check_stage, save_config
from orster4d.generation.training.data import OrbitalVideoDataset, make_loader
from orster4d.generation.training.stages import STAGE_CLASSES


# ------------------------------------------------------------------------------------------------
def setup_distributed(device_pref: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but CUDA is not available")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


class EMA:
    """Exponential moving average of the trainable parameters (float32 copies)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach().float(), 1.0 - self.decay)


def rng_state(gen: torch.Generator) -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
          "gen": gen.get_state(), "gen_device": str(gen.device)}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, gen: torch.Generator) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    gen.set_state(st["gen"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def latest_checkpoint(stage_dir: str) -> Optional[str]:
    if not os.path.isdir(stage_dir):
        return None
    cks = sorted(d for d in os.listdir(stage_dir) if d.startswith("checkpoint-")
                 and os.path.isfile(os.path.join(stage_dir, d, "state.json")))
    return os.path.join(stage_dir, cks[-1]) if cks else None


def _to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


# ------------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: dict, resume: bool = False, progress: bool = True):
        check_stage(cfg["stage"])
        self.cfg = cfg
        self.stage_n = int(cfg["stage"])
        self.rank, self.world, self.device = setup_distributed(cfg["device"])
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        tr, dc = cfg["train"], cfg["data"]
        if dc["batch_size"] % self.world:
            raise ValueError(f"data.batch_size={dc['batch_size']} is not divisible by the {self.world} processes")
        self.local_batch = dc["batch_size"] // self.world
        self.stage_dir = os.path.join(cfg["out_dir"], f"stage{self.stage_n}")
        # Everything that can be wrong with the inputs is checked here, before any step.
        if not dc["root"]:
            raise ValueError("data.root: set the folder of orbital videos (data.root=...)")
        self.dataset = OrbitalVideoDataset(dc["root"], dc["frames"], dc["resolution"])
        if self.stage_n == 4 and cfg["cond"]["kind"] == "static3d":
            self.dataset.require_static()
        torch.manual_seed(cfg["seed"])
        self.stage = STAGE_CLASSES[self.stage_n](cfg, self.device)
        self._check_latent_size()
        self.params = [p for p in self.stage.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=tr["lr"], weight_decay=tr["weight_decay"])
        warm = max(int(tr["warmup"]), 0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.ema = EMA(self.stage, tr["ema_decay"])
        gdev = self.device if self.device.type == "cuda" else torch.device("cpu")
        self.gen = torch.Generator(device=gdev).manual_seed(cfg["seed"] * 1000 + self.rank)
        self.step = 0
        if resume:
            ck = latest_checkpoint(self.stage_dir)
            if ck is None:
                raise FileNotFoundError(f"--resume: no checkpoint of stage {self.stage_n} under {self.stage_dir}")
            self.load_checkpoint(ck)
        self.module = self.stage
        if self.world > 1:
            self.module = torch.nn.parallel.DistributedDataParallel(
                self.stage, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        mp = tr["mixed_precision"]
        self.autocast = (self.device.type == "cuda" and mp in ("auto", "bf16"))

    def _check_latent_size(self) -> None:
        from orster4d.generation.models.vae import vae_downscale

        res = self.cfg["data"]["resolution"]
        f = vae_downscale(self.stage.frozen.vae)
        if res % f:
            raise ValueError(f"data.resolution={res} is not a multiple of the image VAE's downscale factor {f}")
        unet = self.cfg["model"]["unet"]
        levels = 2 ** (len(unet["block_out_channels"]) - 1)
        if (res // f) % levels:
            raise ValueError(f"data.resolution={res}: latent size {res // f} is not divisible by the UNet's "
                             f"{levels}x downsampling")

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, final: bool = False) -> Optional[str]:
        if self.is_main:
            from safetensors.torch import save_file

            path = os.path.join(self.stage_dir, f"checkpoint-{self.step:06d}")
            tmp = path + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            self.stage.save_model(os.path.join(tmp, "model"), final=final)
            torch.save(self.opt.state_dict(), os.path.join(tmp, "optimizer.pt"))
            torch.save(self.sched.state_dict(), os.path.join(tmp, "lr_scheduler.pt"))
            save_file({k: v.contiguous() for k, v in self.ema.shadow.items()}, os.path.join(tmp, "ema.safetensors"))
            torch.save(rng_state(self.gen), os.path.join(tmp, "rng.pt"))
            save_config(self.cfg, os.path.join(tmp, "config.json"))
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump({"stage": self.stage_n, "step": self.step, "world_size": self.world,
                           "final": final}, f)
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)  # a checkpoint folder is either complete or absent
            keep = int(self.cfg["train"]["keep_checkpoints"])
            old = sorted(d for d in os.listdir(self.stage_dir) if d.startswith("checkpoint-") and not d.endswith(".tmp"))
            for d in (old[:-keep] if keep > 0 else []):
                shutil.rmtree(os.path.join(self.stage_dir, d), ignore_errors=True)
            if final:
                fin = os.path.join(self.stage_dir, "final")
                shutil.rmtree(fin, ignore_errors=True)
                shutil.copytree(path, fin)
        if self.world > 1:
            torch.distributed.barrier()
        return os.path.join(self.stage_dir, f"checkpoint-{self.step:06d}")

    def load_checkpoint(self, path: str) -> None:
        from safetensors.torch import load_file

        with open(os.path.join(path, "state.json")) as f:
            st = json.load(f)
        if st["stage"] != self.stage_n:
            raise ValueError(f"--resume: {path} is a stage-{st['stage']} checkpoint, not stage {self.stage_n}")
        self.stage.load_model(os.path.join(path, "model"))
        self.opt.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), map_location=self.device,
                                            weights_only=False))
        self.sched.load_state_dict(torch.load(os.path.join(path, "lr_scheduler.pt"), weights_only=False))
        self.ema.shadow = {k: v.to(self.device) for k, v in load_file(os.path.join(path, "ema.safetensors")).items()}
        rng = torch.load(os.path.join(path, "rng.pt"), weights_only=False)
        if st.get("world_size", 1) == self.world:
            set_rng_state(rng, self.gen)
        self.step = int(st["step"])
        log = os.path.join(self.stage_dir, "log.jsonl")
        if self.is_main and os.path.isfile(log):  # drop lines of steps the resumed run will redo
            with open(log) as f:
                lines = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= self.step]
            with open(log, "w") as f:
                f.writelines(lines)

    def train_step(self, batch: dict):
        """One optimisation step on a device batch; returns ``(loss, logs)`` and advances ``step``."""
        tr = self.cfg["train"]
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            loss, logs = self.module(batch, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tr["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.params, tr["grad_clip"])
        self.opt.step()
        self.sched.step()
        self.ema.update(self.stage)
        self.step += 1
        return loss, logs

    def _mean_over_ranks(self, logs: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Logged values averaged over the DDP processes (one all-reduce of a small vector)."""
        keys = list(logs)
        vec = torch.stack([torch.as_tensor(logs[k], dtype=torch.float32, device=self.device).detach().reshape(())
                           for k in keys])
        if self.world > 1:
            torch.distributed.all_reduce(vec)
            vec = vec / self.world
        return dict(zip(keys, vec.tolist()))

    # -- loop -------------------------------------------------------------------------------------
    def _log_writer(self):
        if not self.is_main:
            return None, None
        os.makedirs(self.stage_dir, exist_ok=True)
        tb = None
        if self.cfg["train"]["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(self.stage_dir)
            except ImportError:
                print("train.tensorboard: TensorBoard is not installed; logging to log.jsonl only")
                tb = None
        return open(os.path.join(self.stage_dir, "log.jsonl"), "a"), tb

    def train(self) -> str:
        """Run to ``train.steps``; returns the final checkpoint folder."""
        tr = self.cfg["train"]
        total = int(tr["steps"])
        loader = make_loader(self.dataset, self.local_batch, self.cfg["seed"], self.step, self.rank,
                             self.world, self.cfg["data"]["num_workers"])
        it = iter(loader)
        log, tb = self._log_writer()
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=self.step, desc=f"stage {self.stage_n}", dynamic_ncols=True)
        self.module.train()
        try:
            while self.step < total:
                t0 = time.perf_counter()
                batch = _to_device(next(it), self.device)
                t_data = time.perf_counter() - t0
                loss, logs = self.train_step(batch)
                if bar is not None:
                    bar.update(1)
                # The host reads losses (and waits for the device) only on logging steps.
                if self.step % tr["log_every"] == 0 or self.step == total:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    vals = self._mean_over_ranks({"loss": loss.detach(), **logs})
                    if not math.isfinite(vals["loss"]):
                        raise FloatingPointError(f"stage {self.stage_n} step {self.step}: loss is {vals['loss']}")
                    rec = {"step": self.step, **vals,
                           "lr": self.sched.get_last_lr()[0], "step_time_s": dt, "data_time_s": t_data,
                           "samples_per_s": self.cfg["data"]["batch_size"] / dt}
                    if self.is_main:
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        if tb is not None:
                            for k, v in rec.items():
                                if k != "step":
                                    tb.add_scalar(f"stage{self.stage_n}/{k}", v, self.step)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k not in ("step", "lr", "step_time_s")})
                if self.step % tr["ckpt_every"] == 0 and self.step < total:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            path = self.save_checkpoint()
            if self.is_main:
                print(f"\ninterrupted: checkpoint of step {self.step} at {path} (continue with --resume)")
            raise
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        if tb is not None:
            tb.close()
        return self.save_checkpoint(final=True)


def train_stage(cfg: dict, resume: bool = False, progress: bool = True) -> Optional[str]:
    """Train one stage; returns the final checkpoint folder on rank 0 (None on other ranks)."""
    tr = Trainer(cfg, resume=resume, progress=progress)
    path = tr.train()
    if tr.world > 1:
        torch.distributed.destroy_process_group()
    return path if tr.is_main else None
