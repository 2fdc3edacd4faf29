"""Runs cached by a hash of what determines them.

A run's *key* is a JSON-able dict: its resolved config with every folder path replaced by the
hash of the run (or world set) that produced the folder, so two runs with the same settings and
the same inputs share one folder wherever the protocol root lies. ``key_hash`` is the SHA-256 of
the key's canonical JSON. A run lives in ``<root>/runs/<kind>-<hash[:16]>/`` with ``key.json``;
it is *done* once ``done.json`` is there (written last), *interrupted* when it has a checkpoint
but no ``done.json``. Processes of one protocol (``--jobs``) take a run's lock
(``runs/<kind>-<hash>.lock``, :meth:`Run.locked`) before checking and making it, so a run two of
them need is made once and then reused by the other.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Union

# config entries that hold folders (replaced by input hashes) or do not change the model
PATH_KEYS = ("data.root", "model.vae_dir", "model.backbone_dir", "teachers.spatial_dir", "teachers.temporal_dir",
             "cond.clip_dir", "loss.lpips_dir", "init")
IGNORED_KEYS = ("out_dir", "device", "data.num_workers", "train.log_every", "train.tensorboard",
                "train.ckpt_every", "train.keep_checkpoints")


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


def key_hash(key: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of ``key``."""
    return hashlib.sha256(canonical(key).encode()).hexdigest()


def _pop(cfg: dict, dotted: str):
    node = cfg
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.get(p, {}) if isinstance(node, dict) else {}
    return node.pop(parts[-1], None) if isinstance(node, dict) else None


def training_key(cfg: dict, inputs: dict) -> dict:
    """The cache key of a training run: ``cfg`` (a resolved ``orster4d-train`` config) without
    its folder paths and bookkeeping entries, plus ``inputs`` (name -> hash of each input folder)."""
    c = json.loads(canonical(cfg))
    for k in PATH_KEYS + IGNORED_KEYS:
        _pop(c, k)
    return {"kind": "train", "config": c, "inputs": dict(sorted(inputs.items()))}


@contextlib.contextmanager
def file_lock(path: Union[str, Path]):
    """An exclusive ``flock`` on ``path`` (created) for the ``with`` block; waits for other holders.
    The lock goes with the process, so a killed holder never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Run:
    """A cached run folder: ``Run(root, kind, key)``; ``path``, ``hash``, ``done``, ``finish(info)``."""

    def __init__(self, root: Union[str, Path], kind: str, key: dict):
        self.key = key
        self.hash = key_hash(key)
        self.kind = kind
        self.path = Path(root) / "runs" / f"{kind}-{self.hash[:16]}"

    @contextlib.contextmanager
    def locked(self):
        """Hold this run's lock (an exclusive ``flock`` on ``runs/<kind>-<hash>.lock``, beside the
        folder: a fresh ``prepare`` removes the folder); waits while another process holds it."""
        with file_lock(self.path.with_suffix(".lock")):
            yield self

    @property
    def done(self) -> bool:
        return (self.path / "done.json").is_file()

    def info(self) -> Optional[dict]:
        return json.loads((self.path / "done.json").read_text()) if self.done else None

    def prepare(self, fresh: bool = False) -> None:
        """Create the folder with ``key.json``; ``fresh`` removes what an earlier attempt left."""
        self.started = time.perf_counter()  # for the event's seconds (see Protocol._note)
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        kp = self.path / "key.json"
        if kp.is_file() and json.loads(kp.read_text()) != json.loads(canonical(self.key)):
            raise ValueError(f"{kp}: holds another key with the same hash prefix; remove {self.path}")
        kp.write_text(json.dumps(self.key, indent=1, sort_keys=True, default=list))

    def finish(self, info: dict) -> None:
        tmp = self.path / "done.json.tmp"
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True, default=list))
        os.replace(tmp, self.path / "done.json")
