#!/usr/bin/env python3
"""Plot a HexPlane GPU report (scripts/gpu_hexplane_report.py JSON): fused vs grid_sample times.

    python scripts/plot_hexplane.py benchmarks/results/hexplane_<gpu>.json docs/img/hexplane_<gpu>.png
"""
from __future__ import annotations

import json
import sys


def main(report: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = json.load(open(report))
    names = list(rep["cases"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(axes, ("fwd_ms", "fwd_bwd_ms"), ("forward", "forward + backward")):
        xs = range(len(names))
        ref = [rep["cases"][n]["grid_sample"][key] for n in names]
        fused = [rep["cases"][n]["fused"][key] for n in names]
        ax.bar([x - 0.2 for x in xs], ref, width=0.4, label="grid_sample composition")
        ax.bar([x + 0.2 for x in xs], fused, width=0.4, label="fused kernel")
        for x, r, f in zip(xs, ref, fused):
            ax.text(x + 0.2, f, f"{r / f:.1f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"HexPlane {title}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{rep['gpu']}, torch {rep['torch']}: fused speed-up over the grid_sample composition")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
