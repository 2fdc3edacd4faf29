"""Quaternions (w, x, y, z), the one implementation every module uses.

Shapes: quaternions ``[..., 4]``, vectors ``[..., 3]``, rotation matrices ``[..., 3, 3]``; any dtype.
"""
from __future__ import annotations

import torch

__all__ = ["quat_to_rotmat", "quat_mul", "quat_rotate", "axis_angle_to_quat"]


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (normalised here)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of quaternions ``[..., 4]`` (rotation ``b`` first, then ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotates vectors ``v [..., 3]`` by unit quaternions ``q [..., 4]``."""
    w = q[..., :1]
    u = q[..., 1:]
    uv = torch.linalg.cross(u, v, dim=-1)
    return v + 2.0 * (w * uv + torch.linalg.cross(u, uv, dim=-1))


def axis_angle_to_quat(aa: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[..., 4]`` of axis-angle vectors ``[..., 3]`` (angle in radians = norm)."""
    angle = aa.norm(dim=-1, keepdim=True)
    axis = aa / angle.clamp_min(1e-12)
    half = 0.5 * angle
    return torch.cat([torch.cos(half), axis * torch.sin(half)], dim=-1)
