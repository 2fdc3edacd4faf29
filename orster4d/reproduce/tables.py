"""Markdown tables of a reproduction dict (``reproduction.json``).

One formatter for every score table (:func:`score_table`): one line per row and condition
(image-, text-, 3D-to-4D, condition by condition), the columns ``PSNR (dB) | SSIM | LPIPS`` (and
``FVD`` for the generated videos), each ``mean ± half-width`` of the 95% interval over seeds
(``mean`` alone for one seed, ``absent`` when its weights are missing), with the number of
seeds. A row of the tables that the reproduction did not run shows ``not run``, one that cannot be
expressed the reason; neither vanishes. Two kinds of scores (``which``): ``summary``, the
generated orbital videos against the true ones, and ``asset_summary``, the 4D assets against the
multi-view ground truth on held-out views and times.

:func:`markdown_tables` (``reproduction.md``) and the docs' generated blocks
(``benchmarks/report.py``) are both made of :func:`score_table` and :func:`settings_table`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from orster4d.reproduce.scoring import CONDITIONS

TITLES = {1: "Table 1: ours vs the single-channel baseline vs stage 1 only",
          2: "Table 2: disentangling, channels and construction prior tokens",
          3: "Table 3: Orster and the training stages",
          4: "Scarcity curve: 4D-set size"}
KINDS = {"summary": "Generated vs true orbital videos of held-out objects",
         "asset_summary": "4D assets vs multi-view ground truth (held-out views and times)"}
SCORE_OF = {"summary": "video", "asset_summary": "asset"}  # which summary a row's ``score`` entry fills
PER_SEED = {"summary": "per_seed", "asset_summary": "per_seed_assets"}  # the per-seed scores behind each summary
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fvd": 1}
HEADS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS", "fvd": "FVD"}


def cell(ci: Optional[dict], metric: str) -> str:
    """``mean ± half-width`` of one metric's interval (``mean`` alone for one seed; ``absent``)."""
    if not ci or ci.get("mean") is None:
        return "absent"
    d = DECIMALS[metric]
    if ci.get("half_width") is None:
        return f"{ci['mean']:.{d}f}"
    return f"{ci['mean']:.{d}f} ± {ci['half_width']:.{d}f}"


def _check_which(which: str) -> None:
    if which not in KINDS:
        raise ValueError(f"which: expected one of {sorted(KINDS)}, got {which!r}")


def table_names(result: dict, table: int, which: str) -> List[str]:
    """The rows of paper table ``table`` (1-3; 4: the scarcity curve at the sizes of the result's
    preset) scored on ``which``, in the tables' order, then any other row of that table in
    ``result`` (so a row the package no longer defines still shows)."""
    from orster4d.reproduce.presets import PRESETS
    from orster4d.reproduce.rows import ROWS, scarcity_rows

    _check_which(which)
    defined = list(ROWS)
    if table == 4 and result.get("preset") in PRESETS:
        defined = scarcity_rows(PRESETS[result["preset"]].scarcity)
    names = [r.name for r in defined if r.table == table and SCORE_OF[which] in r.score]
    extra = [r["name"] for r in result["rows"] if r["table"] == table and r["name"] not in names
             and (which in r or (r.get("status") != "done" and SCORE_OF[which] in r.get("score", ())))]
    return names + extra


def score_table(result: dict, names: Sequence[str], which: str,
                conditions: Optional[Sequence[str]] = None) -> str:
    """A markdown table of the rows ``names`` of ``result`` from their ``which`` summary
    (``summary`` or ``asset_summary``): for each condition of ``conditions`` (keys of
    :data:`~orster4d.reproduce.scoring.CONDITIONS`; default all), one line per row: ``Row | Seeds
    | Condition | PSNR (dB) | SSIM | LPIPS`` (``| FVD`` for videos). A name missing from ``result``
    reads ``not run``, a row that is not expressible its reason, a condition the row did not
    train ``not trained``."""
    _check_which(which)
    conditions = list(CONDITIONS) if conditions is None else list(conditions)
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise ValueError(f"conditions: expected some of {list(CONDITIONS)}, got {conditions!r}")
    metrics = ("psnr", "ssim", "lpips") + (("fvd",) if which == "summary" else ())
    by_name = {r["name"]: r for r in result["rows"]}
    lines = ["| Row | Seeds | Condition | " + " | ".join(HEADS[m] for m in metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for kind in conditions:
        for name in names:
            r = by_name.get(name)
            if r is None:
                seeds, cells = "-", ["not run"] + [""] * (len(metrics) - 1)
            elif r.get("status") == "not run" or (r.get("status") == "done" and which not in r
                                                   and SCORE_OF[which] in r.get("score", ())):
                seeds, cells = "-", ["not run (unfinished)" if r.get("missing_seeds") else "not run"] \
                    + [""] * (len(metrics) - 1)
            elif r.get("status") != "done":
                seeds, cells = "-", [f"not expressible yet: {r.get('reason')}"] + [""] * (len(metrics) - 1)
            elif which not in r:
                seeds, cells = str(len(r["seeds"])), ["not scored"] + [""] * (len(metrics) - 1)
            else:
                m = r[which].get(kind)
                seeds = str(len(r.get(PER_SEED[which]) or r["seeds"]))
                cells = [cell(m.get(k), k) for k in metrics] if m else \
                    ["not trained" if which == "summary" else "no assets built"] + [""] * (len(metrics) - 1)
            lines.append(f"| {name} | {seeds} | {CONDITIONS[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def absent_metrics(result: dict, names: Sequence[str], which: str) -> Dict[str, str]:
    """``{metric: reason}`` of the metrics absent from the ``which`` summaries of ``names``."""
    _check_which(which)
    out: Dict[str, str] = {}
    for r in result["rows"]:
        if r["name"] in names and which in r:
            out.update(r[which].get("absent", {}))
    return out


def absent_lines(absent: Dict[str, str]) -> List[str]:
    """A bullet per absent metric (empty when none)."""
    return [f"- {HEADS.get(k, k)} absent: {v}" for k, v in sorted(absent.items())]


def _kv(d: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in d.items()) or "none"


def _seconds(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _origins(result: dict) -> list:
    """The source reports of a merged report (``merged_from``, flattened), [] for a plain one."""
    out = []
    for o in result.get("merged_from") or []:
        out.extend(_origins(o) if "merged_from" in o else [o])
    return out


def settings_table(result: dict) -> str:
    """A ``Setting | Value`` markdown table: preset, world, training steps, sampling, construction,
    seeds, CLIP, image VAE held-out PSNR, training throughput per stage (median over the training
    runs used, the teachers counting as stage-1 runs) and wall time and device when recorded."""
    s, w = result.get("settings", {}), result.get("world", {}).get("spec", {})
    steps = s.get("stage_steps")
    rows = [("preset", f"`{result.get('preset')}`")]
    if w:
        rows.append(("world", f"seed {w.get('seed')}; static-3D {w.get('static3d')}, video {w.get('video')}, "
                              f"4D {w.get('scarce4d')}, held-out {w.get('heldout')} objects; {w.get('frames')} frames "
                              f"of {w.get('size')} px; {w.get('gaussians')} Gaussians; {w.get('views')} "
                              f"ground-truth views"))
    if s:
        rows += [("training", f"preset `{s.get('train_preset')}`; teachers {s.get('teacher_steps')} steps; stages "
                              f"1 / 2 / 3 / 4: {' / '.join(map(str, steps)) if steps else 'n/a'} steps"),
                 ("training overrides", _kv(s.get("train_overrides", {}))),
                 ("sampling", f"{s.get('inference_steps')} denoising steps, guidance {s.get('guidance_scale')}; "
                              f"prior tokens from the last {s.get('prior_steps')} steps"),
                 ("4D construction", _kv(s.get("construct", {})))]
    from orster4d.reproduce.rows import ROWS

    every = ", ".join(r.name for r in ROWS if r.all_seeds)
    rows.append(("seeds", f"{', '.join(map(str, result.get('seeds', [])))} for {every}; the first for the other rows"))
    clip = result.get("clip", {})
    rows.append(("CLIP", "pretrained open_clip" if clip.get("pretrained") else
                 "random tiny CLIP (no pretrained weights)"))
    psnr = result.get("image_vae", {}).get("heldout_psnr_db")
    per_session = [o["image_vae_heldout_psnr_db"] for o in _origins(result) if "image_vae_heldout_psnr_db" in o]
    vae = "n/a" if psnr is None else f"{psnr:.2f} dB"
    if len(per_session) > 1:  # a merged report: every session retrained the VAE with the same configuration
        vae = ("last session " + vae + "; per session where recorded: " +
               ", ".join(f"{v:.2f}" for v in per_session) + " dB")
    rows.append(("image VAE held-out PSNR", vae))
    by_stage: Dict[int, List[float]] = {}
    for t in result.get("throughput_samples_per_s", {}).values():
        if t.get("samples_per_s") is not None:
            by_stage.setdefault(int(t["stage"]), []).append(float(t["samples_per_s"]))
    for stage in sorted(by_stage):
        v = sorted(by_stage[stage])
        med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
        rows.append((f"training throughput, stage {stage}",
                     f"{med:.1f} samples/s (median of {len(v)} run{'s' * (len(v) > 1)}; {v[0]:.1f}-{v[-1]:.1f})"))
    wall, sources = result.get("wall_s"), _origins(result)
    if wall is None and sources and all(o.get("wall_s") is not None for o in sources):
        wall = sum(float(o["wall_s"]) for o in sources)  # a merged report: the sessions' protocol time
        label = f"wall time ({len(sources)} sessions)"
    else:
        label = "wall time"
    rows.append((label, "not recorded" if wall is None else _seconds(float(wall))))
    if result.get("device"):
        rows.append(("device", str(result["device"])))
    return "\n".join(["| Setting | Value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def markdown_tables(result: dict) -> str:
    """``reproduction.md``: the settings, then per paper table (and the scarcity curve) that has
    rows in ``result`` a table of its rows per kind of score, the absent metrics and the notes."""
    lines = [f"# Small-scale reproduction (preset `{result['preset']}`)", "", settings_table(result), "",
             "Cells: mean ± 95% half-width over seeds (mean alone for one seed).", ""]
    absent: Dict[str, str] = {}
    for table in (1, 2, 3, 4):
        rows = [r for r in result["rows"] if r["table"] == table]
        if not rows:
            continue
        lines += [f"## {TITLES[table]}", ""]
        for which in KINDS:
            names = [r["name"] for r in rows if which in r or SCORE_OF[which] in r.get("score", ())
                     and (r["status"] == "done" or which == "summary")]
            if names:
                lines += [f"### {KINDS[which]}", "", score_table(result, names, which), ""]
                absent.update(absent_metrics(result, names, which))
    if absent:
        lines += ["Absent metrics:", ""] + absent_lines(absent) + [""]
    notes = [r for r in result["rows"] if r.get("note")]
    if notes:
        lines += ["Notes:", ""] + [f"- {r['name']}: {r['note']}" for r in notes] + [""]
    return "\n".join(lines)
