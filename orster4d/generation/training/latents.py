"""Latents of the training videos, encoded once per run instead of once per step.

Stages whose loss reads the clean latents only (stage 1 and stage 2: ``StageBase.latent_only``)
never look at the pixels after encoding them, and the image VAE is frozen and deterministic (the
latent is the posterior mode), so every epoch would re-encode the same videos to the same
latents. :func:`encode_dataset` encodes every video of the dataset once, in batches, and
:func:`latent_batches` then serves the training loop from that bank, in exactly the order the
DataLoader would have served the videos (the same :class:`ResumableSampler` stream), so a run with
the bank sees the same data, step for step, as one without it.

The bank: ``[N, C, T, h, w]`` float32, on the training device when it is smaller than
``device_limit_bytes`` (default 2 GiB), else in (pinned) CPU memory; for the ``small`` preset it
is 16 KiB per video (4 x 16 x 8 x 8 floats).
"""
from __future__ import annotations

from typing import Dict, Iterator

import torch

from orster4d.generation.training.data import ResumableSampler

DEVICE_LIMIT_BYTES = 2 * 2 ** 30


PIXELS_PER_BATCH = 2 ** 22  # frames x height x width encoded at once (64 videos of 16 x 64 x 64)


def _videos(items):
    return torch.stack([it["video"] for it in items])


@torch.no_grad()
def encode_dataset(vae, dataset, device: torch.device, num_workers: int = 0, progress: bool = False,
                   device_limit_bytes: int = DEVICE_LIMIT_BYTES) -> torch.Tensor:
    """Scaled latents ``[N, C, T, h, w]`` (float32) of every ``dataset[i]["video"]`` (``[T, H, W, 3]``
    in [0, 1]), in dataset order, encoded with ``vae`` (the posterior mode, as training encodes
    them); ``num_workers`` DataLoader processes read the videos."""
    from torch.utils.data import DataLoader

    from orster4d.generation.models.vae import encode_video

    n = len(dataset)
    if n == 0:
        raise ValueError("data: the dataset has no videos to encode")
    first = dataset[0]["video"]
    per_batch = max(1, PIXELS_PER_BATCH // max(1, first.shape[0] * first.shape[1] * first.shape[2]))
    loader = DataLoader(dataset, batch_size=per_batch, shuffle=False, num_workers=num_workers, collate_fn=_videos,
                        pin_memory=device.type == "cuda", generator=torch.Generator())  # global RNG untouched
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="encoding latents", unit="video", dynamic_ncols=True)
    chunks = []
    for video in loader:
        chunks.append(encode_video(vae, video.to(device, non_blocking=True)).float())
        if bar is not None:
            bar.update(video.shape[0])
    if bar is not None:
        bar.close()
    per_video = chunks[0][0].numel() * 4
    if device.type == "cuda" and per_video * n > device_limit_bytes:
        bank = torch.cat([c.cpu() for c in chunks])
        return bank.pin_memory()
    return torch.cat(chunks)


def latent_batches(bank: torch.Tensor, local_batch: int, seed: int, start_step: int, rank: int, world: int,
                   device: torch.device) -> Iterator[Dict[str, torch.Tensor]]:
    """Endless device batches ``{"latents": [local_batch, C, T, h, w]}``: batch ``i`` holds the
    videos the DataLoader of ``make_loader`` (same arguments) would put in its batch ``i``."""
    sampler = iter(ResumableSampler(bank.shape[0], seed, start=start_step * local_batch * world, rank=rank,
                                    world=world))
    pin = bank.device.type == "cuda"  # a pinned index copies without waiting for the stream
    while True:
        idx = torch.tensor([next(sampler) for _ in range(local_batch)], dtype=torch.long, pin_memory=pin)
        yield {"latents": bank[idx.to(bank.device, non_blocking=True)].to(device, non_blocking=True)}
