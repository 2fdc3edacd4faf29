"""Plain, dense PyTorch reference of the tile rasterizer (no tiles, no sort kernels).

Same math as the C++/CUDA kernels (``csrc/include/orster4d/*.h``), written with ordinary
differentiable tensor operations so that it runs in float32 or float64 on any device and
``torch.autograd`` gives its gradients. Every pixel considers every Gaussian, sorted by depth;
the skip rules (``sigma < 0``, ``alpha < 1/255``) and the early stop (transmittance falling to
``<= 1e-4``) are expressed as masks on a cumulative product.

The tile intersection of the kernels drops no pixel that could be composited (every pixel with
``alpha >= 1/255`` lies inside the 3.33-sigma circle and inside the opacity-aware box), so the
dense version needs no tile mask.

Shapes follow the op contract (``csrc/rasterize/README.md``): ``B`` flattened leading batch,
``C`` cameras, ``N`` Gaussians, ``K = (degree + 1)^2`` SH coefficients. Memory is
``O(B * C * H * W * N)``: this is for tests on small scenes, not for production renders.
"""
from __future__ import annotations

import math

import torch

from orster4d.cameras import camera_centers
from orster4d.quaternions import quat_to_rotmat
from orster4d.sh import SH_C0, SH_C1, SH_C2, SH_C3

__all__ = [
    "project",
    "camera_centers",
    "sh_colors",
    "composite",
    "near_decision_pixels",
    "ALPHA_MAX",
    "ALPHA_MIN",
    "TRANSMITTANCE_MIN",
    "GAUSSIAN_EXTENT",
]


def _f32(x: float) -> float:
    """The float32 value of a constant, as the kernels see it (``0.99f`` etc.)."""
    return float(torch.tensor(x, dtype=torch.float32).item())


GAUSSIAN_EXTENT = _f32(3.33)  # sigmas of the bounding circle
ALPHA_MAX = _f32(0.99)  # alpha cap
ALPHA_MIN = _f32(1.0 / 255.0)  # splats below are skipped
TRANSMITTANCE_MIN = _f32(1e-4)  # stop before T would fall to this or below

def project(means, quats, scales, viewmats, Ks, width: int, height: int, near: float = 0.01,
            far: float = 1e10, eps2d: float = 0.3):
    """EWA projection of every Gaussian into every camera.

    Args:
        means ``[B, N, 3]``, quats ``[B, N, 4]`` (w, x, y, z), scales ``[B, N, 3]`` (world units),
        viewmats ``[B, C, 4, 4]`` (world-to-camera), Ks ``[B, C, 3, 3]`` (pixels), width/height (px),
        near/far (camera z, world units), eps2d (px^2 low-pass added to the 2D covariance).

    Returns:
        radii ``[B, C, N]`` int32 (px, 0 = culled), means2d ``[B, C, N, 2]`` (px), depths ``[B, C, N]``
        (camera z), conics ``[B, C, N, 3]`` (a, b, c of the inverse 2D covariance, 1/px^2). Culled
        entries are 0 and get no gradient.
    """
    R = viewmats[..., :3, :3].unsqueeze(2)  # B,C,1,3,3
    t = viewmats[..., :3, 3].unsqueeze(2)  # B,C,1,3
    pc = (R @ means.unsqueeze(1).unsqueeze(-1)).squeeze(-1) + t  # B,C,N,3
    Rq = quat_to_rotmat(quats)
    M = Rq * scales.unsqueeze(-2)
    Sigma = M @ M.transpose(-1, -2)  # B,N,3,3
    Sc = R @ Sigma.unsqueeze(1) @ R.transpose(-1, -2)  # B,C,N,3,3

    x, y, z = pc.unbind(-1)
    in_depth = (z >= near) & (z <= far)
    zs = torch.where(in_depth, z, torch.ones_like(z))
    fx = Ks[..., 0, 0].unsqueeze(-1)
    fy = Ks[..., 1, 1].unsqueeze(-1)
    cx = Ks[..., 0, 2].unsqueeze(-1)
    cy = Ks[..., 1, 2].unsqueeze(-1)
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lx_pos = (width - cx) / fx + 0.3 * tan_fovx
    lx_neg = cx / fx + 0.3 * tan_fovx
    ly_pos = (height - cy) / fy + 0.3 * tan_fovy
    ly_neg = cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(torch.maximum(x / zs, -lx_neg), lx_pos)
    ty = zs * torch.minimum(torch.maximum(y / zs, -ly_neg), ly_pos)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1)
    J = J.reshape(*zs.shape, 2, 3)
    cov = J @ Sc @ J.transpose(-1, -2)  # B,C,N,2,2
    a = cov[..., 0, 0] + eps2d
    b = cov[..., 0, 1]
    c = cov[..., 1, 1] + eps2d
    det = a * c - b * b

    mx = fx * x / zs + cx
    my = fy * y / zs + cy
    with torch.no_grad():
        half = 0.5 * (a + c)
        lmax = half + torch.sqrt(torch.clamp(half * half - det, min=0.0))
        r = torch.ceil(GAUSSIAN_EXTENT * torch.sqrt(torch.clamp(lmax, min=0.0)))
        valid = in_depth & (det > 0) & (r > 0)
        valid &= ~((mx + r <= 0) | (mx - r >= width) | (my + r <= 0) | (my - r >= height))
        radii = torch.where(valid, r, torch.zeros_like(r)).to(torch.int32)

    dets = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / dets, -b / dets, a / dets], -1)
    means2d = torch.stack([mx, my], -1)
    v2 = valid.unsqueeze(-1)
    means2d = torch.where(v2, means2d, torch.zeros_like(means2d))
    conics = torch.where(v2, conics, torch.zeros_like(conics))
    depths = torch.where(valid, z, torch.zeros_like(z))
    return radii, means2d, depths, conics


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real SH basis ``[..., K]`` at unit directions ``[..., 3]`` (3DGS signs and constants)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, -1)


def sh_colors(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """View-dependent colours ``max(SH(dirs / |dirs|) + 0.5, 0)``.

    Args:
        dirs ``[B, C, N, 3]`` (mean - camera centre, unnormalised), coeffs ``[B, N, K, 3]``.
    Returns:
        colors ``[B, C, N, 3]``.
    """
    K = (degree + 1) ** 2
    n2 = (dirs * dirs).sum(-1, keepdim=True)
    safe = n2 > 0
    d = dirs / torch.sqrt(torch.where(safe, n2, torch.ones_like(n2)))
    d = torch.where(safe, d, torch.zeros_like(d))
    basis = sh_basis(degree, d)  # B,C,N,K
    raw = (basis.unsqueeze(-1) * coeffs[:, :, :K].unsqueeze(1)).sum(-2) + 0.5
    return torch.clamp(raw, min=0.0)


def composite(means2d, conics, colors, opacities, depths, radii, width: int, height: int,
              backgrounds=None):
    """Front-to-back alpha compositing of every Gaussian at every pixel centre.

    Args:
        means2d ``[B, C, N, 2]`` (px), conics ``[B, C, N, 3]`` (1/px^2), colors ``[B, C, N, 3]``,
        opacities ``[B, N]``, depths ``[B, C, N]``, radii ``[B, C, N]`` (0 = skip),
        backgrounds ``[B, C, 3]`` or None (black).
    Returns:
        render ``[B, C, H, W, 3]``, render_depth ``[B, C, H, W, 1]`` (sum of w_i z_i, not normalised),
        alpha ``[B, C, H, W, 1]``.
    """
    col, dep, alpha, _, used = _splats_at_pixels(means2d, conics, colors, opacities, depths, radii, width, height)
    a_used = torch.where(used, alpha, torch.zeros_like(alpha))
    one_minus = 1 - a_used
    t_incl = torch.cumprod(one_minus, dim=-1)
    t_before = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], dim=-1)
    w = a_used * t_before  # B,C,P,N
    t_final = one_minus.prod(dim=-1)  # B,C,P (1 when N = 0)
    rgb = (w.unsqueeze(-1) * col.unsqueeze(2)).sum(-2)  # B,C,P,3
    if backgrounds is not None:
        rgb = rgb + t_final.unsqueeze(-1) * backgrounds.unsqueeze(2)
    dsum = (w * dep.unsqueeze(2)).sum(-1, keepdim=True)
    alpha_out = (1 - t_final).unsqueeze(-1)
    shape = (*radii.shape[:2], height, width)
    return rgb.reshape(*shape, 3), dsum.reshape(*shape, 1), alpha_out.reshape(*shape, 1)


def _splats_at_pixels(means2d, conics, colors, opacities, depths, radii, width: int, height: int):
    """Every Gaussian at every pixel centre, in depth order (shapes as :func:`composite`).

    Returns colors ``[B, C, N, 3]`` (None when ``colors`` is None) and depths ``[B, C, N]`` in
    depth order, alpha ``[B, C, H*W, N]`` (capped, before the skip rules), the ``kept`` mask
    (visible and not skipped) and the ``used`` mask (kept and before the transmittance stop), both
    ``[B, C, H*W, N]``.
    """
    B, C, N = radii.shape
    dev, dt = means2d.device, means2d.dtype
    visible = radii > 0
    # depth order per camera (culled ones last); stable, ties by index like the kernels' sort
    key = torch.where(visible, depths.detach(), torch.full_like(depths.detach(), math.inf))
    order = torch.sort(key, dim=-1, stable=True).indices  # B,C,N

    def take(x):
        idx = order.reshape(*order.shape, *([1] * (x.dim() - 3))).expand(*order.shape, *x.shape[3:])
        return torch.gather(x, 2, idx)

    m = take(means2d)
    con = take(conics)
    vis = take(visible)
    opa = torch.gather(opacities.unsqueeze(1).expand(B, C, N), 2, order)

    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=dt) + 0.5,
                            torch.arange(width, device=dev, dtype=dt) + 0.5, indexing="ij")
    dx = m[..., 0].unsqueeze(2) - xs.reshape(1, 1, -1, 1)  # B,C,P,N
    dy = m[..., 1].unsqueeze(2) - ys.reshape(1, 1, -1, 1)
    a, b, c = (con[..., i].unsqueeze(2) for i in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(opa.unsqueeze(2) * torch.exp(-sigma), max=ALPHA_MAX)
    with torch.no_grad():
        mask = vis.unsqueeze(2) & (sigma >= 0) & (alpha >= ALPHA_MIN)
        t_after = torch.cumprod(1 - torch.where(mask, alpha, torch.zeros_like(alpha)), dim=-1)
        used = mask & (t_after > TRANSMITTANCE_MIN)
    return None if colors is None else take(colors), take(depths), alpha, mask, used


@torch.no_grad()
def near_decision_pixels(means2d, conics, opacities, depths, radii, width: int, height: int,
                         rel: float = 1e-4, depth_rel: float = 1e-6, tie_weight: float = 0.0, tiles=None):
    """Pixels where float32 rounding may flip one of the compositing decisions (shapes as :func:`composite`).

    A pixel is flagged when some visible splat that compositing reaches (not behind the stop) has an
    alpha within ``rel`` (relative) of the 1/255 skip, its transmittance after a splat lies within ``rel`` of the stop, or two splats it keeps have
    depths within ``depth_rel`` of each other (their order may swap). The image is
    discontinuous there, so a float32 kernel and a float64 reference can differ by a whole splat.
    Swapping adjacent splats i, j changes the pixel by ``T_i a_i a_j (c_i - c_j)``; ties with
    ``T_i a_i a_j <= tie_weight`` (too faint to matter at a given error bound) are not flagged.

    ``tiles``: None (dense: every splat at every pixel, ``O(B C H W N)`` memory, small scenes only),
    or ``(isect_offsets, flatten_ids, tile_size)`` from ``intersect_tiles`` called *without* conics
    and opacities (3.33-sigma boxes, which hold every pixel whose alpha is near 1/255): then each
    pixel looks only at its tile's depth-sorted run, in chunks of bounded memory, for scenes of
    millions of splats. Two splats adjacent in a tile's run but not in the whole depth order are
    also checked for a tie, so the tiled result may flag a few more pixels, never fewer.

    Returns:
        ``[B, C, H, W]`` bool.
    """
    if tiles is not None:
        return _near_decision_tiled(means2d, conics, opacities, depths, width, height, *tiles, rel=rel,
                                    depth_rel=depth_rel, tie_weight=tie_weight)
    B, C, N = radii.shape
    _, dep, alpha, kept, _ = _splats_at_pixels(means2d, conics, None, opacities, depths, radii, width, height)
    n_vis = (radii > 0).sum(-1, keepdim=True)  # depth order puts the culled ones last
    vis = torch.arange(N, device=radii.device) < n_vis  # B,C,N
    t_after = torch.cumprod(1 - torch.where(kept, alpha, torch.zeros_like(alpha)), dim=-1)
    reached = _reached(kept, t_after)
    near_skip = vis.unsqueeze(2) & reached & ((alpha / ALPHA_MIN - 1).abs() < rel)
    near_stop = kept & ((t_after / TRANSMITTANCE_MIN - 1).abs() < rel)
    flagged = (near_skip | near_stop).any(-1)  # B,C,P
    tie = vis[..., 1:] & ((dep[..., 1:] - dep[..., :-1]).abs() <= depth_rel * dep[..., :-1].abs())  # B,C,N-1
    both = kept & reached
    flagged |= (tie.unsqueeze(2) & _swap_matters(both, alpha, t_after, tie_weight)).any(-1)  # depth neighbours
    return flagged.reshape(B, C, height, width)


def _reached(kept: torch.Tensor, t_after: torch.Tensor) -> torch.Tensor:
    """``[..., N]`` splats (in depth order, last dim) that compositing reaches: up to and including the
    first kept one whose transmittance after it is at or below the stop. Behind that one a splat's
    decisions change nothing, unless the stop itself is near (flagged on its own)."""
    crossing = (kept & (t_after <= TRANSMITTANCE_MIN)).int()
    return (torch.cumsum(crossing, dim=-1) - crossing) == 0


def _swap_matters(both: torch.Tensor, alpha: torch.Tensor, t_after: torch.Tensor, tie_weight: float) -> torch.Tensor:
    """``[..., N-1]``: neighbours i, i+1 (last dim, depth order) both composited, with
    ``T_i a_i a_{i+1} > tie_weight`` (``T_i`` the transmittance in front of i)."""
    t_before = torch.cat([torch.ones_like(t_after[..., :1]), t_after[..., :-2]], dim=-1)
    weight = t_before * alpha[..., :-1] * alpha[..., 1:]
    return both[..., 1:] & both[..., :-1] & (weight > tie_weight)


def _near_decision_tiled(means2d, conics, opacities, depths, width: int, height: int, isect_offsets, flatten_ids,
                         tile_size: int, rel: float, depth_rel: float, tie_weight: float, budget: int = 1 << 24):
    """:func:`near_decision_pixels` over tile runs; ``budget`` bounds the splat-pixel pairs per chunk."""
    B, C, N = depths.shape
    dev, dt = means2d.device, means2d.dtype
    BC, tile_h, tile_w = isect_offsets.shape
    n_bins, n_isect = isect_offsets.numel(), flatten_ids.numel()
    starts = isect_offsets.reshape(-1).long()
    ends = torch.cat([starts[1:], starts.new_tensor([n_isect])])
    lengths = (ends - starts).cpu()
    m, con, dep = means2d.reshape(-1, 2), conics.reshape(-1, 3), depths.reshape(-1)
    P = tile_size * tile_size
    py, px = (v.reshape(-1) for v in torch.meshgrid(torch.arange(tile_size, device=dev),
                                                    torch.arange(tile_size, device=dev), indexing="ij"))
    flagged = torch.zeros(BC, tile_h * tile_size, tile_w * tile_size, dtype=torch.bool, device=dev)
    order = torch.argsort(lengths)  # chunks of bins with similar run lengths
    sorted_len = lengths[order]
    i = int((sorted_len == 0).sum())
    while i < n_bins:
        # the longest run of a chunk (its last) sets the padding: count * longest <= budget / P
        fits = torch.arange(1, n_bins - i + 1) * sorted_len[i:] <= budget // P  # a prefix: both grow
        j = i + max(1, int(fits.sum()))
        L = int(sorted_len[j - 1])
        bins = order[i:j].to(dev)
        k = torch.arange(L, device=dev)
        valid = k < (ends[bins] - starts[bins]).unsqueeze(1)  # G,L
        g = flatten_ids[(starts[bins].unsqueeze(1) + k).clamp(max=max(n_isect - 1, 0))].long()
        o = opacities.reshape(-1)[(g // (C * N)) * N + g % N]
        bc, tile = bins // (tile_h * tile_w), bins % (tile_h * tile_w)
        ys = (tile // tile_w).unsqueeze(1) * tile_size + py  # G,P
        xs = (tile % tile_w).unsqueeze(1) * tile_size + px
        dx = m[g, 0].unsqueeze(1) - (xs.to(dt) + 0.5).unsqueeze(2)  # G,P,L
        dy = m[g, 1].unsqueeze(1) - (ys.to(dt) + 0.5).unsqueeze(2)
        a, b, c = (con[g, q].unsqueeze(1) for q in range(3))
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(o.unsqueeze(1) * torch.exp(-sigma), max=ALPHA_MAX)
        v = valid.unsqueeze(1)
        kept = v & (sigma >= 0) & (alpha >= ALPHA_MIN)
        t_after = torch.cumprod(1 - torch.where(kept, alpha, torch.zeros_like(alpha)), dim=-1)
        reached = _reached(kept, t_after)
        near = (v & reached & ((alpha / ALPHA_MIN - 1).abs() < rel)).any(-1)
        near |= (kept & ((t_after / TRANSMITTANCE_MIN - 1).abs() < rel)).any(-1)
        d = dep[g]
        tie = valid[:, 1:] & ((d[:, 1:] - d[:, :-1]).abs() <= depth_rel * d[:, :-1].abs())  # G,L-1
        both = kept & reached
        near |= (tie.unsqueeze(1) & _swap_matters(both, alpha, t_after, tie_weight)).any(-1)
        flagged[bc.unsqueeze(1).expand_as(ys), ys, xs] = near
        i = j
    return flagged[:, :height, :width].reshape(B, C, height, width)
