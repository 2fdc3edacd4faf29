"""The whole protocol: world, image VAE, teachers, each row's stages, scoring, 4D assets, tables.

Everything lives under one root::

    world/                 the data-scarcity world (orster4d.data.world), built or completed
    runs/<kind>-<hash>/    cached runs (vae, clip, s1..s4 training runs, eval: video scores, gen:
                           orster4d-generate outputs per held-out object, asset: 4D assets and
                           their scores), see cache.py
    subsets/scarce4d_<n>/  first-n 4D objects (scarcity curve)
    strips/<row>/seed<s>/  generated (top) vs true (bottom) orbital frames of each held-out object
    reproduction.json      every row, seed, run, score and setting
    reproduction.md        the tables (mean and 95% interval over seeds)

Shared models: the image VAE (trained on the static-3D and video frames), the random tiny CLIP
(no pretrained text/image encoder is available offline; ``clip=`` names a real one), the spatial
teacher (stage 1 on the static-3D set) and the temporal teacher (stage 1 on the video set), both
with seed 0. Per row and seed: stages 1-4 on the 4D set (less the row's ``skip_stages``; stage 4
then starts from the last stage trained) with the row's overrides, each stage cached by its config
and inputs, so rows share every stage they have in common (all rows share stage 1 of a seed).
Training goes through ``orster4d.generation.training.trainer.train_stage`` only; an interrupted
run resumes from its last checkpoint.

Scores (the row's ``score``): ``video``, the generated orbital videos against the true ones; and
``asset``, per held-out object and condition a 4D asset (``orster4d-generate --video-only`` on the
stage-4 model, cached per model and seed and shared by every row of that model, then
``orster4d-construct`` with the preset's schedule and the row's construction settings, cached by
them) rendered at the held-out views and times of the multi-view ground truth.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from orster4d.reproduce.cache import Run, file_lock, key_hash, training_key
from orster4d.reproduce.presets import ReproPreset, get_preset
from orster4d.reproduce.rows import Row, find_rows, scarcity_rows
from orster4d.reproduce.scoring import CONDITIONS, METRICS
from orster4d.reproduce.stats import mean_ci


@dataclass
class ProtocolOptions:
    """Inputs of :func:`run_protocol` (the ``orster4d-reproduce`` flags)."""

    root: str
    preset: str = "tiny"
    rows: Optional[List[str]] = None  # names; None: every row
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    world_seed: int = 0
    scarcity: bool = False
    device: str = "auto"
    clip: Optional[str] = None
    lpips_weights: Optional[str] = None
    i3d: Optional[str] = None
    progress: bool = True
    strips: bool = True
    nproc: int = 1  # processes per training run (torchrun, one per GPU); 1: in this process
    jobs: int = 1  # runs made at once, in worker processes sharing the device(s); 1: one after another here
    cached_only: bool = False  # make nothing: tables from the finished runs, rows missing one are "not run"
    start_by_s: Optional[float] = None  # no (row, seed) task starts later than this after the start; None: no limit


TEACHER_SETS = {"spatial": "static3d", "temporal": "video"}  # teacher role -> the world set it trains on


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def check_options(opts: ProtocolOptions):
    """Validate everything before any work; returns ``(preset, rows)``. Raises ValueError."""
    preset = get_preset(opts.preset)
    extra = scarcity_rows(preset.scarcity) if opts.scarcity else []
    rows = find_rows(opts.rows, extra) if opts.rows else find_rows(None, extra)
    if opts.rows and opts.scarcity:  # --rows X --scarcity: X and the curve's rows
        rows += [r for r in extra if r not in rows]
    seeds = list(opts.seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: distinct integers >= 0, got {opts.seeds}")
    if isinstance(opts.nproc, bool) or not isinstance(opts.nproc, int) or opts.nproc < 1:
        raise ValueError(f"--nproc: an integer >= 1, got {opts.nproc!r}")
    if isinstance(opts.jobs, bool) or not isinstance(opts.jobs, int) or opts.jobs < 1:
        raise ValueError(f"--jobs: an integer >= 1, got {opts.jobs!r}")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {opts.device!r}")
    sb = opts.start_by_s
    if sb is not None and (isinstance(sb, bool) or not isinstance(sb, (int, float)) or not sb >= 0):
        raise ValueError(f"--start-by: seconds >= 0, got {opts.start_by_s!r}")
    for flag, path in (("--clip", opts.clip), ("--lpips-weights", opts.lpips_weights), ("--i3d", opts.i3d)):
        if path and not os.path.exists(path):
            raise ValueError(f"{flag}: {path} not found")
    from orster4d.reproduce.scoring import check_construct_settings

    check_construct_settings(preset.construct, f"preset {preset.name!r}")
    n4d = preset.world["scarce4d"]
    for r in rows:
        if r.scarce4d is not None and not 1 <= r.scarce4d <= n4d:
            raise ValueError(f"row {r.name!r}: needs {r.scarce4d} 4D objects, the {preset.name} world has {n4d}")
    return preset, rows


class NotCached(Exception):
    """A run the row needs is not finished (``cached_only``)."""


class Protocol:
    """One protocol run (see the module docstring); :meth:`run` returns the reproduction dict."""

    def __init__(self, opts: ProtocolOptions):
        self.opts = opts
        self.preset: ReproPreset
        self.preset, self.rows = check_options(opts)
        self.root = Path(opts.root)
        self.events: List[dict] = []
        self.throughput: Dict[str, dict] = {}  # run folder -> {"stage", "samples_per_s"} (median over steps)
        self.teacher_runs: Optional[Dict[str, tuple]] = None  # see teachers()
        self.t0 = time.perf_counter()
        self.stopped = False  # past --start-by: nothing new is made, what is unfinished reads "not run"

    # -- shared inputs ----------------------------------------------------------------------------
    def world(self, build: bool = True) -> None:
        """Build (or complete) the world; ``build=False``: only name it (a worker process of
        :meth:`run_parallel`, after the parent built it)."""
        from orster4d.data.world import WorldSpec, build_world

        self.spec = WorldSpec(seed=self.opts.world_seed, **self.preset.world)
        if self.opts.cached_only:
            from orster4d.data.world import WORLD_FILE

            if not (self.root / "world" / WORLD_FILE).is_file():
                raise ValueError(f"--cached-only: {self.root / 'world'} holds no world yet")
        elif build:
            from orster4d.data.world import WORLD_FILE

            t0, fresh = time.perf_counter(), not (self.root / "world" / WORLD_FILE).is_file()
            build_world(self.root / "world", self.spec, device=self._device(), progress=self.opts.progress)
            if fresh:  # world.json is written last: without it the world was built (or completed) now
                self.events.append({"run": "world", "action": "built", "seconds": round(time.perf_counter() - t0, 2)})
        self.world_hash = key_hash({"kind": "world", "spec": self.spec.to_dict()})

    def _device(self) -> str:
        import torch

        if self.opts.device == "cuda" or (self.opts.device == "auto" and torch.cuda.is_available()):
            return "cuda"
        return "cpu"

    def _locked(self, run: Run):
        """``run.locked()``, except with ``cached_only``, which writes nothing and so takes no lock:
        it reads ``done.json`` (written atomically) and never waits on a worker still holding one."""
        return contextlib.nullcontext(run) if self.opts.cached_only else run.locked()

    def _check_cached(self, run: Run) -> None:
        if self.opts.cached_only or self.stopped:
            raise NotCached(run.path.name)

    def deadline(self) -> Optional[float]:
        """``time.perf_counter()`` value after which no new task starts (``--start-by``), or None."""
        return None if self.opts.start_by_s is None else self.t0 + float(self.opts.start_by_s)

    def _check_deadline(self) -> None:
        """Past ``--start-by`` (checked between tasks): from now on nothing new is made."""
        d = self.deadline()
        if d is not None and time.perf_counter() >= d and not self.stopped:
            self.stopped = True
            self.events.append({"run": None, "action": "stopped starting tasks (--start-by)"})

    def _note(self, run: Run, action: str) -> None:
        """Records what happened to ``run``; a run made in this process (after ``run.prepare``) also
        gets the wall seconds it took here (a resumed run: only this session's part)."""
        event = {"run": run.path.name, "action": action}
        started = getattr(run, "started", None)
        if action != "reused" and started is not None:
            event["seconds"] = round(time.perf_counter() - started, 2)
        self.events.append(event)

    def data_id(self, set_name: str, n: Optional[int] = None) -> str:
        return f"{self.world_hash}/{set_name}" + (f"[:{n}]" if n is not None else "")

    def vae(self) -> None:
        from orster4d.data.world import heldout_objects, read_world
        from orster4d.reproduce.vae import collect_frames, reconstruction_psnr, train_image_vae

        p = self.preset
        run = Run(self.root, "vae", {"kind": "vae", "config": p.vae, "steps": p.vae_steps, "batch": p.vae_batch,
                                     "lr": p.vae_lr, "seed": 0, "data": [self.data_id("static3d"),
                                                                         self.data_id("video")]})
        self.vae_run = run
        self.vae_dir = str(run.path / "vae")
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                return
            if self.opts.cached_only:
                raise ValueError(f"--cached-only: the image VAE ({run.path}) is not trained yet")
            run.prepare(fresh=True)
            meta = read_world(self.root / "world")
            folders = [self.root / "world" / e["folder"] for s in ("static3d", "video") for e in meta["sets"][s]]
            info = train_image_vae(collect_frames(folders), self.vae_dir, p.vae, p.vae_steps, p.vae_batch, p.vae_lr,
                                   device=self._device(), progress=self.opts.progress)
            from orster4d.generation.training.data import read_video

            held = [read_video(o["folder"])["video"] for o in heldout_objects(self.root / "world")]
            import torch

            info["heldout_psnr_db"] = reconstruction_psnr(self.vae_dir, torch.cat(held), device=self._device())
            run.finish(info)
            self._note(run, "trained")

    def clip(self) -> None:
        if self.opts.clip:
            self.clip_dir, self.clip_id = self.opts.clip, key_hash({"kind": "clip", "path": os.path.abspath(self.opts.clip)})
            return
        from orster4d.generation.training.tiny_assets import TINY_CLIP, make_tiny_clip

        run = Run(self.root, "clip", {"kind": "clip", "config": TINY_CLIP, "seed": 0, "trained": False})
        self.clip_dir, self.clip_id = str(run.path / "clip"), run.hash
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                return
            run.prepare(fresh=True)
            make_tiny_clip(self.clip_dir, seed=0)
            run.finish({"note": "randomly initialised tiny CLIP (no pretrained weights)"})
            self._note(run, "made")

    # -- training ---------------------------------------------------------------------------------
    def base_overrides(self, stage: int, steps: int, seed: int, data_root: str, chain: bool = True) -> Dict[str, object]:
        """The preset's ``--set`` items of one training run (``chain``: a stage of the 4D chain, which
        also takes the preset's ``stage_overrides``; False: a teacher)."""
        o = dict(self.preset.train_overrides)
        if chain:
            o.update(self.preset.stage_overrides.get(stage, {}))
        o.update({"train.steps": int(steps), "seed": int(seed), "data.root": data_root, "model.vae_dir": self.vae_dir,
                  "device": self.opts.device})
        return o

    def stage_config(self, stage: int, overrides: Dict[str, object]) -> dict:
        from orster4d.generation.training.config import resolve_config

        return resolve_config(self.preset.train_preset, stage,
                              overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])

    def train(self, stage: int, overrides: Dict[str, object], inputs: Dict[str, str]):
        """Train (or reuse, or resume) one stage; returns ``(run, final checkpoint folder)``."""
        from orster4d.generation.training.outputs import StageFolder
        from orster4d.generation.training.trainer import train_stage

        cfg = self.stage_config(stage, overrides)
        run = Run(self.root, f"s{stage}", training_key(cfg, inputs))
        final = run.path / f"stage{stage}" / "final"
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                self._rate(run, run.info())
                return run, str(final)
            self._check_cached(run)
            resume = StageFolder(str(run.path / f"stage{stage}")).latest_whole_checkpoint()[0] is not None
            run.prepare(fresh=not resume)
            cfg["out_dir"] = str(run.path)
            if self.opts.nproc > 1:
                train_distributed(cfg, self.opts.nproc, resume=resume, progress=self.opts.progress)
            else:
                train_stage(cfg, resume=resume, progress=self.opts.progress)
            info = {"final": str(final), "stage": stage, "steps": cfg["train"]["steps"],
                    "samples_per_s": _median_rate(run.path / f"stage{stage}" / "log.jsonl")}
            run.finish(info)
            self._rate(run, info)
            self._note(run, "resumed" if resume else "trained")
            return run, str(final)

    def _rate(self, run: Run, info: dict) -> None:
        self.throughput[run.path.name] = {"stage": info["stage"], "samples_per_s": info["samples_per_s"]}

    def teacher(self, role: str) -> tuple:
        """Train (or reuse) the ``spatial`` (static-3D set) or ``temporal`` (video set) teacher:
        stage 1 with seed 0; ``(run, final checkpoint folder)``."""
        set_name = TEACHER_SETS[role]
        o = self.base_overrides(1, self.preset.teacher_steps, 0, str(self.root / "world" / set_name), chain=False)
        return self.train(1, o, {"data": self.data_id(set_name), "vae": self.vae_run.hash})

    def teachers(self) -> Dict[str, tuple]:
        """Both teachers, ``{role: (run, final)}``, trained (or reused) on first use: stage 2 needs
        them, stage 1 does not, so a worker's stage 1 runs while other workers train them."""
        if self.teacher_runs is None:
            self.teacher_runs = {role: self.teacher(role) for role in TEACHER_SETS}
        return self.teacher_runs

    def scarce4d_size(self, row: Row) -> Optional[int]:
        """How many 4D objects ``row`` trains on: None for the whole set, which a scarcity row
        asking for at least the set's size also gets (so it shares the runs of its full-data row)."""
        n = row.scarce4d
        return None if n is None or n >= int(self.preset.world["scarce4d"]) else n

    def data_root(self, row: Row) -> str:
        from orster4d.data.world import subset

        n = self.scarce4d_size(row)
        if n is None:
            return str(self.root / "world" / "scarce4d")
        dest = self.root / "subsets" / f"scarce4d_{n}"
        with file_lock(dest.with_suffix(".lock")):
            return str(subset(self.root / "world", "scarce4d", n, dest))

    def chain(self, row: Row, seed: int) -> Dict[int, tuple]:
        """The stages of ``row`` (1-4 less ``row.skip_stages``) with ``seed``; ``{stage: (run, final)}``.

        Each stage starts from the previous stage trained; a stage whose parent is not stage N-1
        (stage 4 after stage 2 or 1) has the parent's stage in its cache key (``parent_stage``)."""
        data = self.data_root(row)
        did = self.data_id("scarce4d", self.scarce4d_size(row))
        base_in = {"data": did, "vae": self.vae_run.hash}
        runs = {}
        steps = self.preset.stage_steps
        prev_stage = None
        for stage in row.stages:
            o = self.base_overrides(stage, steps[stage - 1], seed, data)
            inputs = dict(base_in)
            if stage == 2:
                teachers = self.teachers()
                parent = runs[1] if row.stage2_init == "stage1" else teachers["spatial"]
                sp, tp = teachers["spatial"][1], teachers["temporal"][1]
                o.update({"teachers.spatial_dir": os.path.join(sp, "model", "unet"),
                          "teachers.temporal_dir": os.path.join(tp, "model", "unet")})
                inputs.update(teacher_spatial=teachers["spatial"][0].hash,
                              teacher_temporal=teachers["temporal"][0].hash)
            elif stage > 2:
                parent = runs[prev_stage]
                if prev_stage != stage - 1:
                    inputs["parent_stage"] = str(prev_stage)
            else:
                parent = None
            if parent is not None:
                o["init"] = parent[1]
                inputs["parent"] = parent[0].hash
            if stage == 4:
                o["cond.clip_dir"] = self.clip_dir
                inputs["clip"] = self.clip_id
            o.update(row.stage_overrides(stage))
            runs[stage] = self.train(stage, o, inputs)
            prev_stage = stage
        return runs

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, row: Row, seed: int, s4: tuple) -> dict:
        from orster4d.data.world import heldout_objects
        from orster4d.reproduce.scoring import score_checkpoint

        p = self.preset
        key = {"kind": "eval", "checkpoint": s4[0].hash, "world": self.world_hash, "seed": seed,
               "steps": p.inference_steps, "guidance": p.guidance_scale,
               "weights": [self.opts.lpips_weights, self.opts.i3d, os.environ.get("ORSTER4D_WEIGHTS")]}
        run = Run(self.root, "eval", key)
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                return run.info()["scores"]
            self._check_cached(run)
            run.prepare(fresh=True)
            strips = self.root / "strips" / _slug(row.name) / f"seed{seed}" if self.opts.strips else None
            scores = score_checkpoint(s4[1], heldout_objects(self.root / "world"), seed, p.inference_steps,
                                      p.guidance_scale, device=self._device(), lpips_weights=self.opts.lpips_weights,
                                      i3d=self.opts.i3d, strips=strips)
            run.finish({"scores": scores})
            self._note(run, "scored")
            return scores

    # -- 4D assets --------------------------------------------------------------------------------
    def generated(self, seed: int, s4: tuple) -> tuple:
        """``orster4d-generate --video-only`` outputs of every held-out object and condition for
        the stage-4 run ``s4`` and ``seed`` (the preset's asset kinds and objects); ``(run, kinds)``."""
        from orster4d.reproduce.scoring import generate_heldout

        p = self.preset
        key = {"kind": "gen", "checkpoint": s4[0].hash, "world": self.world_hash, "seed": seed,
               "steps": p.inference_steps, "guidance": p.guidance_scale, "prior_steps": p.prior_steps,
               "kinds": p.asset_kinds, "objects": p.asset_objects}
        run = Run(self.root, "gen", key)
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                return run, run.info()["kinds"]
            self._check_cached(run)
            run.prepare(fresh=True)
            info = generate_heldout(s4[1], self.asset_objects(), seed, run.path / "gen", p.inference_steps,
                                    p.guidance_scale, p.prior_steps, device=self._device(),
                                    kinds=list(p.asset_kinds) if p.asset_kinds else None)
            run.finish(info)
            self._note(run, "generated")
            return run, info["kinds"]

    def asset_objects(self) -> List[dict]:
        """The held-out objects that get 4D assets: the first ``preset.asset_objects`` (None: all)."""
        from orster4d.data.world import heldout_objects

        objs = heldout_objects(self.root / "world")
        return objs[: self.preset.asset_objects] if self.preset.asset_objects else objs

    def assets(self, row: Row, seed: int, s4: tuple) -> tuple:
        """Build and score the 4D assets of ``row`` (its construction settings on the preset's) from
        the videos generated by ``s4`` with ``seed``; ``(scores as score_assets returns them, gen
        run, asset run)``."""
        from orster4d.reproduce.scoring import lpips_source, score_assets

        gen, kinds = self.generated(seed, s4)
        settings = {**self.preset.construct, **row.construct}
        lpips = lpips_source(self.opts.lpips_weights)
        key = {"kind": "asset", "gen": gen.hash, "world": self.world_hash, "seed": seed, "construct": settings,
               "weights": [lpips and os.path.abspath(lpips)]}
        run = Run(self.root, "asset", key)
        with self._locked(run):
            if run.done:
                self._note(run, "reused")
                return run.info()["scores"], gen, run
            self._check_cached(run)
            run.prepare(fresh=True)
            scores = score_assets(gen.path / "gen", self.asset_objects(), kinds, run.path / "assets",
                                  settings, seed, device=self._device(), lpips_weights=lpips)
            run.finish({"scores": scores})
            self._note(run, "constructed")
            return scores, gen, run

    # -- everything -------------------------------------------------------------------------------
    def chain_key(self, row: Row) -> tuple:
        """What :meth:`chain` trains for ``row``, as a hashable value: two rows with the same key
        share every training run (the construction rows share ours')."""
        overrides = tuple(sorted((st, tuple(sorted((k, repr(v)) for k, v in o.items())))
                                 for st, o in row.overrides.items()))
        return row.stages, row.stage2_init, overrides, self.scarce4d_size(row)

    def tasks(self) -> List[tuple]:
        """The independent pieces of work after the shared models, in the rows' order:
        ``("teacher", role)`` for both teachers, then ``(row name, seed)`` for every row and seed to
        train and score."""
        out = []
        if any(r.expressible for r in self.rows):
            out += [("teacher", role) for role in TEACHER_SETS]
        for row in self.rows:
            if row.expressible:
                out += [(row.name, s) for s in (self.opts.seeds if row.all_seeds else self.opts.seeds[:1])]
        return out

    def task_group(self, task: tuple) -> Optional[tuple]:
        """Tasks of one group train the same chain (:meth:`chain_key` and seed; the construction
        rows and ours); None for a teacher. :func:`~orster4d.reproduce.workers.run_tasks` starts no
        task while another of its group runs: it would only wait on the other's run locks."""
        if task[0] == "teacher":
            return None
        row = next(r for r in self.rows if r.name == task[0])
        return self.chain_key(row), task[1]

    def run_task(self, task: tuple) -> None:
        """One :meth:`tasks` entry: a teacher, or a row's chain with its scores and assets (all cached)."""
        if task[0] == "teacher":
            self.teacher(task[1])
            return
        row = next(r for r in self.rows if r.name == task[0])
        chain = self.chain(row, task[1])
        if "video" in row.score:
            self.score(row, task[1], chain[4])
        if "asset" in row.score:
            self.assets(row, task[1], chain[4])

    def run(self) -> dict:
        t0 = self.t0
        self.world()
        self.vae()
        self.clip()
        tasks = None
        if self.opts.jobs > 1:
            from orster4d.reproduce.workers import run_tasks

            todo = self.tasks()
            tasks = run_tasks(self.opts, todo, self.root / "logs", progress=self.opts.progress,
                              deadline=self.deadline(), groups=[self.task_group(t) for t in todo])
            self.events += [ev for t in tasks for ev in t.get("events", [])]
            self._check_deadline()  # tasks the workers did not start are not made here either
        if any(r.expressible for r in self.rows):
            self._check_deadline()
            try:
                self.teachers()
            except NotCached:  # cached_only: the rows that need them say so
                pass
        out_rows = []
        for row in self.rows:
            rec = {"name": row.name, "table": row.table, "note": row.note, "overrides": {str(k): v for k, v in
                                                                                        row.overrides.items()},
                   "stage2_init": row.stage2_init, "stages": list(row.stages), "score": list(row.score),
                   "construct": dict(row.construct), "scarce4d": row.scarce4d}
            if not row.expressible:
                rec.update(status="not expressible yet", reason=row.missing)
                out_rows.append(rec)
                continue
            seeds = self.opts.seeds if row.all_seeds else self.opts.seeds[:1]
            per_seed, per_seed_assets, runs, missing = {}, {}, {}, {}
            for seed in seeds:  # cached_only: what is not finished is left out and named in ``missing_seeds``
                self._check_deadline()
                try:
                    chain = self.chain(row, seed)
                except NotCached as e:
                    missing[str(seed)] = f"run {e} not finished"
                    continue
                runs[str(seed)] = {f"stage{s}": chain[s][0].path.name for s in chain}
                try:
                    if "video" in row.score:
                        per_seed[str(seed)] = self.score(row, seed, chain[4])
                    if "asset" in row.score:
                        per_seed_assets[str(seed)], gen, asset = self.assets(row, seed, chain[4])
                        runs[str(seed)].update(gen=gen.path.name, asset=asset.path.name)
                except NotCached as e:
                    missing[str(seed)] = f"run {e} not finished"
            out_rows.append(row_result(rec, per_seed, per_seed_assets, runs, missing))
        vae_info = self.vae_run.info() or {}
        result = {
            "preset": self.preset.name, "seeds": list(self.opts.seeds), "world": {
                "spec": self.spec.to_dict(), "root": str(self.root / "world")},
            "image_vae": {"heldout_psnr_db": vae_info.get("heldout_psnr_db"), "run": self.vae_run.path.name},
            "clip": {"dir": self.clip_dir, "pretrained": bool(self.opts.clip)},
            "teachers": {r: v[0].path.name for r, v in (self.teacher_runs or {}).items()},
            "settings": {"stage_steps": list(self.preset.stage_steps), "teacher_steps": self.preset.teacher_steps,
                         "train_preset": self.preset.train_preset, "train_overrides": self.preset.train_overrides,
                         "inference_steps": self.preset.inference_steps, "guidance_scale": self.preset.guidance_scale,
                         "prior_steps": self.preset.prior_steps, "construct": self.preset.construct},
            "throughput_samples_per_s": self.throughput,  # per training run used (teachers are stage-1 runs)
            "rows": out_rows, "events": self.events, "wall_s": None if self.opts.cached_only else time.perf_counter() - t0,
            "jobs": self.opts.jobs, "tasks": tasks,  # per worker task (--jobs > 1): wall time, events
        }
        from orster4d.reproduce.tables import markdown_tables

        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "reproduction.json").write_text(json.dumps(result, indent=1, default=list))
        (self.root / "reproduction.md").write_text(markdown_tables(result))
        return result


def torchrun_command(cfg: dict, config_file: str, nproc: int, resume: bool, progress: bool) -> List[str]:
    """The ``torchrun`` command line of the training run ``cfg``, saved resolved as ``config_file``."""
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
           "-m", "orster4d.cli.train", "--stage", str(cfg["stage"]), "--preset", cfg["preset"],
           "--config", config_file]
    return cmd + (["--resume"] if resume else []) + ([] if progress else ["--no-progress"])


def train_distributed(cfg: dict, nproc: int, resume: bool = False, progress: bool = True) -> None:
    """Run one stage under ``torchrun`` with ``nproc`` processes (DDP; ``data.batch_size`` is the
    global batch). The resolved config goes to ``<out_dir>/torchrun-config.json``, which the
    command reads back unchanged (a config file over the same defaults). Raises RuntimeError
    naming the command when it fails."""
    import subprocess

    from orster4d.generation.training.config import save_config

    if cfg["data"]["batch_size"] % nproc:
        raise ValueError(f"--nproc {nproc}: data.batch_size={cfg['data']['batch_size']} is not divisible by it")
    os.makedirs(cfg["out_dir"], exist_ok=True)
    path = os.path.join(cfg["out_dir"], "torchrun-config.json")
    save_config(cfg, path)
    cmd = torchrun_command(cfg, path, nproc, resume, progress)
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training stage {cfg['stage']} under torchrun failed (status {proc.returncode}): "
                           f"{' '.join(cmd)}")


def _median_rate(log: Path) -> Optional[float]:
    if not log.is_file():
        return None
    rates = sorted(json.loads(ln)["samples_per_s"] for ln in log.read_text().splitlines() if ln.strip())
    return rates[len(rates) // 2] if rates else None


def row_result(desc: dict, per_seed: Dict[str, dict], per_seed_assets: Dict[str, dict], runs: Dict[str, dict],
               missing: Dict[str, str]) -> dict:
    """One row of the report: its description ``desc`` plus ``status`` ("done" when any seed has
    scores, else "not run"), ``seeds`` (those whose chain finished), ``runs`` (seed -> run names),
    ``missing_seeds`` (seed -> reason), ``per_seed`` / ``per_seed_assets`` and their summaries.
    Seeds are keyed by their decimal string and ordered numerically."""
    rec = dict(desc)
    if not (per_seed or per_seed_assets):
        rec.update(status="not run", seeds=[], missing_seeds=missing)
        return rec

    def by_seed(d):
        return dict(sorted(d.items(), key=lambda kv: int(kv[0])))

    runs = by_seed(runs)
    rec.update(status="done", seeds=[int(s) for s in runs], runs=runs, missing_seeds=missing)
    if per_seed:
        rec.update(per_seed=by_seed(per_seed), summary=summarise(per_seed))
    if per_seed_assets:
        rec.update(per_seed_assets=by_seed(per_seed_assets), asset_summary=summarise(per_seed_assets))
    return rec


def summarise(per_seed: Dict[str, dict]) -> Dict[str, Dict[str, dict]]:
    """``{condition: {metric: mean_ci over seeds of the per-seed means}}`` plus ``absent`` reasons."""
    out: Dict[str, Dict[str, dict]] = {}
    absent = {}
    for scores in per_seed.values():
        absent.update(scores.get("absent", {}))
    for kind in CONDITIONS:
        vals = [s["conditions"][kind]["mean"] for s in per_seed.values() if kind in s["conditions"]]
        if vals:
            out[kind] = {m: mean_ci([v.get(m) for v in vals]) for m in METRICS}
    out["absent"] = absent
    return out


def run_protocol(opts: ProtocolOptions) -> dict:
    """Run the protocol (module docstring); returns and writes the reproduction dict."""
    return Protocol(opts).run()
