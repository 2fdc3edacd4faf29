"""CLIP-F and CLIP-O: CLIP cosine similarity of an asset's renders to its condition.

* CLIP-F: the front view (the trajectory's azimuth offset) at every stored timestamp;
* CLIP-O: 36 views at azimuths ``offset + 10 k`` degrees (k = 0..35) at every stored timestamp,
  at the trajectory's elevation, radius, field of view and resolution.

The condition is a text prompt (CLIP text embedding) or an image (CLIP image embedding). The
score is the mean cosine similarity of the L2-normalised embeddings, in [-1, 1] (not scaled by 100
and not clipped at 0).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from orster4d.cameras import OrbitTrajectory, intrinsics_from_fov, orbit_viewmats

CLIP_O_VIEWS = 36


def orbit_cameras(traj: OrbitTrajectory, num_views: int = CLIP_O_VIEWS) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(azimuths_deg [V], viewmats [V, 4, 4], Ks [V, 3, 3])`` of ``num_views`` cameras uniformly
    spaced in azimuth from the trajectory's front, on its sphere (elevation, radius, centre)."""
    az = traj.azimuth_offset_deg + 360.0 * torch.arange(num_views, dtype=torch.float64) / num_views
    vm = orbit_viewmats(az, traj.elevation_deg, traj.radius, traj.center)
    K = intrinsics_from_fov(traj.fov_deg, traj.width, traj.height).expand(num_views, 3, 3).clone()
    return az, vm, K


class ClipScorer:
    """Embeds images and prompts with a frozen open_clip ``CLIP``."""

    def __init__(self, model, batch: int = 64):
        self.model = model
        self.batch = batch
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, H, W, 3]`` in [0, 1] -> unit embeddings ``[N, E]`` (float32, CPU)."""
        from orster4d.generation.models.conditions import clip_image_embedding

        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got {tuple(images.shape)}")
        out = [clip_image_embedding(self.model, images[s:s + self.batch].to(self.device)).float()
               for s in range(0, images.shape[0], self.batch)]
        return F.normalize(torch.cat(out), dim=-1).cpu()

    @torch.no_grad()
    def embed_text(self, prompt: str) -> torch.Tensor:
        """Unit text embedding ``[E]`` of ``prompt``."""
        import open_clip

        tokens = open_clip.tokenize([prompt], context_length=self.model.context_length).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)[0].cpu()

    def condition(self, prompt: Optional[str] = None, image: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Unit embedding ``[E]`` of the condition: a prompt or an image ``[H, W, 3]``."""
        if (prompt is None) == (image is None):
            raise ValueError("the CLIP condition is one prompt or one image")
        return self.embed_text(prompt) if prompt is not None else self.embed_images(image[None])[0]


def cosine_to(embeddings: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[N]`` of unit ``embeddings [N, E]`` to the unit ``cond [E]``."""
    return embeddings @ cond


@torch.no_grad()
def clip_scores(asset, scorer: ClipScorer, cond: torch.Tensor, device=None, backend=None,
                background=(1.0, 1.0, 1.0), num_views: int = CLIP_O_VIEWS) -> dict:
    """``{"clip_f", "clip_o", "views", "timestamps"}`` of an :class:`~orster4d.io.asset.Asset`."""
    traj = asset.trajectory
    _, vm, K = orbit_cameras(traj, num_views)
    from orster4d.evaluation.asset import render_asset

    T = asset.num_frames
    rgb = render_asset(asset, asset.times, vm[None].expand(T, -1, -1, -1), K[None].expand(T, -1, -1, -1), traj.width,
                      traj.height, background, device, backend)  # [T, V, H, W, 3]
    sims = cosine_to(scorer.embed_images(rgb.reshape(-1, traj.height, traj.width, 3)), cond).reshape(T, num_views)
    return {"clip_f": float(sims[:, 0].mean()), "clip_o": float(sims.mean()), "views": num_views, "timestamps": T}
