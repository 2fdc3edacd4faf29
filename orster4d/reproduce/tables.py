"""Markdown tables of a reproduction dict (``reproduction.json``).

One section per paper table (and one for the scarcity curve), each with up to two tables: the
generated orbital videos against the true ones (rows scored on videos) and the 4D assets against
the multi-view ground truth on held-out views and times (rows scored on assets); one line per
row; per condition (image-, text-, 3D-to-4D) the cells ``PSNR (dB) / SSIM / LPIPS``, each ``mean
+- half-width`` of the 95% interval over seeds (``mean`` alone for one seed, ``absent`` when its
weights are missing); a row that cannot be expressed shows the reason instead of numbers.
"""
from __future__ import annotations

from typing import Optional

from orster4d.reproduce.scoring import CONDITIONS

TITLES = {1: "Table 1: ours vs the single-channel baseline vs stage 1 only",
          2: "Table 2: disentangling, channels and construction prior tokens",
          3: "Table 3: Orster and the training stages",
          4: "Scarcity curve: 4D-set size"}
KINDS = {"summary": "Generated vs true orbital videos of held-out objects",
         "asset_summary": "4D assets vs multi-view ground truth (held-out views and times)"}
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fvd": 1}


def cell(ci: Optional[dict], metric: str) -> str:
    if not ci or ci.get("mean") is None:
        return "absent"
    d = DECIMALS[metric]
    if ci.get("half_width") is None:
        return f"{ci['mean']:.{d}f}"
    return f"{ci['mean']:.{d}f} ± {ci['half_width']:.{d}f}"


def _lines(rows, which: str, absent: dict) -> list:
    """One table of ``rows`` from their ``which`` summary (``summary`` or ``asset_summary``)."""
    video = which == "summary"
    head = "| Row | Seeds | " + " | ".join(CONDITIONS.values()) + (" | FVD (image) |" if video else " |")
    lines = [f"### {KINDS[which]}", "", head, "|---|---|" + "---|" * (len(CONDITIONS) + int(video))]
    for r in rows:
        if r["status"] != "done":
            why = (f"not expressible yet: {r['reason']}" if r["status"] == "not expressible yet"
                   else "not run: " + "; ".join(f"seed {k}: {v}" for k, v in r.get("missing_seeds", {}).items()))
            lines.append(f"| {r['name']} | - | {why} |" + " |" * (len(CONDITIONS) - 1))
            continue
        s = r[which]
        absent.update(s.get("absent", {}))
        cells = []
        for kind in CONDITIONS:
            m = s.get(kind)
            cells.append(" / ".join(cell(m.get(k), k) for k in ("psnr", "ssim", "lpips")) if m else "not trained")
        fvd = [cell((s.get("image") or {}).get("fvd"), "fvd")] if video else []
        lines.append(f"| {r['name']} | {len(r['per_seed' if video else 'per_seed_assets'])} | " + " | ".join(cells + fvd) + " |")
    return lines + [""]


def markdown_tables(result: dict) -> str:
    lines = [f"# Small-scale reproduction (preset `{result['preset']}`)", "",
             f"Seeds {result['seeds']}; image VAE held-out reconstruction PSNR: "
             f"{_num(result['image_vae'].get('heldout_psnr_db'))} dB. Cells: PSNR (dB) / SSIM / LPIPS, mean ± "
             f"95% half-width over seeds (mean alone for one seed).", ""]
    absent = {}
    for table in (1, 2, 3, 4):
        rows = [r for r in result["rows"] if r["table"] == table]
        if not rows:
            continue
        lines += [f"## {TITLES[table]}", ""]
        for which in KINDS:
            these = [r for r in rows if which in r or (r["status"] != "done" and which == "summary")]
            if these:
                lines += _lines(these, which, absent)
    if absent:
        lines += ["Absent metrics:", ""] + [f"- {k}: {v}" for k, v in sorted(absent.items())] + [""]
    notes = [r for r in result["rows"] if r.get("note")]
    if notes:
        lines += ["Notes:", ""] + [f"- {r['name']}: {r['note']}" for r in notes] + [""]
    return "\n".join(lines)


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
