#!/usr/bin/env python3
"""Plot and tabulate an attention report written by ``scripts/gpu_attention_report.py``.

Usage: python scripts/plot_attention_report.py benchmarks/results/attention_<gpu>.json
       [--png docs/img/attention_benchmark.png] [--markdown]
Draws forward+backward milliseconds per shape and method (log scale) and prints the markdown
table used in ``docs/kernels.md``.
"""
import argparse
import json
from pathlib import Path

METHODS = ("ours", "eager", "flex", "sdpa")


def _fmt(r, key):
    if not r:
        return "-"
    if "skipped" in r:
        return "n/a"
    if "error" in r:
        return "OOM" if "OutOfMemory" in r["error"] else "error"
    return f"{r[key]:.2f}"


def markdown(report) -> str:
    lines = [f"GPU: {report['gpu']}, torch {report['torch']}, triton {report['triton']}, bfloat16.", "",
             "| shape | mode | " + " | ".join(f"{m} fwd / fwd+bwd (ms)" for m in METHODS)
             + " | ours TFLOP/s fwd / bwd | ours peak MB | max rel. err bf16 / fp32 |",
             "|---|---|" + "---|" * (len(METHODS) + 3)]
    sdpa = {}
    for c in report["cases"]:
        if "sdpa" in c["methods"]:
            sdpa[c["case"]] = c["methods"]["sdpa"]
    for c in report["cases"]:
        ms = c["methods"]
        cells = []
        for m in METHODS:
            r = ms.get(m) or (sdpa.get(c["case"]) if m == "sdpa" else None)
            cells.append(f"{_fmt(r, 'ms_fwd')} / {_fmt(r, 'ms_fwd_bwd')}")
        o = ms.get("ours", {})
        tf = f"{o['tflops_fwd']:.0f} / {o['tflops_bwd']:.0f}" if "tflops_fwd" in o else "-"
        mem = f"{o['peak_extra_MB']:.0f}" if "peak_extra_MB" in o else "-"
        errs = c.get("errors", {})
        # dlog_sigma_st has an exact gradient of 0 (over-complete parametrisation): its relative
        # error is rounding noise over ~0 and is left out of the maximum
        err = " / ".join(f"{max(v for k, v in errs[d].items() if k != 'dlog_sigma_st'):.1e}"
                         if d in errs and "error" not in errs[d] else "-" for d in ("bfloat16", "float32"))
        lines.append(f"| {c['case']} | {c['mode']} | " + " | ".join(cells) + f" | {tf} | {mem} | {err} |")
    return "\n".join(lines)


def plot(report, png: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = report["cases"]
    labels = [f"{c['case']}\n{c['mode']}" for c in cases]
    sdpa = {c["case"]: c["methods"]["sdpa"] for c in cases if "sdpa" in c["methods"]}
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cases)), 4.5))
    width = 0.2
    for i, m in enumerate(METHODS):
        xs, ys = [], []
        for j, c in enumerate(cases):
            r = c["methods"].get(m) or (sdpa.get(c["case"]) if m == "sdpa" else None)
            if r and "ms_fwd_bwd" in r:
                xs.append(j + (i - 1.5) * width)
                ys.append(r["ms_fwd_bwd"])
        ax.bar(xs, ys, width, label=m + (" (plain attention)" if m == "sdpa" else ""))
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("forward + backward, ms (log)")
    ax.set_title(f"Orster attention, bfloat16, {report['gpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report")
    ap.add_argument("--png", default="docs/img/attention_benchmark.png")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    report = json.loads(Path(a.report).read_text())
    plot(report, Path(a.png))
    if a.markdown:
        print(markdown(report))


if __name__ == "__main__":
    main()
