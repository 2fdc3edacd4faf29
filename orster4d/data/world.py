"""The data-scarcity world: abundant static-3D and video data, scarce 4D data, held-out objects.

The procedural generator (:mod:`orster4d.data.procedural`) has what real benchmarks lack, a true 4D
answer for every object. A world built from one seed holds four sets of procedural objects:

* ``static3d/``: orbital videos of static objects (motion off, the object frozen at t = 0); the
  abundant "3D" data a multi-view (spatial) teacher learns from;
* ``video/``: fixed-camera videos of moving objects (one camera per object, at a random azimuth);
  the abundant "video" data a temporal teacher learns from;
* ``scarce4d/``: orbital videos of moving objects, with their reference-view video (the camera of
  frame 0 at every time) and their static orbital video in ``static/``; the scarce 4D data;
* ``heldout/``: the same as ``scarce4d`` plus ``multiview/`` (multi-view ground truth: views x
  times, with ``train``/``test`` splits), for objects whose seeds no training set uses.

Object ``k`` of set ``s`` (index in :data:`SETS`) is the procedural object of family
``FAMILIES[k % 8]`` and seed ``4 * (world_seed * 10**6 + k) + s``: the four sets' seeds differ
modulo 4, so no object can be in two sets (disjoint by construction), every family appears in
every set of 8 or more objects, and object ``k`` does not depend on the set's count (the first
``n`` objects of a larger set are the ``n``-object set: a scarcity curve can use prefixes).

Layout (``root/``)::

    world.json                 the spec and, per set, the objects (family, seed, prompt, folder)
    static3d/obj_00000/        transforms.json (+ "prompt"), trajectory.json, images/, object.json
    video/obj_00000/           transforms.json (+ "prompt", "camera": the fixed camera), images/, object.json
    scarce4d/obj_00000/        transforms.json (+ "prompt", "static": "static"), trajectory.json,
                               images/ (T orbital frames, then T reference-view frames), static/, object.json
    heldout/obj_00000/         as scarce4d, plus multiview/

Each set folder is a folder of video folders, the layout ``orster4d-train`` reads
(``data.root=<root>/scarce4d``); ``object.json`` records the object (family, seed, set, prompt,
trajectory or camera). Frames are float images in [0, 1] on a white background, rendered with the
package rasterizer, one batched call over the times of each video.

Resumable: an object is written to ``obj_xxxxx.tmp/`` and renamed when complete; a build skips
complete objects and rewrites an interrupted one whole. Deterministic: the same spec gives the
same files, byte for byte (on the same rasterizer backend).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from orster4d.cameras import OrbitTrajectory, intrinsics_from_fov, orbit_viewmats
from orster4d.data.dataset import DynamicDataset, write_dataset
from orster4d.data.procedural import FAMILIES, make_object, object_prompt
from orster4d.data.render import render_multiview, render_object, render_orbital

SETS = ("static3d", "video", "scarce4d", "heldout")
TRAINING_SETS = ("static3d", "video", "scarce4d")
WORLD_FILE = "world.json"
OBJECT_FILE = "object.json"
FORMAT = 1
_SEED_STRIDE = 10 ** 6  # objects per set and world seed


@dataclass
class WorldSpec:
    """What a world is made of; every file of the world is a function of it.

    Counts are objects per set; ``frames`` is the video length T; ``size`` the frame width and
    height in pixels; ``gaussians`` the Gaussians per object; ``views`` the multi-view cameras of
    the held-out ground truth; ``elevation_deg``, ``radius``, ``fov_deg`` the orbit (degrees,
    world units, degrees). The fixed cameras of ``video/`` use the same elevation, radius and
    field of view at a per-object azimuth.
    """

    seed: int = 0
    static3d: int = 64
    video: int = 64
    scarce4d: int = 16
    heldout: int = 8
    frames: int = 16
    size: int = 64
    gaussians: int = 2000
    views: int = 8
    elevation_deg: float = 15.0
    radius: float = 3.0
    fov_deg: float = 40.0

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first bad field."""
        ints = {f.name: getattr(self, f.name) for f in fields(self) if f.type in ("int", int)}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"world: {name} must be an integer, got {v!r}")
        if self.seed < 0:
            raise ValueError(f"world: seed must be >= 0, got {self.seed}")
        for name in SETS:
            n = getattr(self, name)
            if not 0 <= n < _SEED_STRIDE:
                raise ValueError(f"world: --{name} must be in [0, {_SEED_STRIDE}), got {n}")
        if self.heldout < 1:
            raise ValueError(f"world: --heldout must be >= 1 (the protocol scores on held-out objects), got {self.heldout}")
        if self.frames < 2:
            raise ValueError(f"world: --frames must be >= 2, got {self.frames}")
        if self.size < 8:
            raise ValueError(f"world: --size must be >= 8 pixels, got {self.size}")
        if self.gaussians < 16:
            raise ValueError(f"world: --gaussians must be >= 16, got {self.gaussians}")
        if self.views < 2:
            raise ValueError(f"world: --views must be >= 2, got {self.views}")
        for name in ("elevation_deg", "radius", "fov_deg"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"world: {name} must be a finite number, got {v!r}")
        if not -89.0 <= self.elevation_deg <= 89.0:
            raise ValueError(f"world: elevation_deg must be in [-89, 89], got {self.elevation_deg}")
        if self.radius <= 0 or not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"world: radius must be > 0 and fov_deg in [1, 170], got {self.radius}, {self.fov_deg}")

    def count(self, set_name: str) -> int:
        return int(getattr(self, _check_set(set_name)))

    def trajectory(self) -> OrbitTrajectory:
        """The orbit shared by every orbital video of the world."""
        return OrbitTrajectory(num_frames=self.frames, elevation_deg=float(self.elevation_deg),
                               radius=float(self.radius), fov_deg=float(self.fov_deg),
                               width=self.size, height=self.size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorldSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world: unknown spec fields {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)


def _check_set(set_name: str) -> str:
    if set_name not in SETS:
        raise ValueError(f"world: unknown set {set_name!r}; expected one of {SETS}")
    return set_name


def object_seed(world_seed: int, set_name: str, k: int) -> int:
    """The procedural seed of object ``k`` of ``set_name``: ``4 * (world_seed * 10**6 + k) + set index``."""
    if not 0 <= k < _SEED_STRIDE:
        raise ValueError(f"world: object index must be in [0, {_SEED_STRIDE}), got {k}")
    return 4 * (int(world_seed) * _SEED_STRIDE + int(k)) + SETS.index(_check_set(set_name))


def object_family(k: int) -> str:
    """The family of object ``k`` of any set: the families in turn."""
    return FAMILIES[int(k) % len(FAMILIES)]


def object_name(k: int) -> str:
    return f"obj_{int(k):05d}"


def set_objects(spec: WorldSpec, set_name: str) -> List[dict]:
    """``[{"index", "name", "family", "seed"}]`` of one set, in order."""
    return [{"index": k, "name": object_name(k), "family": object_family(k),
             "seed": object_seed(spec.seed, set_name, k)} for k in range(spec.count(set_name))]


def fixed_camera(spec: WorldSpec, seed: int) -> dict:
    """The fixed camera of a ``video/`` object: azimuth drawn from the object's seed (degrees)."""
    g = torch.Generator().manual_seed(int(seed) * 7 + 3)
    az = float(torch.rand((), generator=g, dtype=torch.float64)) * 360.0
    return {"kind": "fixed", "azimuth_deg": round(az, 6), "elevation_deg": float(spec.elevation_deg),
            "radius": float(spec.radius), "fov_deg": float(spec.fov_deg), "width": spec.size, "height": spec.size}


# ------------------------------------------------------------------------------------------ rendering
def _render_fixed(obj, spec: WorldSpec, camera: dict, device=None, backend=None) -> DynamicDataset:
    """``T`` frames of ``obj`` moving, seen by one fixed camera (one batched rasterizer call)."""
    T = spec.frames
    times = torch.arange(T, dtype=torch.float32) / (T - 1)
    vm = orbit_viewmats(torch.tensor([camera["azimuth_deg"]], dtype=torch.float64), camera["elevation_deg"],
                        camera["radius"], [0.0, 0.0, 0.0])
    K = intrinsics_from_fov(camera["fov_deg"], spec.size, spec.size)
    vms = vm.expand(T, 1, 4, 4).contiguous()
    Ks = K.expand(T, 1, 3, 3).contiguous()
    out = render_object(obj, times, vms, Ks, spec.size, spec.size, device=device, backend=backend)
    return DynamicDataset(images=out["rgb"][:, 0], alphas=out["alpha"][:, 0], viewmats=vms[:, 0].float(),
                          Ks=Ks[:, 0].float(), times=times, view_ids=torch.zeros(T, dtype=torch.long),
                          splits=["train"] * T, reference=torch.zeros(T, dtype=torch.bool))


def _write_object(folder: Path, spec: WorldSpec, set_name: str, entry: dict, device=None, backend=None) -> dict:
    """Render and write one object into ``folder`` (which must not exist); returns its record."""
    obj = make_object(entry["family"], entry["seed"], spec.gaussians)
    prompt = object_prompt(obj)
    rec = {"format": FORMAT, "set": set_name, "index": entry["index"], "family": entry["family"],
           "seed": entry["seed"], "prompt": prompt, "frames": spec.frames, "size": spec.size}
    traj = spec.trajectory()
    if set_name == "static3d":
        ds = render_orbital(obj, traj, static=True, with_reference=False, device=device, backend=backend)
        ds.metadata.update(prompt=prompt, motion="off")
        write_dataset(folder, ds)
        rec["trajectory"] = traj.to_dict()
        rec["motion"] = "off"
    elif set_name == "video":
        cam = fixed_camera(spec, entry["seed"])
        ds = _render_fixed(obj, spec, cam, device, backend)
        ds.metadata.update(prompt=prompt, camera=cam)
        write_dataset(folder, ds)
        rec["camera"] = cam
    else:  # scarce4d, heldout: orbital video + reference view, static orbital video (+ multi-view GT)
        ds = render_orbital(obj, traj, device=device, backend=backend)
        ds.metadata.update(prompt=prompt, static="static")
        write_dataset(folder, ds)
        write_dataset(folder / "static", render_orbital(obj, traj, static=True, with_reference=False,
                                                        device=device, backend=backend))
        rec["trajectory"] = traj.to_dict()
        rec["static"] = "static"
        if set_name == "heldout":
            write_dataset(folder / "multiview", render_multiview(obj, traj, spec.views, device=device, backend=backend))
            rec["multiview"] = "multiview"
    (folder / OBJECT_FILE).write_text(json.dumps(rec, indent=1, sort_keys=True))
    return rec


def _is_complete(folder: Path) -> bool:
    return (folder / OBJECT_FILE).is_file()


def read_world(root: Union[str, Path]) -> dict:
    """The ``world.json`` of ``root`` (ValueError naming the file when absent or unreadable)."""
    path = Path(root) / WORLD_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found (build the world with `orster4d-data build --root {root}`)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    meta["spec"] = WorldSpec.from_dict(meta["spec"]).to_dict()
    return meta


def build_world(root: Union[str, Path], spec: WorldSpec, sets=SETS, device=None, backend: Optional[str] = None,
                progress: bool = True) -> dict:
    """Build (or complete) the world of ``spec`` under ``root``; returns the ``world.json`` dict.

    A ``root`` that already holds a world of another spec is an error naming the differing fields
    (checked before any rendering). Complete objects are skipped; interrupted ones are rewritten.
    """
    root = Path(root)
    spec.check()
    sets = [_check_set(s) for s in sets]
    if (root / WORLD_FILE).is_file():
        old = read_world(root)["spec"]
        diff = {k: (old[k], v) for k, v in spec.to_dict().items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{root}/{WORLD_FILE}: this folder holds a world of another spec "
                             f"(field: (on disk, asked)) {diff}; use another --root")
    root.mkdir(parents=True, exist_ok=True)
    for s in sets:  # leftovers of an interrupted build
        for tmp in (root / s).glob("*.tmp") if (root / s).is_dir() else ():
            shutil.rmtree(tmp, ignore_errors=True)
    todo = [(s, e) for s in sets for e in set_objects(spec, s)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="world", dynamic_ncols=True)
    made = skipped = 0
    try:
        for set_name, entry in todo:
            folder = root / set_name / entry["name"]
            if _is_complete(folder):
                skipped += 1
            else:
                tmp = folder.with_name(folder.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
                tmp.parent.mkdir(parents=True, exist_ok=True)
                _write_object(tmp, spec, set_name, entry, device, backend)
                os.replace(tmp, folder)
                made += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(set=set_name, written=made, skipped=skipped)
    finally:
        if bar is not None:
            bar.close()
    meta = {"format": FORMAT, "spec": spec.to_dict(), "trajectory": spec.trajectory().to_dict(), "sets": {}}
    for s in SETS:
        objs = []
        for e in set_objects(spec, s):
            f = root / s / e["name"]
            if _is_complete(f):
                rec = json.loads((f / OBJECT_FILE).read_text())
                objs.append({**e, "prompt": rec["prompt"], "folder": f"{s}/{e['name']}"})
        meta["sets"][s] = objs
    (root / WORLD_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def set_folder(root: Union[str, Path], set_name: str) -> Path:
    """``root/<set>``: the folder of video folders ``orster4d-train`` reads as ``data.root``."""
    return Path(root) / _check_set(set_name)


def subset(root: Union[str, Path], set_name: str, n: int, dest: Union[str, Path]) -> Path:
    """A data root ``dest`` holding the first ``n`` objects of a set (symbolic links), e.g. a
    smaller 4D set for a scarcity curve. Raises ValueError when the set has fewer than ``n``."""
    have = read_world(root)["sets"][_check_set(set_name)]
    if not 1 <= int(n) <= len(have):
        raise ValueError(f"subset: {set_name} holds {len(have)} complete objects, asked for {n}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for e in have[: int(n)]:
        link = dest / e["name"]
        target = (Path(root) / e["folder"]).resolve()
        if link.is_symlink() or link.exists():
            if link.resolve() == target:
                continue
            raise ValueError(f"subset: {link} exists and is not a link to {target}")
        link.symlink_to(target, target_is_directory=True)
    return dest


def heldout_objects(root: Union[str, Path]) -> List[Dict]:
    """The held-out objects of a world: ``[{"name", "family", "seed", "prompt", "folder" (absolute)}]``."""
    root = Path(root)
    return [{**e, "folder": str(root / e["folder"])} for e in read_world(root)["sets"]["heldout"]]
