"""Orbital-video datasets for training and a resumable, sharded, seeded sampler.

Layout read: ``root`` is one video folder or a folder of video folders; each video folder is read
by the package's one dataset reader, ``orster4d.data.dataset.load_dataset`` (NeRF-style
``transforms.json`` with a ``time`` per frame, or ``trajectory.json`` + images), and written by its
one writer, ``write_dataset``. The orbital (non-reference) frames sorted by ``time`` form the
video. The dataset's metadata (top-level entries of ``transforms.json``) may carry ``"prompt"``
(text condition) and ``"static": "<subfolder>"`` (the static object's orbital video, same layout,
static-3D condition).

Items: ``video [T, H, W, 3]`` float32 in [0, 1], ``times [T]`` in [0, 1], ``prompt`` (str, "" if
absent), ``static_video [T, H, W, 3]`` when the folder names one, and ``reference_video [T, H, W, 3]``
(the fixed reference-view frames, ``"reference": true``, by time) when every folder has one frame of
it per orbital frame. ``dataset_trajectory`` gives the one orbital trajectory the videos share.
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def find_video_folders(root: str) -> List[str]:
    """``root`` itself when it is a video folder, else its sub-folders that are (sorted)."""
    def is_video(d):
        return any(os.path.isfile(os.path.join(d, n)) for n in ("transforms.json", "trajectory.json"))

    if not root or not os.path.isdir(root):
        raise FileNotFoundError(f"data.root: folder not found: {root!r}")
    if is_video(root):
        return [root]
    out = sorted(os.path.join(root, d) for d in os.listdir(root) if is_video(os.path.join(root, d)))
    if not out:
        raise FileNotFoundError(f"data.root: no transforms.json or trajectory.json in {root} or its sub-folders")
    return out


def read_video(folder: str) -> Dict[str, object]:
    """One folder's orbital (non-reference) frames by time, and its metadata.

    Returns ``video [T, H, W, 3]``, ``times [T]``, ``metadata`` (dict) and, when the folder has
    reference-view frames, ``reference_video [R, H, W, 3]`` by time. Every frame is read, so a missing
    or unreadable frame, mixed sizes or a bad time raise ValueError naming the file.
    """
    from orster4d.data.dataset import load_dataset

    ds = load_dataset(folder)
    by_time = lambda idx: idx[torch.argsort(ds.times[idx], stable=True)]  # noqa: E731
    order = by_time((~ds.reference).nonzero()[:, 0])
    out = {"video": ds.images[order].contiguous(), "times": ds.times[order].contiguous(),
           "metadata": dict(ds.metadata)}
    if bool(ds.reference.any()):
        out["reference_video"] = ds.images[by_time(ds.reference.nonzero()[:, 0])].contiguous()
    return out


def dataset_trajectory(root: str) -> dict:
    """The orbital trajectory shared by the videos under ``root``.

    Returns ``{"trajectory": OrbitTrajectory dict or None, "source": ...}``: ``"data"`` when every
    video folder has a ``trajectory.json`` and they agree, ``"none"`` when no folder has one. Some
    folders with and some without, or two different trajectories, raise ValueError naming them
    (one model generates one trajectory).
    """
    from orster4d.cameras import OrbitTrajectory

    found = {}
    for folder in find_video_folders(root):
        path = os.path.join(folder, "trajectory.json")
        found[folder] = OrbitTrajectory.load(path).to_dict() if os.path.isfile(path) else None
    have = [f for f, t in found.items() if t is not None]
    if not have:
        return {"trajectory": None, "source": "none"}
    missing = [f for f, t in found.items() if t is None]
    if missing:
        raise ValueError(f"data: {missing[0]} has no trajectory.json but {have[0]} has one "
                         f"(every training video needs the same orbital trajectory)")
    first = found[have[0]]
    for f in have[1:]:
        if found[f] != first:
            diff = {k: (first[k], found[f][k]) for k in first if first[k] != found[f].get(k)}
            raise ValueError(f"data: {f}/trajectory.json differs from {have[0]}/trajectory.json in {diff} "
                             f"(one model is trained on one orbital trajectory)")
    return {"trajectory": first, "source": "data"}


class OrbitalVideoDataset(Dataset):
    """Videos under ``root``, every one of them fully checked when the dataset is built.

    Each video (and the static video it names) is read once: every frame must be present and
    readable, the orbital frames must number ``frames``, be ``resolution`` x ``resolution`` and
    have distinct times. Problems raise ValueError naming the folder or file, before any model
    is built or any output is written.
    """

    def __init__(self, root: str, frames: int, resolution: int):
        self.folders = find_video_folders(root)
        self.frames, self.resolution = frames, resolution
        checked = [self._check(folder) for folder in self.folders]
        self.metadata = [meta for meta, _ in checked]
        self.reference_frames = [refs for _, refs in checked]
        self.has_reference = all(refs == frames for refs in self.reference_frames)

    def video_modes(self) -> List[str]:
        """The video modes the data can train: ``orbit``, plus ``static`` when every video names its
        static orbital video, plus ``reference`` when every video has one reference-view frame per
        orbital frame."""
        return (["orbit"] + (["static"] if all(m.get("static") for m in self.metadata) else [])
                + (["reference"] if self.has_reference else []))

    def require_static(self, needed_by: str = "cond.kind=static3d") -> None:
        """Raise unless every video names its static orbital video (static-3D condition, static mode)."""
        for folder, meta in zip(self.folders, self.metadata):
            if not meta.get("static"):
                raise ValueError(f"data: {folder}/transforms.json has no 'static' sub-folder, needed by "
                                 f"{needed_by}")

    def require_prompts(self, needed_by: str = "cond.kind=text") -> None:
        """Raise unless every video has a non-empty ``prompt`` (text condition)."""
        missing = [f for f, m in zip(self.folders, self.metadata) if not str(m.get("prompt") or "").strip()]
        if missing:
            raise ValueError(f"data: {missing[0]}/transforms.json has no 'prompt' ({len(missing)} of "
                             f"{len(self.folders)} videos lack one), needed by {needed_by}; add prompts to "
                             f"the data or train another condition kind")

    def require_reference(self, needed_by: str = "cond.modes 'reference'") -> None:
        """Raise unless every video has one reference-view frame per orbital frame."""
        for folder, refs in zip(self.folders, self.reference_frames):
            if refs != self.frames:
                raise ValueError(f"data: {folder} has {refs} reference-view frames, {needed_by} needs one "
                                 f"per orbital frame ({self.frames})")

    def _check(self, folder: str) -> tuple:
        """Checks one video folder; returns ``(metadata, number of reference-view frames)``."""
        rec = read_video(folder)
        n, hw, times = rec["video"].shape[0], tuple(rec["video"].shape[1:3]), rec["times"]
        if n != self.frames:
            raise ValueError(f"data: {folder} has {n} frames but the config says data.frames={self.frames}")
        if hw != (self.resolution, self.resolution):
            raise ValueError(f"data: {folder} frames are {hw[0]}x{hw[1]} but the config says "
                             f"data.resolution={self.resolution}")
        if n > 1 and not bool((times[1:] > times[:-1]).all()):
            raise ValueError(f"data: {folder} has orbital frames with equal times {times.tolist()}: "
                             f"each frame of an orbital video needs its own time")
        static = rec["metadata"].get("static")
        if static:
            self._check(os.path.join(folder, static))
        refs = rec["reference_video"].shape[0] if "reference_video" in rec else 0
        return rec["metadata"], refs

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> Dict[str, object]:
        folder = self.folders[i]
        rec = read_video(folder)
        meta = rec["metadata"]
        item = {"video": rec["video"], "times": rec["times"], "prompt": str(meta.get("prompt") or "")}
        if meta.get("static"):
            item["static_video"] = read_video(os.path.join(folder, meta["static"]))["video"]
        if self.has_reference:
            item["reference_video"] = rec["reference_video"]
        return item


class ResumableSampler(Sampler):
    """Endless, deterministic stream of indices: epoch ``e`` is ``randperm(n)`` seeded by
    ``seed + e``; the global stream position ``p`` goes to rank ``p % world``. ``start`` is the
    global position to begin at (``step * global_batch`` on resume)."""

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def __iter__(self) -> Iterator[int]:
        p = self.start
        perm, epoch = None, -1
        while True:
            e, k = divmod(p, self.n)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed + e)
                perm, epoch = torch.randperm(self.n, generator=g).tolist(), e
            if p % self.world == self.rank:
                yield perm[k]
            p += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(), which we never call
        return 2 ** 62


def make_loader(dataset: Dataset, local_batch: int, seed: int, start_step: int, rank: int, world: int,
                num_workers: int):
    """DataLoader whose ``i``-th batch is the global batch of step ``start_step + i`` (this rank's shard)."""
    from torch.utils.data import DataLoader

    sampler = ResumableSampler(len(dataset), seed, start=start_step * local_batch * world, rank=rank, world=world)
    return DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=num_workers,
                      drop_last=True, persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))  # keeps the global RNG untouched


def write_video_folder(folder: str, video: np.ndarray, prompt: Optional[str] = None,
                       static: Optional[np.ndarray] = None) -> None:
    """Write ``video [T, H, W, 3]`` in [0, 1] as an orbital video (the package's default orbit,
    times ``i / (T - 1)``) with ``write_dataset``; ``prompt`` and ``static`` (a static orbital
    video of the same shape, written to ``static/``) go into its metadata."""
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data.dataset import DynamicDataset, write_dataset

    t, h, w = video.shape[:3]
    traj = OrbitTrajectory(num_frames=t, width=w, height=h)
    meta = {}
    if prompt is not None:
        meta["prompt"] = prompt
    if static is not None:
        write_video_folder(os.path.join(folder, "static"), static)
        meta["static"] = "static"
    ds = DynamicDataset(images=torch.from_numpy(np.clip(video, 0, 1).astype(np.float32)), viewmats=traj.viewmats(),
                        Ks=traj.Ks(), times=traj.times(), view_ids=torch.arange(t), trajectory=traj, metadata=meta)
    write_dataset(folder, ds)
