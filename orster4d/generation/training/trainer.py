"""The training loop shared by all stages: data, DDP, bf16, EMA, logs, checkpoints, resume.

Output layout (``out_dir/stage{N}/``, see :mod:`orster4d.generation.training.outputs` for the
rules that keep it safe): ``checkpoint-{step:06d}/`` every ``train.ckpt_every`` steps, on Ctrl-C
and at the end (the newest ``train.keep_checkpoints`` are kept, by step); ``final`` (a link to
``final-{step}/``, a copy of the last checkpoint, read by stage N+1); ``log.jsonl`` (one JSON
object per logged step: step, losses averaged over ranks, lr, step and data-wait time,
samples/s); ``tensorboard/`` when ``train.tensorboard`` is on and TensorBoard is installed (see
"Logs" below); ``curves.png`` (each loss against the step, redrawn at every checkpoint);
``orster4d-manifest.json`` (what the trainer wrote). A checkpoint holds ``model/`` (the stage's
model folders), ``optimizer.pt``, ``lr_scheduler.pt``, ``ema.safetensors``, ``rng.pt`` (Python,
NumPy, torch CPU/CUDA and the training generator), the resolved ``config.json`` and, written
last, ``state.json`` (stage, step, world size, and every other file's size and SHA-256).

Start: an existing stage folder is refused unless ``resume`` (continue from its newest whole
checkpoint) or ``overwrite`` (remove what the trainer wrote there; refused when foreign files are
present). The data is read and checked completely before any model is built or any folder made.

Exact resume: the data order is a function of (seed, global position), timesteps/noise come from
a generator whose state is checkpointed, so a resumed run reproduces the uninterrupted losses and
weights bit for bit. Ctrl-C (SIGINT) only sets a flag: the step in flight completes, the
checkpoint of that step boundary is written exactly like a periodic one, then
``KeyboardInterrupt`` propagates. A second Ctrl-C interrupts at once; the checkpoint is then of
the last completed step (RNG states as they were when it ended), or none when the optimiser
update itself was cut.

Logs (written with :mod:`orster4d.logs`, rank 0 only): TensorBoard scalar tags ``loss/total``,
``loss/<term>`` (every loss term the stage logs, e.g. ``loss/ldm``, ``loss/kl``), ``lr``,
``throughput/samples_per_s``, ``time/step_s``, ``time/data_s`` and, on CUDA,
``gpu/memory_allocated_mb`` (MiB held by tensors on rank 0's device). ``curves.png`` has one
panel per loss (``loss`` and each term; log scale where every value is positive). A resumed run
cuts ``log.jsonl`` back to the checkpoint's step and opens TensorBoard with ``purge_step`` at the
next step, so the earlier session's later events are hidden and the curves do not double back.

Several GPUs: under ``torchrun`` (``WORLD_SIZE`` > 1) the stage module is wrapped in DDP (NCCL on
CUDA, gloo on CPU) with ``train.ddp_bucket_mb`` MiB gradient buckets, whose all-reduces overlap
the backward pass; ``find_unused_parameters`` only for stages that can leave parameters without
gradients. ``data.batch_size`` is the global batch, split evenly across ranks; only rank 0
writes; the Ctrl-C flag is agreed between ranks every step.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from typing import Dict, Optional

import numpy as np
import torch

from orster4d.generation.training.config import check_stage, save_config
from orster4d.generation.training.data import OrbitalVideoDataset, make_loader
from orster4d.generation.training.latents import encode_dataset, latent_batches
from orster4d.generation.training.outputs import StageFolder, check_stage_folder, file_table, write_pause
from orster4d.generation.training.stages import STAGE_CLASSES
from orster4d.logs import CURVES, JSONL, TB_FOLDER, cut_jsonl, open_tensorboard, write_curves

# log.jsonl fields that are not loss terms (the rest, besides "loss", are the stage's terms)
_NOT_TERMS = ("step", "loss", "lr", "step_time_s", "data_time_s", "samples_per_s")


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
    """Exponential moving average of the trainable parameters (float32 copies).

    ``update`` is one fused ``torch._foreach_lerp_`` over all parameters (no Python loop over
    tensors). ``shadow`` maps parameter names to the averages.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.averages = [p.detach().float().clone() for p in self.params]

    @property
    def shadow(self) -> Dict[str, torch.Tensor]:
        return dict(zip(self.names, self.averages))

    def load(self, shadow: Dict[str, torch.Tensor]) -> None:
        if set(shadow) != set(self.names):
            raise ValueError(f"EMA state names differ from the model's trainable parameters "
                             f"(missing {sorted(set(self.names) - set(shadow))[:3]}, "
                             f"unexpected {sorted(set(shadow) - set(self.names))[:3]})")
        for avg, k in zip(self.averages, self.names):
            avg.copy_(shadow[k])

    @torch.no_grad()
    def update(self) -> None:
        cur = [p.detach() if p.dtype == torch.float32 else p.detach().float() for p in self.params]
        torch._foreach_lerp_(self.averages, cur, 1.0 - self.decay)


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


def _to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class _Window:
    """Wall-clock start, first step and summed data-wait seconds of the steps between log lines."""

    def __init__(self, t0: float, step: int):
        self.t0, self.step, self.data_s = t0, step, 0.0


class _Interrupt:
    """SIGINT handling around the loop: the first Ctrl-C sets ``requested``, the second raises."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ------------------------------------------------------------------------------------------------
class Trainer:
    """One stage's training run. ``cfg`` is read, never changed (the trainer keeps a resolved copy
    in ``self.cfg``, with the architecture the stage found in ``model.unet``)."""

    def __init__(self, cfg: dict, resume: bool = False, progress: bool = True, overwrite: bool = False):
        cfg = copy.deepcopy(cfg)
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
        if dc.get("cache_latents", "auto") is True and not STAGE_CLASSES[self.stage_n].latent_only:
            raise ValueError(f"data.cache_latents=true: stage {self.stage_n} reads the videos' pixels, not only "
                             f"their latents (only stages 1 and 2 can train on cached latents)")
        self.stage_dir = os.path.join(cfg["out_dir"], f"stage{self.stage_n}")
        # Everything that can be wrong with the inputs is checked here, before any step, and
        # before anything is written.
        self.folder = StageFolder(self.stage_dir)
        resume_from = check_stage_folder(self.folder, resume, overwrite)
        if not dc["root"]:
            raise ValueError("data.root: set the folder of orbital videos (data.root=...)")
        self.dataset = OrbitalVideoDataset(dc["root"], dc["frames"], dc["resolution"])
        torch.manual_seed(cfg["seed"])
        # Stage 4 checks the data against its condition kinds and video modes before it loads a model.
        self.stage = STAGE_CLASSES[self.stage_n](cfg, self.device, data=self.dataset)
        if self.is_main:
            for line in self.stage.notices:
                print(f"orster4d-train: {line}", file=sys.stderr)
        self.cfg["model"]["unet"] = dict(self.stage.unet_config)
        self._check_latent_size()
        self.params = [p for p in self.stage.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=tr["lr"], weight_decay=tr["weight_decay"])
        warm = int(tr["warmup"])
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.ema = EMA(self.stage, tr["ema_decay"])
        gdev = self.device if self.device.type == "cuda" else torch.device("cpu")
        self.gen = torch.Generator(device=gdev).manual_seed(cfg["seed"] * 1000 + self.rank)
        self.step = 0
        self.resumed_step: Optional[int] = None
        if overwrite and self.is_main and not self.folder.is_empty():
            self.folder.clear()  # only now: every input has been checked and every model built
            self.folder = StageFolder(self.stage_dir)
        if resume_from is not None:
            if self.is_main:
                print(f"orster4d-train: resuming stage {self.stage_n} from {resume_from}", file=sys.stderr)
            self.load_checkpoint(resume_from)
        if self.world > 1:
            torch.distributed.barrier()
        self.module = self.stage
        if self.world > 1:
            self.module = torch.nn.parallel.DistributedDataParallel(
                self.stage, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.stage.find_unused_parameters,
                bucket_cap_mb=float(tr["ddp_bucket_mb"]), gradient_as_bucket_view=True)
        mp = tr["mixed_precision"]
        self.autocast = (self.device.type == "cuda" and mp in ("auto", "bf16"))
        cache = dc.get("cache_latents", "auto")
        self.latent_bank: Optional[torch.Tensor] = None
        if self.stage.latent_only and cache in ("auto", True):
            self.latent_bank = encode_dataset(self.stage.frozen.vae, self.dataset, self.device,
                                              num_workers=dc["num_workers"], progress=self.progress)

    def _check_latent_size(self) -> None:
        from orster4d.generation.models.vae import vae_downscale

        res = self.cfg["data"]["resolution"]
        f = vae_downscale(self.stage.frozen.vae)
        if res % f:
            raise ValueError(f"data.resolution={res} is not a multiple of the image VAE's downscale factor {f}")
        levels = 2 ** (len(self.stage.unet_config["block_out_channels"]) - 1)
        if (res // f) % levels:
            raise ValueError(f"data.resolution={res}: latent size {res // f} is not divisible by the UNet's "
                             f"{levels}x downsampling")

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, final: bool = False, rng: Optional[dict] = None) -> str:
        """Write ``checkpoint-{step}`` (whole or not at all), prune, and with ``final`` replace
        ``final``. ``rng``: the RNG states to store (default: the current ones)."""
        name = f"checkpoint-{self.step:06d}"
        path = os.path.join(self.stage_dir, name)
        if self.is_main:
            from safetensors.torch import save_file

            tmp = path + ".tmp"
            self.folder.own(name + ".tmp/", name + "/")
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
            writes = [
                lambda: self.stage.save_model(os.path.join(tmp, "model"), final=final),
                lambda: torch.save(self.opt.state_dict(), os.path.join(tmp, "optimizer.pt")),
                lambda: torch.save(self.sched.state_dict(), os.path.join(tmp, "lr_scheduler.pt")),
                lambda: save_file({k: v.contiguous() for k, v in self.ema.shadow.items()},
                                  os.path.join(tmp, "ema.safetensors")),
                lambda: torch.save(rng if rng is not None else rng_state(self.gen), os.path.join(tmp, "rng.pt")),
                lambda: save_config(self.cfg, os.path.join(tmp, "config.json")),
            ]
            for write in writes:
                write()
                write_pause()
            state = {"stage": self.stage_n, "step": self.step, "world_size": self.world, "final": final,
                     "files": file_table(tmp)}
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump(state, f, indent=1)
            write_pause()
            old = None
            if os.path.isdir(path):  # this step written before (a finished run resumed): set it aside
                old = name + ".old"
                self.folder.own(old + "/")
                if os.path.isdir(os.path.join(self.stage_dir, old)):
                    shutil.rmtree(os.path.join(self.stage_dir, old))
                os.replace(path, os.path.join(self.stage_dir, old))
            os.replace(tmp, path)  # a checkpoint folder is whole or absent
            self.folder.disown(name + ".tmp/")
            if old is not None:
                self.folder.remove(old + "/")
            write_pause()
            self.folder.prune(self.cfg["train"]["keep_checkpoints"], keep_step=self.step)
            if final:
                self.folder.replace_final(path)
            self._write_curves()
        if self.world > 1:
            torch.distributed.barrier()
        return path

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
        self.ema.load({k: v.to(self.device) for k, v in load_file(os.path.join(path, "ema.safetensors")).items()})
        rng = torch.load(os.path.join(path, "rng.pt"), weights_only=False)
        if st.get("world_size", 1) == self.world:
            set_rng_state(rng, self.gen)
        self.step = self.resumed_step = int(st["step"])
        if self.is_main:
            self.folder.remove_partial()
            self.folder.own(JSONL + ".tmp")  # drop lines of steps the resumed run will redo
            cut_jsonl(os.path.join(self.stage_dir, JSONL), "step", self.step)
            self.folder.disown(JSONL + ".tmp")

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
        self._updating = True
        self.opt.step()
        self.sched.step()
        self.ema.update()
        self.step += 1
        self._updating = False
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

    def _agreed(self, flag: bool) -> bool:
        """True on every rank when any rank has ``flag`` (one tiny all-reduce under DDP)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    # -- loop -------------------------------------------------------------------------------------
    def batches(self):
        """This rank's device batches from step ``self.step`` on (endless): ``{"latents"}`` from the
        latent bank when there is one, else the DataLoader's video batches (the same videos in the
        same order either way)."""
        seed = self.cfg["seed"]
        if self.latent_bank is not None:
            yield from latent_batches(self.latent_bank, self.local_batch, seed, self.step, self.rank, self.world,
                                      self.device)
            return
        loader = make_loader(self.dataset, self.local_batch, seed, self.step, self.rank, self.world,
                             self.cfg["data"]["num_workers"])
        for batch in loader:
            yield _to_device(batch, self.device)

    def _log_writer(self):
        """``(log.jsonl opened for appending, SummaryWriter or None)`` on rank 0, ``(None, None)``
        elsewhere. A resumed run's writer hides the earlier session's events past the checkpoint."""
        if not self.is_main:
            return None, None
        self.folder.own(JSONL)
        tb = None
        if self.cfg["train"]["tensorboard"]:
            self.folder.own(TB_FOLDER + "/")
            purge = None if self.resumed_step is None else self.resumed_step + 1
            tb = open_tensorboard(os.path.join(self.stage_dir, TB_FOLDER), purge,
                                  lambda msg: print(f"train.tensorboard: {msg}", file=sys.stderr))
            if tb is None:
                self.folder.disown(TB_FOLDER + "/")
        return open(os.path.join(self.stage_dir, JSONL), "a"), tb

    def _write_curves(self) -> None:
        """Redraws ``curves.png`` (``loss`` and each loss term against the step) from ``log.jsonl``."""
        path = os.path.join(self.stage_dir, JSONL)
        if not os.path.isfile(path):
            return
        with open(path) as f:
            history = [json.loads(ln) for ln in f if ln.strip()]
        terms = list(dict.fromkeys(k for h in history for k in h if k not in _NOT_TERMS))
        self.folder.own(CURVES, CURVES + ".tmp")
        tmp = os.path.join(self.stage_dir, CURVES + ".tmp")
        write_curves(history, tmp, keys=["loss", *terms], x="step", x_label="step")
        os.replace(tmp, os.path.join(self.stage_dir, CURVES))
        self.folder.disown(CURVES + ".tmp")

    def train(self) -> str:
        """Run to ``train.steps``; returns the final checkpoint folder."""
        tr = self.cfg["train"]
        total = int(tr["steps"])
        it = self.batches()
        log, tb = self._log_writer()
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=self.step, desc=f"stage {self.stage_n}", dynamic_ncols=True)
        self.module.train()
        self._updating = False
        saved_step = self.resumed_step  # that checkpoint exists already
        step_rng = rng_state(self.gen)  # the RNG states at the last step boundary
        # Timing window: the steps since the last log line (or checkpoint), timed as one stretch,
        # since the host runs ahead of the device between its synchronisations.
        window = _Window(time.perf_counter(), self.step)
        try:
            with _Interrupt() as stop:
                while self.step < total:
                    if self._agreed(stop.requested):
                        break
                    t0 = time.perf_counter()
                    try:
                        batch = next(it)
                    except Exception:
                        if stop.requested:  # Ctrl-C also reaches data-loader workers
                            break
                        raise
                    window.data_s += time.perf_counter() - t0
                    loss, logs = self.train_step(batch)
                    step_rng = rng_state(self.gen)
                    if bar is not None:
                        bar.update(1)
                    # The host reads losses (and waits for the device) only on logging steps.
                    if self.step % tr["log_every"] == 0 or self.step == total:
                        self._log_step(loss, logs, window, log, tb, bar)
                        window = _Window(time.perf_counter(), self.step)
                    if self.step % tr["ckpt_every"] == 0 and self.step < total:
                        self.save_checkpoint(rng=step_rng)
                        saved_step = self.step
                        window = _Window(time.perf_counter(), self.step)  # the checkpoint is not a step
            interrupted = stop.requested
        except KeyboardInterrupt:  # a second Ctrl-C, or raised inside a step
            self._close(bar, log, tb)
            self._checkpoint_after_interrupt(saved_step, step_rng)
            raise
        except Exception:  # e.g. a non-finite loss: the logs so far stay readable
            self._close(bar, log, tb)
            raise
        self._close(bar, log, tb)
        if interrupted:  # at a step boundary: the same state a periodic checkpoint holds
            self._checkpoint_after_interrupt(saved_step, step_rng)
            raise KeyboardInterrupt
        return self.save_checkpoint(final=True, rng=step_rng)

    @staticmethod
    def _close(bar, log, tb) -> None:
        for h in (bar, log, tb):
            if h is not None:
                h.close()

    def _checkpoint_after_interrupt(self, saved_step: Optional[int], step_rng: dict) -> None:
        """Checkpoint the last completed step (unless written already, or unless the optimiser
        update was cut: then the weights are of no step and the last checkpoint stays)."""
        if self._updating:
            msg = (f"interrupted inside the optimiser update of step {self.step + 1}; no checkpoint "
                   f"written (the last one stays)")
        else:
            path = os.path.join(self.stage_dir, f"checkpoint-{self.step:06d}")
            if saved_step != self.step:
                path = self.save_checkpoint(rng=step_rng)
            msg = f"interrupted at step {self.step}; checkpoint {path} (continue with --resume)"
        if self.is_main:
            print(msg, file=sys.stderr)

    def _log_step(self, loss, logs, window: "_Window", log, tb, bar) -> None:
        """One log line: this step's losses; the mean step and data-wait time and the samples/s of
        the steps in ``window`` (device synchronised at its end)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        steps = max(1, self.step - window.step)
        elapsed = time.perf_counter() - window.t0
        dt, t_data = elapsed / steps, window.data_s / steps
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
                tb.add_scalar("loss/total", rec["loss"], self.step)
                for k in logs:
                    tb.add_scalar(f"loss/{k}", rec[k], self.step)
                tb.add_scalar("lr", rec["lr"], self.step)
                tb.add_scalar("throughput/samples_per_s", rec["samples_per_s"], self.step)
                tb.add_scalar("time/step_s", dt, self.step)
                tb.add_scalar("time/data_s", t_data, self.step)
                if self.device.type == "cuda":
                    tb.add_scalar("gpu/memory_allocated_mb", torch.cuda.memory_allocated(self.device) / 2 ** 20,
                                  self.step)
        if bar is not None:
            bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k not in ("step", "lr", "step_time_s")})


def train_stage(cfg: dict, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Optional[str]:
    """Train one stage; returns the final checkpoint folder on rank 0 (None on other ranks)."""
    tr = Trainer(cfg, resume=resume, progress=progress, overwrite=overwrite)
    path = tr.train()
    if tr.world > 1:
        torch.distributed.destroy_process_group()
    return path if tr.is_main else None
