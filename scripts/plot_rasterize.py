#!/usr/bin/env python3
"""Plot a rasterizer GPU report (scripts/gpu_rasterize_report.py JSON) and print its markdown table.

    python scripts/plot_rasterize.py benchmarks/results/rasterize_<gpu>.json docs/img/rasterize_<gpu>.png
"""
from __future__ import annotations

import json
import sys


def table(rep: dict) -> str:
    rows = ["| case | ours fwd (ms) | gsplat fwd (ms) | ratio | ours fwd+bwd (ms) | gsplat fwd+bwd (ms) | ratio | "
            "ops-only fwd / fwd+bwd (ms) | "
            "peak mem ours / gsplat (MiB, fwd+bwd) | image max err | grad rel err (max) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in rep["cases"].items():
        t = c.get("one_launch", c)
        corr = c.get("correctness", {})
        gerr = max(corr.get("grad_rel_l2_err", {"-": float("nan")}).values())
        g = lambda k: t.get(k, float("nan"))  # noqa: E731
        label = name if name != "4d" else f"4D one launch (T={c['T']} x {c['N'] // 1000}k @{c['res']})"
        rows.append(f"| {label} | {g('ours_fwd_ms'):.2f} | {g('gsplat_fwd_ms'):.2f} | {g('ratio_fwd'):.2f} | "
                    f"{g('ours_fwd+bwd_ms'):.2f} | {g('gsplat_fwd+bwd_ms'):.2f} | {g('ratio_fwd+bwd'):.2f} | "
                    f"{g('ours_ops_fwd_ms'):.2f} / {g('ours_ops_fwd+bwd_ms'):.2f} | "
                    f"{g('ours_fwd+bwd_peak_mem_mb'):.0f} / {g('gsplat_fwd+bwd_peak_mem_mb'):.0f} | "
                    f"{corr.get('image_max_abs_err', float('nan')):.1e} | {gerr:.1e} |")
        if name == "4d":
            s = c["T_calls"]
            rows.append(f"| 4D, T separate calls | {s.get('ours_fwd_ms', float('nan')):.2f} | "
                        f"{s.get('gsplat_fwd_ms', float('nan')):.2f} | {s.get('ratio_fwd', float('nan')):.2f} | "
                        f"{s.get('ours_fwd+bwd_ms', float('nan')):.2f} | {s.get('gsplat_fwd+bwd_ms', float('nan')):.2f} | "
                        f"{s.get('ratio_fwd+bwd', float('nan')):.2f} | "
                        f"{s.get('ours_ops_fwd_ms', float('nan')):.2f} / {s.get('ours_ops_fwd+bwd_ms', float('nan')):.2f} | "
                        f"{s.get('ours_fwd+bwd_peak_mem_mb', float('nan')):.0f} / "
                        f"{s.get('gsplat_fwd+bwd_peak_mem_mb', float('nan')):.0f} | | |")
    return "\n".join(rows)


def plot(rep: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, vals = [], {k: [] for k in ("ours_fwd_ms", "gsplat_fwd_ms", "ours_fwd+bwd_ms", "gsplat_fwd+bwd_ms")}
    for name, c in rep["cases"].items():
        parts = [("one launch", c["one_launch"]), ("T calls", c["T_calls"])] if name == "4d" else [("", c)]
        for suffix, t in parts:
            names.append(f"{name} {suffix}".strip())
            for k in vals:
                vals[k].append(t.get(k, float("nan")))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    w = 0.2
    xs = range(len(names))
    colours = {"ours_fwd_ms": "#1f77b4", "gsplat_fwd_ms": "#aec7e8", "ours_fwd+bwd_ms": "#d62728",
               "gsplat_fwd+bwd_ms": "#ff9896"}
    for i, (k, v) in enumerate(vals.items()):
        ax.bar([x + (i - 1.5) * w for x in xs], v, w, label=k.replace("_ms", "").replace("_", " "), color=colours[k])
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel("time (ms, median)")
    ax.set_yscale("log")
    ax.set_title(f"Rasterizer vs gsplat {rep['versions'].get('gsplat')} on {rep['gpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 1
    rep = json.load(open(argv[0]))
    plot(rep, argv[1])
    print(table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
