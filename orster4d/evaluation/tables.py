"""``eval.json`` and markdown tables: one row per asset, the paper's column order.

A metric that could not be computed is ``null`` in JSON (its reason under ``absent``) and ``n/a``
in markdown, with the reasons listed under the table; it is never a number.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional

# (key, header, decimals) in the paper's order (Table 1)
COLUMNS = (("clip_f", "CLIP-F ↑", 3), ("clip_o", "CLIP-O ↑", 3), ("ssim", "SSIM ↑", 3), ("psnr", "PSNR ↑", 2),
           ("lpips", "LPIPS ↓", 3), ("fvd", "FVD ↓", 1))


def mean_row(rows: List[Dict]) -> Dict[str, Optional[float]]:
    """Per metric, the mean over the rows that have it (None when none has)."""
    out = {}
    for key, _, _ in COLUMNS:
        vals = [r["metrics"][key] for r in rows if r["metrics"].get(key) is not None]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def _fmt(v, decimals) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{decimals}f}"


def markdown_table(rows: List[Dict], title: Optional[str] = None, pooled_fvd: Optional[float] = None) -> str:
    """A markdown table of ``rows`` (each ``{"asset", "metrics", "absent"}``) plus a mean row."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| Asset | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(COLUMNS))
    for r in rows:
        lines.append(f"| {r['asset']} | " + " | ".join(_fmt(r["metrics"].get(k), d) for k, _, d in COLUMNS) + " |")
    if len(rows) > 1:
        m = mean_row(rows)
        lines.append("| **mean** | " + " | ".join(_fmt(m[k], d) for k, _, d in COLUMNS) + " |")
    notes = []
    for r in rows:
        for k, why in r.get("absent", {}).items():
            notes.append(f"- {r['asset']}: {k} absent: {why}")
    if pooled_fvd is not None:
        notes.append(f"- FVD of all assets' clips pooled into one set each: {pooled_fvd:.1f}")
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def group_rows(rows: List[Dict], field: str) -> Dict[str, List[Dict]]:
    """Rows by the value of metadata ``field`` (``"unknown"`` when an asset has none)."""
    groups: Dict[str, List[Dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("meta", {}).get(field, "unknown")), []).append(r)
    return dict(sorted(groups.items()))


def write_tables(result: Dict, out: Path, group_by: Optional[str] = None) -> Dict[str, Path]:
    """Writes ``out/eval.json`` and ``out/eval.md``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["assets"]
    if group_by:
        groups = group_rows(rows, group_by)
        md = "".join(markdown_table(g, f"{group_by} = {name}") + "\n" for name, g in groups.items())
        result["groups"] = {name: {"assets": [r["asset"] for r in g], "mean": mean_row(g)} for name, g in groups.items()}
    else:
        md = markdown_table(rows, pooled_fvd=result.get("summary", {}).get("fvd_pooled"))
    result.setdefault("summary", {})["mean"] = mean_row(rows)
    paths = {"json": out / "eval.json", "markdown": out / "eval.md"}
    paths["json"].write_text(json.dumps(result, indent=2))
    paths["markdown"].write_text(md)
    return paths
