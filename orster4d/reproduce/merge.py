"""Merge reproduction reports written on different machines for the same protocol.

A machine's run cache lives as long as the machine; a later session on a fresh one retrains the
shared models (the world, the image VAE, the teachers) and the rows it was asked for. Because every
run is named by the hash of its configuration, two reports of the same preset, world and settings
name the same runs for the same (row, seed), and their per-seed scores can be pooled:

    python -m orster4d.reproduce.merge OLD.json NEW.json --out MERGED.json

For each row and seed, the scores of whichever report finished it are kept (NEW's when both did);
the row's summary (mean and 95% interval over seeds) is recomputed from the pooled seeds. Reports
whose preset, world, settings or shared runs differ are refused, as is a (row, seed) whose chain of
runs differs between the two (a different configuration under the same name).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from orster4d.reproduce.protocol import row_result

#: top-level fields that must agree for two reports to describe the same protocol
SAME = ("preset", "settings")
#: per-row fields copied from the row description (identical in both reports when the names match)
_ROW_DESC = ("name", "table", "note", "overrides", "stage2_init", "stages", "score", "construct", "scarce4d")


def _check_same(a: dict, b: dict) -> None:
    for key in SAME:
        if a.get(key) != b.get(key):
            raise ValueError(f"the reports differ in {key!r}: {a.get(key)!r} vs {b.get(key)!r}")
    if a["world"]["spec"] != b["world"]["spec"]:
        raise ValueError("the reports were made on different worlds (world.spec differs)")
    shared_a = {**(a.get("teachers") or {}), "image_vae": (a.get("image_vae") or {}).get("run")}
    shared_b = {**(b.get("teachers") or {}), "image_vae": (b.get("image_vae") or {}).get("run")}
    for k in set(shared_a) & set(shared_b):  # a run one report has not made yet is no conflict
        if shared_a[k] and shared_b[k] and shared_a[k] != shared_b[k]:
            raise ValueError(f"the reports' shared runs differ ({k}: {shared_a[k]} vs {shared_b[k]}): "
                             "different configurations, not the same protocol")


def _merge_row(old: dict, new: dict) -> dict:
    if old.get("status") == "not expressible yet" or new.get("status") == "not expressible yet":
        return new
    for k in ("overrides", "stages", "construct", "scarce4d", "stage2_init"):
        if old.get(k) != new.get(k):
            raise ValueError(f"row {old['name']!r}: {k} differs between the reports "
                             f"({old.get(k)!r} vs {new.get(k)!r})")
    runs: Dict[str, dict] = {}
    scores: Dict[str, Dict[str, dict]] = {"per_seed": {}, "per_seed_assets": {}}
    for src in (old, new):  # new last: its scores win where both finished a seed
        for seed, chain in (src.get("runs") or {}).items():
            if seed in runs:
                a = {k: v for k, v in runs[seed].items() if k.startswith("stage")}
                b = {k: v for k, v in chain.items() if k.startswith("stage")}
                if a != b:
                    raise ValueError(f"row {old['name']!r}, seed {seed}: the reports trained different runs "
                                     f"({a} vs {b})")
                runs[seed] = {**runs[seed], **chain}
            else:
                runs[seed] = dict(chain)
        for field in scores:
            scores[field].update(src.get(field) or {})
    missing = {}
    for src in (old, new):
        missing.update(src.get("missing_seeds") or {})
    desc = {k: new.get(k, old.get(k)) for k in _ROW_DESC}

    def complete(seed: str) -> bool:
        return (("video" not in desc["score"] or seed in scores["per_seed"])
                and ("asset" not in desc["score"] or seed in scores["per_seed_assets"]))

    missing = {s: m for s, m in missing.items() if not complete(s)}  # a seed one report finished is not missing
    return row_result(desc, scores["per_seed"], scores["per_seed_assets"], runs, missing)


def merge_reports(old: dict, new: dict) -> dict:
    """One report holding every (row, seed) either report finished (module docstring)."""
    _check_same(old, new)
    names: List[str] = [r["name"] for r in old["rows"]] + [r["name"] for r in new["rows"]
                                                            if r["name"] not in {x["name"] for x in old["rows"]}]
    by_old = {r["name"]: r for r in old["rows"]}
    by_new = {r["name"]: r for r in new["rows"]}
    rows = []
    for n in names:
        if n in by_old and n in by_new:
            rows.append(_merge_row(by_old[n], by_new[n]))
        else:
            rows.append(by_new.get(n) or by_old[n])
    out = dict(old)
    out.update(rows=rows,
               seeds=sorted(set(old.get("seeds", [])) | set(new.get("seeds", []))),
               throughput_samples_per_s={**(old.get("throughput_samples_per_s") or {}),
                                         **(new.get("throughput_samples_per_s") or {})},
               events=list(old.get("events") or []) + list(new.get("events") or []),
               image_vae=new.get("image_vae") or old.get("image_vae"),
               teachers={**(old.get("teachers") or {}), **(new.get("teachers") or {})},
               merged_from=_origins(old) + _origins(new))
    for k in ("wall_s", "jobs", "tasks", "calls", "gpu", "device", "note"):
        out.pop(k, None)
    return out


def _origins(r: dict) -> List[dict]:
    """What a merged report keeps of each source session: its machine, time and calls (a report
    that is itself a merge contributes its own list, so merging again stays flat)."""
    if r.get("merged_from"):
        return list(r["merged_from"])
    out = {k: r.get(k) for k in ("gpu", "device", "wall_s", "jobs", "calls", "note") if r.get(k) is not None}
    vae = (r.get("image_vae") or {}).get("heldout_psnr_db")
    if vae is not None:  # each session retrains the image VAE (same configuration), so its score varies
        out["image_vae_heldout_psnr_db"] = vae
    return [out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m orster4d.reproduce.merge", description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="the earlier reproduction report (JSON)")
    ap.add_argument("new", help="the later one; its scores win where both finished a seed")
    ap.add_argument("--out", required=True, help="where to write the merged report (JSON)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a top-level string field to add (e.g. gpu=NVIDIA H200)")
    args = ap.parse_args(argv)
    old, new = (json.loads(Path(p).read_text()) for p in (args.old, args.new))
    out = merge_reports(old, new)
    for kv in args.set:
        if "=" not in kv:
            ap.error(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        out[k] = v
    Path(args.out).write_text(json.dumps(out, indent=1))
    done = sum(r.get("status") == "done" for r in out["rows"])
    print(f"{args.out}: {len(out['rows'])} rows, {done} with scores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
