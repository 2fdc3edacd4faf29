"""The offline demo model: a small trained ``STD4DPipeline`` shipped with the repository, and the
held-out object ``orster4d-generate --demo`` turns into a 4D asset.

A demo model folder holds::

    pipeline/       an STD4DPipeline folder (save_pretrained; float16 weights, every file < 16 MiB)
    demo.json       {"object": name, "prompt": text, "image": "condition.png", "truth": "truth.png" (optional),
                     "schedules": {"cpu": SCHEDULE, "cuda": SCHEDULE}}
    condition.png   the held-out object's true first view (the image condition), at the model's size
    truth.png       optional: the object's true orbital frames side by side
    README.md       optional: how the model was made

``SCHEDULE`` is the generation and construction schedule of one device type: ``{"steps": int >= 1,
"guidance": float >= 0, "construct_iters": [coarse >= 1, fine >= 0], "construct_points": int >= 1
(optional)}``; the keys are the ``orster4d-generate`` flags of the same names.

The folder is found at ``ORSTER4D_DEMO_MODEL`` when that environment variable is set, else at
``models/std4d-small`` beside the package (the repository root of an editable install).
:func:`write_demo_model` writes one from a pipeline folder; :func:`load_demo_model` reads and
checks one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import torch

ENV_VAR = "ORSTER4D_DEMO_MODEL"
DEVICE_TYPES = ("cpu", "cuda")
MAX_FILE_BYTES = 16 * 2 ** 20  # every weight file of a shipped model stays under this (16 MiB)
SCHEDULE_KEYS = ("steps", "guidance", "construct_iters", "construct_points")
REQUIRED_SCHEDULE_KEYS = ("steps", "guidance", "construct_iters")


class DemoModelError(ValueError):
    """A demo model folder that is missing or malformed (the message names the file and what was expected)."""


def default_demo_folder() -> Path:
    """``models/std4d-small`` beside the ``orster4d`` package (the repository root of an editable install)."""
    import orster4d

    return Path(orster4d.__file__).resolve().parents[1] / "models" / "std4d-small"


def demo_folder() -> Path:
    """The demo model folder: ``$ORSTER4D_DEMO_MODEL`` when set, else :func:`default_demo_folder`."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else default_demo_folder()


# ------------------------------------------------------------------------------------------ schedules
def check_schedule(schedule, where: str) -> Dict:
    """A validated copy of one device's schedule (see the module docstring); ``where`` names it in errors."""
    if not isinstance(schedule, dict):
        raise DemoModelError(f"{where}: expected an object with keys {list(REQUIRED_SCHEDULE_KEYS)}, got {schedule!r}")
    unknown = sorted(set(schedule) - set(SCHEDULE_KEYS))
    missing = [k for k in REQUIRED_SCHEDULE_KEYS if k not in schedule]
    if unknown or missing:
        raise DemoModelError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {unknown} (allowed: {list(SCHEDULE_KEYS)})"] if unknown else [])
            + ([f"missing key(s) {missing}"] if missing else [])))

    def integer(key, value, lo):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise DemoModelError(f"{where}.{key}: expected an integer >= {lo}, got {value!r}")
        return value

    out = {"steps": integer("steps", schedule["steps"], 1)}
    g = schedule["guidance"]
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
        raise DemoModelError(f"{where}.guidance: expected a finite number >= 0, got {g!r}")
    out["guidance"] = float(g)
    it = schedule["construct_iters"]
    if not isinstance(it, (list, tuple)) or len(it) != 2:
        raise DemoModelError(f"{where}.construct_iters: expected [coarse, fine], got {it!r}")
    out["construct_iters"] = (integer("construct_iters[0] (coarse)", it[0], 1),
                              integer("construct_iters[1] (fine)", it[1], 0))
    if "construct_points" in schedule:
        out["construct_points"] = integer("construct_points", schedule["construct_points"], 1)
    return out


def check_schedules(schedules, where: str = "schedules") -> Dict[str, Dict]:
    """``{"cpu": SCHEDULE, "cuda": SCHEDULE}`` validated (both device types are required)."""
    if not isinstance(schedules, dict) or sorted(schedules) != sorted(DEVICE_TYPES):
        got = sorted(schedules) if isinstance(schedules, dict) else schedules
        raise DemoModelError(f"{where}: expected one schedule for each device type {list(DEVICE_TYPES)}, got {got!r}")
    return {dev: check_schedule(schedules[dev], f"{where}.{dev}") for dev in DEVICE_TYPES}


# ------------------------------------------------------------------------------------------ reading
@dataclass
class DemoModel:
    """A checked demo model folder (paths are absolute)."""

    folder: Path
    object: str
    prompt: str
    schedules: Dict[str, Dict]
    image: Path
    truth: Optional[Path] = None

    @property
    def pipeline(self) -> Path:
        return self.folder / "pipeline"

    def schedule(self, device: Union[str, torch.device]) -> Dict:
        """The schedule of ``device``'s type (``cpu`` or ``cuda``)."""
        kind = torch.device(device).type
        if kind not in self.schedules:
            raise DemoModelError(f"{self.folder / 'demo.json'}: no schedule for device type {kind!r} "
                                 f"(it has {sorted(self.schedules)})")
        return dict(self.schedules[kind])

    def summary(self) -> Dict:
        """What ``generation.json`` records of the demo."""
        return {"folder": str(self.folder), "object": self.object, "prompt": self.prompt,
                "image": str(self.image), "truth": str(self.truth) if self.truth else None}


def _missing(folder: Path, what: str) -> DemoModelError:
    env = os.environ.get(ENV_VAR)
    where = f"{ENV_VAR}={env}" if env else f"{folder} (the default beside the package; {ENV_VAR} is unset)"
    return DemoModelError(
        f"demo model not found: {what}; looked in {where}. Point {ENV_VAR} at a demo model folder "
        f"(pipeline/, demo.json, condition.png; written by orster4d.generation.demo.write_demo_model), "
        f"or run from a repository checkout that has models/std4d-small/")


def load_demo_model(folder: Union[str, Path, None] = None) -> DemoModel:
    """Read and check a demo model folder (default :func:`demo_folder`): ``demo.json``'s fields and
    schedules, the image files it names, and ``pipeline/`` (:func:`check_pipeline_folder`)."""
    from orster4d.generation.pipeline import check_pipeline_folder

    folder = Path(folder) if folder is not None else demo_folder()
    if not folder.is_dir():
        raise _missing(folder, "no such folder")
    meta_path = folder / "demo.json"
    if not meta_path.is_file():
        raise _missing(folder, f"{meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DemoModelError(f"{meta_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise DemoModelError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    for key in ("object", "prompt", "image"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise DemoModelError(f"{meta_path}: '{key}' must be a non-empty string, got {meta.get(key)!r}")
    files = {}
    for key in ("image", "truth"):
        if meta.get(key) is None:
            continue
        path = folder / str(meta[key])
        if not path.is_file():
            raise DemoModelError(f"{meta_path}: '{key}' names {meta[key]!r}, but {path} does not exist")
        files[key] = path
    schedules = check_schedules(meta.get("schedules"), f"{meta_path}: schedules")
    try:
        check_pipeline_folder(str(folder / "pipeline"))
    except (FileNotFoundError, ValueError) as e:
        raise DemoModelError(f"{folder}: pipeline/ is not a complete pipeline folder ({e})") from e
    return DemoModel(folder=folder.resolve(), object=meta["object"], prompt=meta["prompt"], schedules=schedules,
                     image=files["image"].resolve(), truth=files["truth"].resolve() if "truth" in files else None)


# ------------------------------------------------------------------------------------------ writing
def _image_tensor(image, name: str) -> torch.Tensor:
    """A path, or an ``[H, W, 3]`` float array in [0, 1] (or uint8), as ``[H, W, 3]`` float32 in [0, 1]."""
    import numpy as np

    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as im:
            image = np.asarray(im.convert("RGB"))
    x = torch.as_tensor(np.asarray(image))
    if x.dim() != 3 or x.shape[-1] != 3:
        raise DemoModelError(f"{name}: expected an [H, W, 3] RGB image, got shape {list(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DemoModelError(f"{name}: float values must be finite and in [0, 1]")
    return x


def weight_files(folder: Union[str, Path]) -> Dict[str, int]:
    """``{relative path: bytes}`` of every weight file (``*.safetensors``, ``*.bin``) under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name.endswith((".safetensors", ".bin"))}


def write_demo_model(pipeline_dir: Union[str, Path], out_dir: Union[str, Path], image, object_name: str, prompt: str,
                     schedules: Dict[str, Dict], truth=None, dtype: torch.dtype = torch.float16,
                     max_file_bytes: int = MAX_FILE_BYTES, overwrite: bool = False) -> Path:
    """Write a demo model folder (module docstring) from an STD4DPipeline folder.

    Args:
        pipeline_dir: the trained STD4DPipeline folder (any saved dtype).
        out_dir: the folder to write (e.g. ``models/std4d-small``); must be absent or empty unless ``overwrite``.
        image: the held-out object's true first view: a PNG/JPEG path or ``[H, W, 3]`` (float in [0, 1]
            or uint8) at the pipeline's trajectory size; written as ``condition.png``.
        object_name, prompt: the held-out object's name and prompt (recorded in ``demo.json``).
        schedules: ``{"cpu": SCHEDULE, "cuda": SCHEDULE}`` (validated by :func:`check_schedules`).
        truth: optional true orbital frames strip (path or ``[H, W', 3]``), written as ``truth.png``.
        dtype: the dtype the weights are saved in (float16).
        max_file_bytes: every weight file must be smaller; components larger than this are saved in
            shards below it, and a file still over it (one tensor larger) is an error.
    Returns:
        ``out_dir`` as a Path. On an error nothing is left in ``out_dir``.
    """
    from orster4d.data.dataset import write_png
    from orster4d.generation.pipeline import load_pipeline

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out}: folder exists and is not empty; pass overwrite=True to replace it")
    if not isinstance(object_name, str) or not object_name.strip():
        raise DemoModelError(f"object_name: expected a non-empty string, got {object_name!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DemoModelError(f"prompt: expected a non-empty string, got {prompt!r}")
    schedules = check_schedules(schedules)
    if int(max_file_bytes) < 1:
        raise DemoModelError(f"max_file_bytes: expected a positive integer, got {max_file_bytes!r}")
    pipe = load_pipeline(str(pipeline_dir), device="cpu", dtype=dtype)
    tr = pipe.trajectory
    cond = _image_tensor(image, "image")
    if tuple(cond.shape[:2]) != (tr.height, tr.width):
        raise DemoModelError(f"image: {cond.shape[1]}x{cond.shape[0]} pixels; the model generates {tr.width}x{tr.height}")
    strip = _image_tensor(truth, "truth") if truth is not None else None

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        # a shard holds whole tensors: below the limit by a margin for the safetensors header
        pipe.save_pretrained(str(out / "pipeline"), max_shard_size=max(1, int(max_file_bytes) - 2 ** 16))
        over = {k: v for k, v in weight_files(out / "pipeline").items() if v >= max_file_bytes}
        if over:
            raise DemoModelError(f"{pipeline_dir}: weight file(s) of {max_file_bytes} bytes or more in {dtype} "
                                 f"(a single tensor larger than the limit): "
                                 + ", ".join(f"{k} ({v} bytes)" for k, v in over.items()))
        write_png(out / "condition.png", cond)
        meta = {"object": object_name, "prompt": prompt, "image": "condition.png"}
        if strip is not None:
            write_png(out / "truth.png", strip)
            meta["truth"] = "truth.png"
        meta["schedules"] = {dev: {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}
                             for dev, s in schedules.items()}
        (out / "demo.json").write_text(json.dumps(meta, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    load_demo_model(out)  # what --demo will read
    return out
