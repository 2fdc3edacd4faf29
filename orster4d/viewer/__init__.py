"""A self-contained web viewer for 4D assets.

:func:`write_viewer` writes three files into an asset folder: ``viewer.html`` and ``viewer.js``
(the WebGL2 splatting viewer, copied from this package) and ``viewer_data.js`` (the asset's
per-timestamp Gaussians as base64 float32 arrays in a ``<script>``, so the page needs no network
and no ``fetch``: it opens from a file URL as well as from a local web server).

What the data holds, per timestamp: means ``[N, 3]`` and 3D covariances ``[N, 6]`` (xx, xy, xz,
yy, yz, zz; world units squared, ``R S S^T R^T`` of the activated scales and unit quaternions);
once (or per timestamp when they change): the SH degree-0 colour and the activated opacity
``[N, 4]``. The trajectory's cameras (OpenCV world-to-camera matrices) are the viewer's preset
views. The viewer draws SH degree 0 only: view-dependent colour is dropped.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Union

import numpy as np
import torch

from orster4d.io.asset import Asset, read_asset

STATIC = Path(__file__).resolve().parent / "static"
VIEWER_FILES = ("viewer.html", "viewer.js")

__all__ = ["write_viewer", "viewer_payload", "covariances"]


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """3D covariances ``[..., 6]`` (xx, xy, xz, yy, yz, zz) of unit ``quats [..., 4]`` (w, x, y, z) and ``scales [..., 3]``."""
    q = quats.double() / quats.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)
    M = R * scales.double().unsqueeze(-2)
    S = M @ M.transpose(-1, -2)
    return torch.stack([S[..., 0, 0], S[..., 0, 1], S[..., 0, 2], S[..., 1, 1], S[..., 1, 2], S[..., 2, 2]], -1)


def _b64(x: torch.Tensor) -> str:
    return base64.b64encode(np.ascontiguousarray(x.detach().cpu().numpy(), dtype="<f4").tobytes()).decode("ascii")


def viewer_payload(asset: Asset) -> dict:
    """The JSON object that ``viewer_data.js`` assigns to ``window.ORSTER4D_ASSET``."""
    geom = torch.cat([asset.means.double(), covariances(asset.quats, asset.scales)], -1)  # T, N, 9
    rgba = torch.cat([asset.colors, asset.opacities.unsqueeze(-1)], -1)  # T, N, 4
    same = bool((rgba == rgba[:1]).all())
    pts = asset.means.reshape(-1, 3)
    lo, hi = pts.min(0).values, pts.max(0).values
    traj = None
    if asset.trajectory is not None:
        traj = asset.trajectory.to_dict()
        traj["viewmats"] = [vm.reshape(-1).tolist() for vm in asset.trajectory.viewmats().double()]
    return {
        "version": 1, "num_frames": asset.num_frames, "num_gaussians": asset.num_gaussians,
        "times": [float(t) for t in asset.times], "fps": asset.fps, "background": list(asset.background),
        "extent": {"center": ((lo + hi) / 2).tolist(), "radius": float((hi - lo).norm() / 2)},
        "trajectory": traj,
        "geometry": [_b64(g) for g in geom],
        "colors": [_b64(rgba[0])] if same else [_b64(c) for c in rgba],
    }


def write_viewer(asset_folder: Union[str, Path]) -> Path:
    """Writes ``viewer.html``, ``viewer.js`` and ``viewer_data.js`` into an asset folder; returns the html path.

    The folder must hold ``gaussians/t_XXXX.ply`` (see :func:`orster4d.io.asset.read_asset`).
    Open the page directly, or serve the folder (``orster4d-view ASSET`` does both steps).
    """
    folder = Path(asset_folder)
    asset = read_asset(folder)
    data = json.dumps(viewer_payload(asset), separators=(",", ":"))
    (folder / "viewer_data.js").write_text("window.ORSTER4D_ASSET = " + data + ";\n")
    for name in VIEWER_FILES:
        shutil.copyfile(STATIC / name, folder / name)
    return folder / "viewer.html"
