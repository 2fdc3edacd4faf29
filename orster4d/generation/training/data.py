"""Orbital-video datasets for training and a resumable, sharded, seeded sampler.

Layout read: ``root`` is one video folder or a folder of video folders; each video folder is read
by the package's loader ``orster4d.data.load_dataset`` (NeRF-style ``transforms.json`` with a
``time`` per frame, or ``trajectory.json`` + images). The orbital (non-reference) frames sorted by
``time`` form the video. ``transforms.json`` may also carry ``"prompt"`` (text condition) and
``"static": "<subfolder>"`` (the static object's orbital video, same layout, static-3D condition).

Items: ``video [T, H, W, 3]`` float32 in [0, 1], ``times [T]``, ``prompt`` (str, "" if absent),
``static_video [T, H, W, 3]`` when the folder names one, and ``reference_video [T, H, W, 3]`` (the
fixed reference-view frames, ``"reference": true``, by time) when every folder has one frame of it
per orbital frame. ``dataset_trajectory`` gives the one orbital trajectory the videos share.
"""
from __future__ import annotations

import json
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


def _extra_meta(folder: str) -> dict:
    path = os.path.join(folder, "transforms.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        meta = json.load(f)
    return {k: meta[k] for k in ("prompt", "static") if k in meta}


def read_video(folder: str) -> Dict[str, torch.Tensor]:
    """The orbital (non-reference) frames of one folder, by time, via ``orster4d.data.load_dataset``;
    also ``reference_video`` (the reference-view frames by time) when the folder has any."""
    from orster4d.data.dataset import load_dataset

    ds = load_dataset(folder)
    by_time = lambda idx: idx[torch.argsort(ds.times[idx], stable=True)]  # noqa: E731
    order = by_time((~ds.reference).nonzero()[:, 0])
    out = {"video": ds.images[order].contiguous(), "times": ds.times[order].contiguous()}
    if bool(ds.reference.any()):
        out["reference_video"] = ds.images[by_time(ds.reference.nonzero()[:, 0])].contiguous()
    return out


def _reference_count(folder: str) -> tuple:
    """``(orbital frames, reference frames)`` listed by ``folder/transforms.json`` ((0, 0) without one)."""
    path = os.path.join(folder, "transforms.json")
    if not os.path.isfile(path):
        return 0, 0
    with open(path) as f:
        frames = json.load(f).get("frames", [])
    ref = sum(bool(fr.get("reference", False)) for fr in frames)
    return len(frames) - ref, ref


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
    """Videos under ``root``; every video's frame count and resolution are checked up front
    (from ``transforms.json`` and the first image; folders without one are read fully)."""

    def __init__(self, root: str, frames: int, resolution: int):
        self.folders = find_video_folders(root)
        self.frames, self.resolution = frames, resolution
        for folder in self.folders:
            self._check(folder)
        self.has_reference = all(_reference_count(f)[1] == frames for f in self.folders)

    def require_static(self) -> None:
        """Raise unless every video names its static orbital video (static-3D condition)."""
        for folder in self.folders:
            if not _extra_meta(folder).get("static"):
                raise ValueError(f"data: {folder}/transforms.json has no 'static' sub-folder, needed by "
                                 f"cond.kind=static3d")

    def _check(self, folder: str) -> None:
        n, hw = self._peek(folder)
        if n != self.frames:
            raise ValueError(f"data: {folder} has {n} frames but the config says data.frames={self.frames}")
        if hw != (self.resolution, self.resolution):
            raise ValueError(f"data: {folder} frames are {hw[0]}x{hw[1]} but the config says "
                             f"data.resolution={self.resolution}")
        static = _extra_meta(folder).get("static")
        if static:
            self._check(os.path.join(folder, static))

    @staticmethod
    def _peek(folder: str):
        from PIL import Image

        path = os.path.join(folder, "transforms.json")
        if os.path.isfile(path):
            with open(path) as f:
                frames = [fr for fr in json.load(f).get("frames", []) if not fr.get("reference", False)]
            if frames:
                fp = os.path.join(folder, frames[0]["file_path"])
                if not os.path.splitext(fp)[1]:
                    fp += ".png"
                if os.path.isfile(fp):
                    with Image.open(fp) as im:
                        return len(frames), (im.size[1], im.size[0])
        v = read_video(folder)["video"]
        return v.shape[0], tuple(v.shape[1:3])

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> Dict[str, object]:
        folder = self.folders[i]
        rec = read_video(folder)
        extra = _extra_meta(folder)
        item = {"video": rec["video"], "times": rec["times"], "prompt": extra.get("prompt", "")}
        if extra.get("static"):
            item["static_video"] = read_video(os.path.join(folder, extra["static"]))["video"]
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
    """Write ``video [T, H, W, 3]`` in [0, 1] in the layout above (times ``i / (T - 1)``)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    t = video.shape[0]
    frames = []
    for i in range(t):
        name = f"r_{i:03d}.png"
        Image.fromarray((np.clip(video[i], 0, 1) * 255).round().astype(np.uint8)).save(os.path.join(folder, name))
        frames.append({"file_path": name, "time": i / max(t - 1, 1), "transform_matrix": np.eye(4).tolist()})
    meta = {"camera_angle_x": 0.8, "frames": frames}
    if prompt is not None:
        meta["prompt"] = prompt
    if static is not None:
        write_video_folder(os.path.join(folder, "static"), static)
        meta["static"] = "static"
    with open(os.path.join(folder, "transforms.json"), "w") as f:
        json.dump(meta, f)
