"""One internal type for dynamic image datasets, and its readers and writer.

Layouts read by :func:`load_dataset` (a folder):

* **NeRF-style** ``transforms.json`` (written by :func:`write_dataset`): top-level intrinsics
  (``camera_angle_x`` and/or ``fl_x, fl_y, cx, cy, w, h``) and ``frames``, each with
  ``file_path``, ``transform_matrix`` (Blender camera-to-world), ``time`` in [0, 1], and optionally
  ``view`` (camera index), ``split`` ("train"/"val"/"test") and ``reference`` (the frame belongs
  to the fixed reference-view video used by L_hex). A ``trajectory.json`` beside it (an
  :class:`~orster4d.cameras.OrbitTrajectory`) marks an orbital video: its ``num_frames`` must
  equal the number of non-reference frames.
* **D-NeRF** ``transforms_{train,val,test}.json`` (``camera_angle_x``; ``file_path`` without
  extension; RGBA PNGs): the split comes from the file name.
* **Orbital frames**: ``trajectory.json`` plus image files (``*.png``/``*.jpg``, sorted by name),
  one per trajectory frame; cameras and times come from the trajectory.

Images with an alpha channel are composited on ``background``. All problems (empty folder,
missing or unreadable frames, mismatched resolutions, trajectory vs frame count) raise
ValueError naming the file and the problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from orster4d.cameras import (OrbitTrajectory, fov_from_intrinsics, intrinsics_from_fov, transform_matrix_to_viewmat,
                       viewmat_to_transform_matrix)

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_INTERPRETED = ("frames", "camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h")


@dataclass
class DynamicDataset:
    """``F`` posed, timed frames of one dynamic scene.

    Attributes:
        images: ``[F, H, W, 3]`` float32 in [0, 1], composited on ``background``.
        alphas: ``[F, H, W, 1]`` float32 or None (no alpha channel in the files).
        viewmats: ``[F, 4, 4]`` OpenCV world-to-camera.
        Ks: ``[F, 3, 3]`` intrinsics in pixels.
        times: ``[F]`` float32 in [0, 1].
        view_ids: ``[F]`` int64 camera index (-1 where unknown).
        splits: F strings ("train", "val" or "test").
        reference: ``[F]`` bool, frames of the fixed reference-view video.
        trajectory: the orbital trajectory when the frames are an orbital video.
        files: F source file paths (for messages).
        background: RGB the images were composited on.
        metadata: top-level entries of ``transforms.json`` the reader does not interpret (for
            example ``prompt``, a text description, or ``static``, a sub-folder holding the static
            object's orbital video); :func:`write_dataset` writes them back.
    """

    images: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor
    times: torch.Tensor
    alphas: Optional[torch.Tensor] = None
    view_ids: Optional[torch.Tensor] = None
    splits: List[str] = field(default_factory=list)
    reference: Optional[torch.Tensor] = None
    trajectory: Optional[OrbitTrajectory] = None
    files: List[str] = field(default_factory=list)
    background: tuple = (1.0, 1.0, 1.0)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        f = self.images.shape[0]
        if self.images.dim() != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must have shape [F, H, W, 3], got {tuple(self.images.shape)}")
        for name, shape in (("viewmats", (f, 4, 4)), ("Ks", (f, 3, 3)), ("times", (f,))):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(getattr(self, name).shape)}")
        if self.view_ids is None:
            self.view_ids = torch.full((f,), -1, dtype=torch.long)
        if not self.splits:
            self.splits = ["train"] * f
        if self.reference is None:
            self.reference = torch.zeros(f, dtype=torch.bool)
        if not self.files:
            self.files = [f"<frame {i}>" for i in range(f)]
        if len(self.splits) != f or len(self.files) != f or self.view_ids.shape != (f,) or self.reference.shape != (f,):
            raise ValueError("splits, files, view_ids and reference need one entry per frame")

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def subset(self, mask: Union[torch.Tensor, Sequence[int]]) -> "DynamicDataset":
        """The frames selected by a bool mask ``[F]`` or an index list (trajectory dropped unless all kept)."""
        idx = torch.as_tensor(mask)
        if idx.dtype == torch.bool:
            idx = idx.nonzero()[:, 0]
        keep_traj = idx.numel() == self.num_frames
        return DynamicDataset(
            images=self.images[idx], viewmats=self.viewmats[idx], Ks=self.Ks[idx], times=self.times[idx],
            alphas=None if self.alphas is None else self.alphas[idx], view_ids=self.view_ids[idx],
            splits=[self.splits[i] for i in idx.tolist()], reference=self.reference[idx],
            trajectory=self.trajectory if keep_traj else None, files=[self.files[i] for i in idx.tolist()],
            background=self.background, metadata=dict(self.metadata))

    def split(self, name: str) -> "DynamicDataset":
        return self.subset(torch.tensor([s == name for s in self.splits], dtype=torch.bool))

    def has_split(self, name: str) -> bool:
        return name in self.splits


# ---------------------------------------------------------------------- reading
def _read_image(path: Path, background) -> tuple:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ValueError(f"{path}: frame file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from e
    x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    if x.shape[-1] == 4:
        a = x[..., 3:]
        rgb = x[..., :3] * a + torch.tensor(background, dtype=torch.float32) * (1 - a)
        return rgb, a
    return x, None


def _load_images(paths: List[Path], background):
    images, alphas = [], []
    size = None
    for p in paths:
        rgb, a = _read_image(p, background)
        if size is None:
            size = (rgb.shape[0], rgb.shape[1], p)
        elif rgb.shape[:2] != size[:2]:
            raise ValueError(f"{p}: resolution {rgb.shape[1]}x{rgb.shape[0]} differs from "
                             f"{size[1]}x{size[0]} of {size[2]}")
        images.append(rgb)
        alphas.append(a)
    has_alpha = all(a is not None for a in alphas)
    return torch.stack(images), (torch.stack(alphas) if has_alpha else None)


def _frame_path(root: Path, file_path: str, json_path: Path) -> Path:
    p = (root / file_path).resolve() if not Path(file_path).is_absolute() else Path(file_path)
    if p.suffix.lower() in _IMAGE_EXTS:
        return p
    for ext in _IMAGE_EXTS:
        if p.with_name(p.name + ext).is_file():
            return p.with_name(p.name + ext)
    return p.with_name(p.name + ".png")


def _intrinsics(meta: dict, frame: dict, width: int, height: int, json_path: Path) -> torch.Tensor:
    def get(key):
        return frame.get(key, meta.get(key))

    if get("fl_x") is not None:
        fx = float(get("fl_x"))
        fy = float(get("fl_y") if get("fl_y") is not None else fx)
        cx = float(get("cx") if get("cx") is not None else width / 2)
        cy = float(get("cy") if get("cy") is not None else height / 2)
        return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
    if get("camera_angle_x") is not None:
        import math

        fov_x = math.degrees(float(get("camera_angle_x")))
        fov_y = math.degrees(float(get("camera_angle_y"))) if get("camera_angle_y") is not None else None
        return intrinsics_from_fov(fov_x, width, height, fov_y)
    raise ValueError(f"{json_path}: no intrinsics (need camera_angle_x or fl_x)")


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise ValueError(f"{path}: expected an object with a 'frames' list")
    if not meta["frames"]:
        raise ValueError(f"{path}: 'frames' is empty")
    return meta


def _from_transforms(json_paths: List[tuple], background) -> DynamicDataset:
    paths, mats, times, views, splits, refs, metas, extra = [], [], [], [], [], [], [], {}
    for json_path, default_split in json_paths:
        meta = _read_json(json_path)
        extra.update({k: v for k, v in meta.items() if k not in _INTERPRETED and k not in extra})
        for i, fr in enumerate(meta["frames"]):
            where = f"{json_path}: frame {i}"
            if "file_path" not in fr:
                raise ValueError(f"{where}: missing 'file_path'")
            if "transform_matrix" not in fr:
                raise ValueError(f"{where} ({fr['file_path']}): missing 'transform_matrix'")
            if "time" not in fr:
                raise ValueError(f"{where} ({fr['file_path']}): missing 'time' (dynamic datasets need a time per frame)")
            t = float(fr["time"])
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"{where} ({fr['file_path']}): time {t} is outside [0, 1]")
            m = torch.tensor(fr["transform_matrix"], dtype=torch.float64)
            if m.shape != (4, 4):
                raise ValueError(f"{where} ({fr['file_path']}): transform_matrix must be 4x4, got {tuple(m.shape)}")
            paths.append(_frame_path(json_path.parent, fr["file_path"], json_path))
            mats.append(m)
            times.append(t)
            views.append(int(fr.get("view", -1)))
            splits.append(str(fr.get("split", default_split)))
            refs.append(bool(fr.get("reference", False)))
            metas.append((meta, fr, json_path))
    images, alphas = _load_images(paths, background)
    h, w = images.shape[1:3]
    for meta, _, json_path in metas[:1]:
        mw, mh = meta.get("w"), meta.get("h")
        if (mw is not None and int(mw) != w) or (mh is not None and int(mh) != h):
            raise ValueError(f"{json_path}: declares {mw}x{mh} but the frames are {w}x{h}")
    Ks = torch.stack([_intrinsics(meta, fr, w, h, jp) for meta, fr, jp in metas])
    viewmats = transform_matrix_to_viewmat(torch.stack(mats)).float()
    return DynamicDataset(images=images, alphas=alphas, viewmats=viewmats, Ks=Ks,
                          times=torch.tensor(times, dtype=torch.float32), view_ids=torch.tensor(views),
                          splits=splits, reference=torch.tensor(refs), files=[str(p) for p in paths],
                          background=tuple(background), metadata=extra)


def load_dataset(folder: Union[str, Path], background: Sequence[float] = (1.0, 1.0, 1.0)) -> DynamicDataset:
    """Reads a dataset folder in any of the layouts of the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    if not any(folder.iterdir()):
        raise ValueError(f"{folder}: the folder is empty")
    background = tuple(float(b) for b in background)
    traj_path = folder / "trajectory.json"
    trajectory = OrbitTrajectory.load(traj_path) if traj_path.is_file() else None
    if (folder / "transforms.json").is_file():
        ds = _from_transforms([(folder / "transforms.json", "train")], background)
        src = folder / "transforms.json"
    elif any((folder / f"transforms_{s}.json").is_file() for s in ("train", "val", "test")):
        ds = _from_transforms([(folder / f"transforms_{s}.json", s) for s in ("train", "val", "test")
                               if (folder / f"transforms_{s}.json").is_file()], background)
        src = folder
    elif trajectory is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
        if len(files) != trajectory.num_frames:
            raise ValueError(f"{traj_path}: trajectory has num_frames={trajectory.num_frames} but {folder} "
                             f"holds {len(files)} image files")
        images, alphas = _load_images(files, background)
        if (images.shape[2], images.shape[1]) != (trajectory.width, trajectory.height):
            raise ValueError(f"{traj_path}: trajectory is {trajectory.width}x{trajectory.height} but {files[0]} "
                             f"is {images.shape[2]}x{images.shape[1]}")
        return DynamicDataset(images=images, alphas=alphas, viewmats=trajectory.viewmats(), Ks=trajectory.Ks(),
                              times=trajectory.times(), view_ids=torch.arange(trajectory.num_frames),
                              trajectory=trajectory, files=[str(p) for p in files], background=background)
    else:
        raise ValueError(f"{folder}: no transforms.json, transforms_{{train,val,test}}.json or trajectory.json")
    if trajectory is not None:
        n = int((~ds.reference).sum())
        if n != trajectory.num_frames:
            raise ValueError(f"{traj_path}: trajectory has num_frames={trajectory.num_frames} but {src} "
                             f"lists {n} orbital (non-reference) frames")
        if (ds.width, ds.height) != (trajectory.width, trajectory.height):
            raise ValueError(f"{traj_path}: trajectory is {trajectory.width}x{trajectory.height} but the frames "
                             f"are {ds.width}x{ds.height}")
        ds.trajectory = trajectory
    return ds


# ---------------------------------------------------------------------- writing
def write_png(path: Union[str, Path], image: torch.Tensor) -> Path:
    """Write ``image [H, W, 3 or 4]`` (float, [0, 1]; clamped) as an 8-bit PNG; returns ``path``."""
    from PIL import Image

    Image.fromarray((image.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)).save(path)
    return Path(path)


def write_dataset(folder: Union[str, Path], ds: DynamicDataset, image_dir: str = "images") -> None:
    """Writes ``ds`` as a NeRF-style ``transforms.json`` + PNGs (RGBA when ``ds.alphas`` is set,
    with straight colour recovered from the composited images), its ``metadata`` as top-level
    entries of ``transforms.json``, and ``trajectory.json`` when set."""

    folder = Path(folder)
    (folder / image_dir).mkdir(parents=True, exist_ok=True)
    K0 = ds.Ks[0]
    meta = {
        **{k: v for k, v in ds.metadata.items() if k not in _INTERPRETED},
        "camera_angle_x": float(np.radians(fov_from_intrinsics(K0, ds.width))),
        "w": ds.width, "h": ds.height,
        "fl_x": float(K0[0, 0]), "fl_y": float(K0[1, 1]), "cx": float(K0[0, 2]), "cy": float(K0[1, 2]),
        "frames": [],
    }
    c2w = viewmat_to_transform_matrix(ds.viewmats.double())
    bg = torch.tensor(ds.background, dtype=torch.float32)
    for i in range(ds.num_frames):
        name = f"{image_dir}/r_{i:04d}.png"
        rgb = ds.images[i]
        if ds.alphas is not None:
            a = ds.alphas[i]
            straight = ((rgb - bg * (1 - a)) / a.clamp_min(1e-6)).clamp(0, 1)
            arr = torch.cat([straight, a], -1)
        else:
            arr = rgb
        write_png(folder / name, arr)
        fr = {"file_path": name, "time": float(ds.times[i]), "transform_matrix": c2w[i].tolist(),
              "view": int(ds.view_ids[i]), "split": ds.splits[i], "reference": bool(ds.reference[i])}
        if not torch.allclose(ds.Ks[i], K0):
            K = ds.Ks[i]
            fr.update(fl_x=float(K[0, 0]), fl_y=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]))
        meta["frames"].append(fr)
    (folder / "transforms.json").write_text(json.dumps(meta, indent=1))
    if ds.trajectory is not None:
        ds.trajectory.save(folder / "trajectory.json")
