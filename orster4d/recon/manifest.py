"""What construct wrote into an output folder: ``.orster4d-manifest.json``.

The manifest lists, relative to the folder, every file a construction wrote there (updated when
the folder is created, at every checkpoint and at the end). ``--overwrite`` removes exactly those
files (and the folders they leave empty); it refuses, naming them, when the folder holds anything
else (:func:`foreign_entries`): files a user put there, or a folder written before manifests
existed, are never deleted.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Set, Union

__all__ = ["MANIFEST", "read_manifest", "record", "foreign_entries", "remove_written"]

MANIFEST = ".orster4d-manifest.json"


def read_manifest(out: Union[str, Path]) -> Set[str]:
    """The relative paths (POSIX) listed in ``out``'s manifest; empty when there is none or it is unreadable."""
    path = Path(out) / MANIFEST
    try:
        data = json.loads(path.read_text())
        return {str(p) for p in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def record(out: Union[str, Path], paths: Iterable[Union[str, Path]]) -> None:
    """Adds ``paths`` (files, or folders: every file under them) to ``out``'s manifest."""
    out = Path(out)
    files = read_manifest(out)
    for p in paths:
        p = Path(p)
        p = p if p.is_absolute() else out / p
        found = [q for q in p.rglob("*") if q.is_file()] if p.is_dir() else ([p] if p.is_file() else [])
        files.update(q.relative_to(out).as_posix() for q in found)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"written_by": "orster4d-construct", "files": sorted(files)}, indent=1))
    tmp.replace(out / MANIFEST)


def foreign_entries(out: Union[str, Path]) -> List[str]:
    """Entries of ``out`` that construct did not write: files missing from the manifest, and folders
    holding no listed file (e.g. a user's empty ``photos/``); relative paths, sorted."""
    out = Path(out)
    listed = read_manifest(out) | {MANIFEST}
    foreign = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_dir() and not p.is_symlink():
            if not any(f.startswith(rel + "/") for f in listed):
                foreign.append(rel + "/")
        elif rel not in listed:
            foreign.append(rel)
    # a foreign folder stands for everything under it
    return [e for e in foreign if not any(e != f and f.endswith("/") and e.startswith(f) for f in foreign)]


def remove_written(out: Union[str, Path]) -> None:
    """Deletes the files listed in ``out``'s manifest, the folders left empty, and the manifest."""
    out = Path(out)
    listed = read_manifest(out)
    for rel in listed:
        p = out / rel
        if p.is_file() or p.is_symlink():
            p.unlink()
    dirs = {(out / rel).parent for rel in listed}
    for d in sorted({q for d in dirs for q in [d, *d.parents] if out in q.parents}, key=lambda q: -len(q.parts)):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    (out / MANIFEST).unlink(missing_ok=True)
