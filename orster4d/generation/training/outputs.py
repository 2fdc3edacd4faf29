"""A stage's output folder: what the trainer owns there, whole checkpoints, atomic ``final``.

Rules (``docs/outputs.md`` has the user's view):

- The trainer writes only inside ``<out>/stage{N}/`` and records every entry it creates there in
  ``orster4d-manifest.json`` *before* creating it. Entries are top-level names: files
  (``log.jsonl``), folders (``checkpoint-000010/``, ``final-000030/``, and their ``.tmp``
  forms while being written) and the ``final`` link. Anything else in the folder is foreign.
- A checkpoint is written as ``checkpoint-{step}.tmp/`` and renamed when whole; its
  ``state.json`` is written last and lists every other file with its size and SHA-256.
- ``final`` is a symbolic link to ``final-{step}/`` (a hard-linked copy of the last checkpoint,
  a plain copy where the filesystem has no hard links); it is replaced by renaming a new link
  over it, so at every moment it is the old one or the new one, whole.
- An existing, non-empty stage folder is refused unless ``resume`` or ``overwrite`` is asked.
  ``overwrite`` removes only manifest entries and refuses, naming them, when foreign files are
  there (including files added inside a checkpoint after it was written).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

MANIFEST = "orster4d-manifest.json"
FINAL = "final"
CHECKPOINT_PREFIX = "checkpoint-"
DELAY_ENV = "ORSTER4D_CHECKPOINT_DELAY_S"


def write_pause() -> None:
    """Sleep ``$ORSTER4D_CHECKPOINT_DELAY_S`` seconds (unset: no pause) between the steps of a
    checkpoint write: lets fault-injection tests land a kill inside one."""
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_table(folder: str) -> Dict[str, dict]:
    """``{relative path: {"size", "sha256"}}`` of every file under ``folder``."""
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, folder)] = {"size": os.path.getsize(p), "sha256": sha256(p)}
    return out


def checkpoint_step(name: str) -> Optional[int]:
    """The step of a ``checkpoint-{step}`` folder name (or of ``checkpoint-{step}.old``, the
    previous copy of a step being rewritten), else None (``.tmp`` folders included)."""
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    tail = name[len(CHECKPOINT_PREFIX):]
    tail = tail[:-len(".old")] if tail.endswith(".old") else tail
    return int(tail) if tail.isdigit() else None


def verify_checkpoint(path: str, checksums: bool = False) -> Optional[str]:
    """None when ``path`` is a whole checkpoint, else the reason it is not.

    Whole: ``state.json`` parses and every file it lists is there with its size (and, with
    ``checksums``, its SHA-256).
    """
    state = os.path.join(path, "state.json")
    try:
        with open(state) as f:
            st = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        return f"{state}: {e}"
    for rel, info in st.get("files", {}).items():
        p = os.path.join(path, rel)
        if not os.path.isfile(p) or os.path.getsize(p) != info["size"]:
            return f"{p}: missing or of the wrong size"
        if checksums and sha256(p) != info["sha256"]:
            return f"{p}: checksum differs from state.json"
    return None


class StageFolder:
    """The output folder of one stage and its manifest (see the module docstring)."""

    def __init__(self, path: str):
        self.path = path
        self.manifest_path = os.path.join(path, MANIFEST)
        self.owned = set()
        if os.path.isfile(self.manifest_path):
            with open(self.manifest_path) as f:
                self.owned = set(json.load(f)["entries"])

    # -- the manifest --------------------------------------------------------------------------
    def _save(self) -> None:
        os.makedirs(self.path, exist_ok=True)
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"written_by": "orster4d-train", "entries": sorted(self.owned)}, f, indent=1)
        os.replace(tmp, self.manifest_path)

    def own(self, *names: str) -> None:
        """Record top-level entries (``name`` or ``name/`` for a folder) before creating them."""
        new = set(names) - self.owned
        if new:
            self.owned |= new
            self._save()

    def disown(self, *names: str) -> None:
        gone = self.owned & set(names)
        if gone:
            self.owned -= gone
            self._save()

    def _is_owned(self, entry: str) -> bool:
        full = os.path.join(self.path, entry)
        is_dir = os.path.isdir(full) and not os.path.islink(full)
        return (entry + "/" if is_dir else entry) in self.owned

    # -- inspection ----------------------------------------------------------------------------
    def entries(self) -> List[str]:
        if not os.path.isdir(self.path):
            return []
        return sorted(e for e in os.listdir(self.path) if e not in (MANIFEST, MANIFEST + ".tmp"))

    def is_empty(self) -> bool:
        return not self.entries()

    def foreign(self) -> List[str]:
        """Paths (relative to the stage folder) the trainer did not write."""
        out = []
        for e in self.entries():
            if not self._is_owned(e):
                out.append(e)
                continue
            full = os.path.join(self.path, e)
            if os.path.isdir(full) and not os.path.islink(full) and not e.endswith(".tmp"):
                listed = self._listed_files(full)
                if listed is not None:
                    out += [os.path.join(e, r) for r in self._all_files(full) if r not in listed]
        return out

    @staticmethod
    def _all_files(folder: str) -> List[str]:
        return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, ns in os.walk(folder) for n in ns)

    @staticmethod
    def _listed_files(folder: str) -> Optional[set]:
        try:
            with open(os.path.join(folder, "state.json")) as f:
                return set(json.load(f).get("files", {})) | {"state.json"}
        except (OSError, json.JSONDecodeError):
            return None

    def checkpoints(self) -> List[Tuple[int, str]]:
        """Owned, renamed (not ``.tmp``) checkpoint folders as ``(step, path)``, by step (a
        ``.old`` copy sorts before the folder of its step)."""
        out = []
        for e in self.entries():
            step = checkpoint_step(e)
            if step is not None and self._is_owned(e):
                out.append((step, not e.endswith(".old"), os.path.join(self.path, e)))
        return [(step, path) for step, _, path in sorted(out)]

    def latest_whole_checkpoint(self) -> Tuple[Optional[str], List[str]]:
        """The newest whole checkpoint (None if none) and the reasons newer ones were skipped."""
        skipped = []
        for _, path in reversed(self.checkpoints()):
            why = verify_checkpoint(path)
            if why is None:
                return path, skipped
            skipped.append(why)
        return None, skipped

    # -- changes ---------------------------------------------------------------------------------
    def remove(self, entry: str) -> None:
        """Delete one owned top-level entry, then drop it from the manifest. A folder is first
        renamed to ``<name>.trash``, so no half-deleted folder ever carries a checkpoint's name."""
        name = entry.rstrip("/")
        full = os.path.join(self.path, name)
        if os.path.islink(full) or os.path.isfile(full):
            os.remove(full)
        elif os.path.isdir(full):
            trash = name if name.endswith(".trash") else name + ".trash"
            if trash != name:
                self.own(trash + "/")
                if os.path.isdir(os.path.join(self.path, trash)):
                    shutil.rmtree(os.path.join(self.path, trash))
                os.replace(full, os.path.join(self.path, trash))
                self.disown(entry)
            shutil.rmtree(os.path.join(self.path, trash))
            self.disown(trash + "/")
        self.disown(entry)

    def prune(self, keep: Optional[int], keep_step: int) -> None:
        """Delete the oldest checkpoints, ordered by step, beyond the newest ``keep`` (None: keep
        all); the one at ``keep_step`` (just written) is never deleted."""
        if keep is None:
            return
        cks = self.checkpoints()
        survivors = {s for s, _ in cks[-int(keep):]} | {keep_step}
        for step, path in cks:
            if step not in survivors:
                self.remove(os.path.basename(path) + "/")

    def clear(self) -> None:
        """Remove everything the trainer wrote (the caller checked :meth:`foreign` first)."""
        for entry in sorted(self.owned, key=lambda e: e != FINAL):  # the link first
            self.remove(entry)
        if os.path.isfile(self.manifest_path):
            os.remove(self.manifest_path)
        if os.path.isdir(self.path) and not os.listdir(self.path):
            os.rmdir(self.path)

    def remove_partial(self) -> None:
        """Drop what a killed run left behind: ``.tmp`` and ``.trash`` entries, and ``.old``
        copies whose rewritten checkpoint is in place."""
        for entry in sorted(self.owned):
            e = entry.rstrip("/")
            if e.endswith((".tmp", ".trash")) or (e.endswith(".old") and os.path.isdir(os.path.join(self.path, e[:-4]))):
                self.remove(entry)

    def replace_final(self, checkpoint: str) -> str:
        """Point ``final`` at a copy of ``checkpoint``; returns the copy's path.

        The copy (hard links where possible) is made as ``final-{step}.tmp/`` and renamed; then a
        new link is renamed over ``final``, so readers of ``final`` always see a whole checkpoint.
        """
        name = "final-" + os.path.basename(checkpoint)[len(CHECKPOINT_PREFIX):]
        dst = os.path.join(self.path, name)
        tmp = dst + ".tmp"
        self.own(name + ".tmp/", name + "/", FINAL, FINAL + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint, tmp, copy_function=_link_or_copy)
        write_pause()
        if os.path.isdir(dst) and os.path.realpath(os.path.join(self.path, FINAL)) != os.path.realpath(dst):
            shutil.rmtree(dst)
        if not os.path.isdir(dst):
            os.replace(tmp, dst)
        else:  # the same step again (a finished run resumed): the link already points at a whole copy
            shutil.rmtree(tmp)
        self.disown(name + ".tmp/")
        write_pause()
        link = os.path.join(self.path, FINAL)
        link_tmp = link + ".tmp"
        if os.path.lexists(link_tmp):
            os.remove(link_tmp)
        os.symlink(name, link_tmp)
        os.replace(link_tmp, link)
        self.disown(FINAL + ".tmp")
        write_pause()
        for e in self.entries():  # older copies nothing points at any more
            if e.startswith("final-") and e != name and self._is_owned(e):
                self.remove(e + "/")
        return dst


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check_stage_folder(folder: StageFolder, resume: bool, overwrite: bool) -> Optional[str]:
    """Refuse what would lose data; returns the checkpoint to resume from (or None).

    Nothing is changed on disk here.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if resume:
        ck, skipped = folder.latest_whole_checkpoint()
        if ck is None:
            extra = f" (not whole: {'; '.join(skipped)})" if skipped else ""
            raise FileNotFoundError(f"--resume: no whole checkpoint under {folder.path}{extra}")
        return ck
    if folder.is_empty():
        return None
    if not overwrite:
        raise ValueError(f"{folder.path} already holds a training run of this stage: continue it with "
                         f"--resume, replace it with --overwrite, or choose another --out")
    foreign = folder.foreign()
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise ValueError(f"--overwrite: {folder.path} holds files orster4d-train did not write ({shown}); "
                         f"move them away first (nothing was deleted)")
    return None
