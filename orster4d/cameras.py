"""Cameras: the one place that converts between camera conventions.

Internal convention: OpenCV. ``viewmats [..., 4, 4]`` map world points to
camera space (+x right, +y down, +z forward); ``Ks [..., 3, 3]`` are pinhole intrinsics in
pixels with pixel centres at ``(x + 0.5, y + 0.5)``.

External convention: Blender/NeRF ``transform_matrix`` (camera-to-world, OpenGL camera axes:
+x right, +y up, the camera looks along -z), as stored in NeRF and D-NeRF ``transforms.json``.

World frame: z is up (as Blender and the NeRF synthetic scenes). An orbit at azimuth 0 puts
the camera on the -y side of the centre looking towards +y (the object's front); azimuth grows
counter-clockwise seen from above (towards +x first).

Orbital trajectory: frame ``i`` of ``T`` is seen from azimuth ``360 * i / T``
degrees at a fixed elevation and radius, at time ``t_i = i / (T - 1)``. :class:`OrbitTrajectory`
holds those numbers as data and reads/writes them as JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch

# Flips the y and z camera axes: OpenGL camera axes <-> OpenCV camera axes (its own inverse).
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _check_mat(name: str, m: torch.Tensor, rows: int, cols: int) -> None:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [..., {rows}, {cols}], got {type(m).__name__}")
    if m.dim() < 2 or m.shape[-2:] != (rows, cols):
        raise ValueError(f"{name} must have shape [..., {rows}, {cols}], got {tuple(m.shape)}")
    if not m.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {m.dtype}")


def transform_matrix_to_viewmat(transform_matrix: torch.Tensor) -> torch.Tensor:
    """Blender/NeRF camera-to-world ``[..., 4, 4]`` -> OpenCV world-to-camera ``[..., 4, 4]``."""
    _check_mat("transform_matrix", transform_matrix, 4, 4)
    flip = _GL_TO_CV.to(transform_matrix)
    c2w_cv = transform_matrix @ flip
    return rigid_inverse(c2w_cv)


def viewmat_to_transform_matrix(viewmat: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera ``[..., 4, 4]`` -> Blender/NeRF camera-to-world ``[..., 4, 4]``."""
    _check_mat("viewmat", viewmat, 4, 4)
    flip = _GL_TO_CV.to(viewmat)
    return rigid_inverse(viewmat) @ flip


def rigid_inverse(m: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (rotation + translation) without a general solve."""
    _check_mat("m", m, 4, 4)
    r = m[..., :3, :3]
    t = m[..., :3, 3:]
    out = torch.zeros_like(m)
    rt = r.transpose(-1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3:] = -rt @ t
    out[..., 3, 3] = 1.0
    return out


def camera_centers(viewmats: torch.Tensor) -> torch.Tensor:
    """World-space camera centres ``[..., 3]`` of OpenCV world-to-camera ``viewmats [..., 4, 4]``."""
    _check_mat("viewmats", viewmats, 4, 4)
    r = viewmats[..., :3, :3]
    t = viewmats[..., :3, 3:]
    return (-r.transpose(-1, -2) @ t)[..., 0]


def intrinsics_from_fov(fov_x_deg: float, width: int, height: int, fov_y_deg: float | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pinhole ``K [3, 3]`` in pixels from the horizontal field of view in degrees.

    Square pixels unless ``fov_y_deg`` is given; the principal point is the image centre.
    """
    if not (0.0 < fov_x_deg < 180.0):
        raise ValueError(f"fov_x_deg must be in (0, 180) degrees, got {fov_x_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    fy = fx if fov_y_deg is None else 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.tensor([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def fov_from_intrinsics(K: torch.Tensor, width: int) -> float:
    """Horizontal field of view in degrees of a pinhole ``K [3, 3]`` for an image ``width`` pixels wide."""
    _check_mat("K", K, 3, 3)
    return math.degrees(2.0 * math.atan(0.5 * width / float(K[0, 0])))


def look_at(eye: torch.Tensor, target: torch.Tensor, up: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenCV world-to-camera ``viewmats [..., 4, 4]`` for cameras at ``eye [..., 3]`` looking at ``target [..., 3]``.

    ``up`` is the world up direction (z by default); the image's +y (down) points against it.
    """
    if eye.shape[-1] != 3 or target.shape[-1] != 3:
        raise ValueError(f"eye and target must have shape [..., 3], got {tuple(eye.shape)} and {tuple(target.shape)}")
    eye, target = torch.broadcast_tensors(eye, target)
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(forward, up_t, dim=-1)
    if bool((right.norm(dim=-1) < 1e-8).any()):
        raise ValueError("look_at: the viewing direction is parallel to `up`; pick another up vector")
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coordinates
    view = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    view[..., :3, :3] = rot
    view[..., :3, 3] = -(rot @ eye.unsqueeze(-1))[..., 0]
    view[..., 3, 3] = 1.0
    return view


def orbit_positions(azimuth_deg: torch.Tensor, elevation_deg: Union[float, torch.Tensor], radius: float,
                    center: Sequence[float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """Camera centres ``[..., 3]`` on a sphere around ``center``; azimuth 0 is on the -y side."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float64))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float64)).expand_as(az)
    c = torch.as_tensor(center, dtype=torch.float64)
    pos = torch.stack([radius * torch.cos(el) * torch.sin(az),
                       -radius * torch.cos(el) * torch.cos(az),
                       radius * torch.sin(el)], dim=-1)
    return pos + c


def orbit_viewmats(azimuth_deg: torch.Tensor, elevation_deg: Union[float, torch.Tensor], radius: float,
                   center: Sequence[float] = (0.0, 0.0, 0.0), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """World-to-camera ``viewmats [..., 4, 4]`` of cameras on an orbit, all looking at ``center``."""
    eye = orbit_positions(azimuth_deg, elevation_deg, radius, center)
    target = torch.as_tensor(center, dtype=torch.float64).expand_as(eye)
    return look_at(eye, target).to(dtype)


def orbit_cameras(azimuth_deg: Union[Sequence[float], torch.Tensor], elevation_deg: float, radius: float,
                  fov_deg: float, width: int, height: int, center: Sequence[float] = (0.0, 0.0, 0.0),
                  dtype: torch.dtype = torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole cameras on an orbit around ``center``, all looking at it, with square pixels.

    Args:
        azimuth_deg: ``[...]`` azimuths in degrees (0 on the -y side, growing towards +x).
        elevation_deg: degrees above the xy plane; radius: distance to ``center`` (scene units);
        fov_deg: horizontal field of view in degrees; width, height: image size in pixels.

    Returns:
        ``viewmats [..., 4, 4]`` (OpenCV world-to-camera) and ``Ks [..., 3, 3]`` (pixels).
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    az = torch.as_tensor(azimuth_deg, dtype=torch.float64)
    viewmats = orbit_viewmats(az, float(elevation_deg), radius, center, dtype=torch.float64)
    K = intrinsics_from_fov(fov_deg, width, height, dtype=torch.float64)
    Ks = K.expand(*az.shape, 3, 3).clone()
    return viewmats.to(device=device, dtype=dtype), Ks.to(device=device, dtype=dtype)


@dataclass
class OrbitTrajectory:
    """The orbital video's camera path, stored as data beside every video.

    Frame ``i`` of ``num_frames`` is seen from azimuth ``azimuth_offset_deg + 360 * i / num_frames``
    degrees at ``elevation_deg``, distance ``radius`` from ``center``, with horizontal field of
    view ``fov_deg``, at time ``t_i = i / (num_frames - 1)``.
    """

    num_frames: int
    elevation_deg: float = 15.0
    radius: float = 3.0
    fov_deg: float = 40.0
    width: int = 256
    height: int = 256
    center: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    azimuth_offset_deg: float = 0.0

    def __post_init__(self):
        if int(self.num_frames) < 1:
            raise ValueError(f"OrbitTrajectory.num_frames must be >= 1, got {self.num_frames}")
        self.num_frames = int(self.num_frames)
        self.center = [float(c) for c in self.center]
        if len(self.center) != 3:
            raise ValueError(f"OrbitTrajectory.center must have 3 numbers, got {self.center}")

    def azimuths_deg(self) -> torch.Tensor:
        """``[T]`` azimuths in degrees."""
        i = torch.arange(self.num_frames, dtype=torch.float64)
        return self.azimuth_offset_deg + 360.0 * i / self.num_frames

    def times(self) -> torch.Tensor:
        """``[T]`` normalised times ``i / (T - 1)`` (0 for a single frame)."""
        if self.num_frames == 1:
            return torch.zeros(1)
        return torch.arange(self.num_frames, dtype=torch.float32) / (self.num_frames - 1)

    def viewmats(self) -> torch.Tensor:
        """``[T, 4, 4]`` OpenCV world-to-camera matrices."""
        return orbit_viewmats(self.azimuths_deg(), self.elevation_deg, self.radius, self.center)

    def Ks(self) -> torch.Tensor:
        """``[T, 3, 3]`` pinhole intrinsics in pixels."""
        return intrinsics_from_fov(self.fov_deg, self.width, self.height).expand(self.num_frames, 3, 3).clone()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OrbitTrajectory":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown trajectory fields {sorted(unknown)}; expected some of {sorted(known)}")
        if "num_frames" not in d:
            raise ValueError("trajectory is missing 'num_frames'")
        return cls(**d)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "OrbitTrajectory":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read trajectory JSON ({e})") from e
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: bad trajectory ({e})") from e
