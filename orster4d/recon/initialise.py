"""Where a construction starts: the region the cameras look at and the initial canonical Gaussians."""
from __future__ import annotations

import torch

from orster4d.cameras import camera_centers
from orster4d.data.dataset import DynamicDataset
from orster4d.recon.gaussians import GaussianModel

__all__ = ["scene_bounds", "init_gaussians"]


def scene_bounds(ds: DynamicDataset) -> tuple:
    """Centre ``[3]`` and half-size of the region the cameras look at: the least-squares closest
    point to all optical axes, and the half-width of the view there."""
    vm = ds.viewmats.double()
    c = camera_centers(vm)
    d = vm[:, 2, :3]  # optical axes (third row of R) in world coordinates
    eye = torch.eye(3, dtype=torch.float64)
    P = eye - d[:, :, None] * d[:, None, :]
    A = P.sum(0)
    b = (P @ c[:, :, None]).sum(0)[:, 0]
    centre = torch.linalg.lstsq(A, b).solution if ds.num_frames > 1 else c[0] + 3 * d[0]
    dist = (c - centre).norm(dim=-1).mean()
    half = dist * 0.5 * ds.width / ds.Ks[:, 0, 0].double().mean()
    return centre.float(), float(half)


@torch.no_grad()
def init_gaussians(ds: DynamicDataset, n: int, max_sh: int, gen: torch.Generator, device) -> GaussianModel:
    """``n`` Gaussians (SH up to ``max_sh``) on ``device``: points carved from the alpha masks (visual hull) when the frames have alpha, else uniform
    in the viewed region; colours averaged from the frames they project into."""
    centre, half = scene_bounds(ds)
    cand = centre + half * (2 * torch.rand(max(8 * n, 4096), 3, generator=gen) - 1)
    idx = torch.randperm(ds.num_frames, generator=gen)[:64]
    vm, K = ds.viewmats[idx], ds.Ks[idx]
    pc = (vm[:, None, :3, :3] @ cand[None, :, :, None])[..., 0] + vm[:, None, :3, 3]  # [F, P, 3]
    z = pc[..., 2].clamp_min(1e-6)
    u = K[:, None, 0, 0] * pc[..., 0] / z + K[:, None, 0, 2]
    v = K[:, None, 1, 1] * pc[..., 1] / z + K[:, None, 1, 2]
    inside = (pc[..., 2] > 0) & (u >= 0) & (u < ds.width) & (v >= 0) & (v < ds.height)
    ui = u.long().clamp(0, ds.width - 1)
    vi = v.long().clamp(0, ds.height - 1)
    fi = torch.arange(idx.shape[0])[:, None].expand_as(ui)
    cols = ds.images[idx][fi, vi, ui]  # [F, P, 3]
    keep = torch.ones(cand.shape[0], dtype=torch.bool)
    if ds.alphas is not None:
        a = ds.alphas[idx][fi, vi, ui, 0]
        votes = ((a > 0.5) & inside).float().sum(0) / inside.float().sum(0).clamp_min(1)
        keep = votes >= (0.9 if bool((ds.times == ds.times[0]).all()) else 0.5)
        if int(keep.sum()) < 16:
            keep = torch.ones_like(keep)
    pts = cand[keep][:n]
    w = inside[:, keep][:, :n].float()[..., None]
    col = (cols[:, keep][:, :n] * w).sum(0) / w.sum(0).clamp_min(1)
    model = GaussianModel.from_points(pts.to(device), col.clamp(0.02, 0.98).to(device), max_sh)
    return model
