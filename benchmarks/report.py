"""Reports in, docs out: merge per-part JSON reports, write the docs' tables and plots, compare two runs.

    python -m benchmarks.report merge FOLDER --gpu NAME --out FILE   # one JSON from a gpu_check.sh folder
    python -m benchmarks.report table KIND REPORT                    # a markdown table on stdout
    python -m benchmarks.report docs [--check]                       # regenerate the tables in docs/*.md
    python -m benchmarks.report plot KIND REPORT PNG                 # a plot
    python -m benchmarks.report figure --strips DIR --out PNG        # reproduction: generated vs true videos
    python -m benchmarks.report compare A B [--tol 0.05]             # timings of two reports, side by side

Table kinds: rasterize (every case against gsplat), rasterize_brief (entry point vs kernels only),
hexplane, hexplane_order (the visiting-order sweep), attention, construct, train, and for ``reproduction.json`` (``orster4d-reproduce``)
repro_table1, repro_ablations, repro_scarcity, repro_settings. A generated block in a docs page
sits between ``<!-- report: KIND PATH -->`` and ``<!-- end report -->`` (PATH relative to the
repository root); ``docs`` rewrites what is in between, ``docs --check`` only says whether it
would. A block whose PATH is not in the repository reads "not run yet". Figure kinds
(:data:`FIGURES`: repro_scarcity_plot from a ``reproduction.json``, repro_strips from a folder
of strips) put an image link in the block and ``docs`` (re)draws the PNG it names under
``docs/figures/``. Numbers in the docs are never typed by hand.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")


# ------------------------------------------------------------------ merge
def merge(folder: Path, gpu: str) -> dict:
    """Every ``*.json`` in ``folder`` (but ``parts.json`` and earlier merged reports) under its file stem."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of reports")
    import torch

    report = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "parts": json.loads((folder / "parts.json").read_text()) if (folder / "parts.json").exists() else {}}
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        report["triton"] = None
    for f in sorted(folder.glob("*.json")):
        if f.name == "parts.json" or f.name.startswith("gpu_report"):
            continue
        try:
            report[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            report[f.stem] = {"error": f"unreadable report: {exc}"}
    return report


# ------------------------------------------------------------------ tables
def _table(head, rows) -> str:
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return "\n".join([line(head), line(["---"] * len(head))] + [line(r) for r in rows])


def _f(x, spec: str) -> str:
    return format(NAN if x is None else x, spec)


def rasterize(rep: dict) -> str:
    """Every case: ours vs gsplat times, ops-only times, peak memory, image and gradient errors."""
    rows = []
    for name, c in rep["cases"].items():
        parts = [("one_launch", c["one_launch"]), ("T_calls", c["T_calls"])] if name == "4d" else [(None, c)]
        for part, t in parts:
            g = lambda k: t.get(k, NAN)  # noqa: E731
            cells = [f"{g('ours_fwd_ms'):.2f}", f"{g('gsplat_fwd_ms'):.2f}", f"{g('ratio_fwd'):.2f}",
                     f"{g('ours_fwd+bwd_ms'):.2f}", f"{g('gsplat_fwd+bwd_ms'):.2f}", f"{g('ratio_fwd+bwd'):.2f}",
                     f"{g('ours_ops_fwd_ms'):.2f} / {g('ours_ops_fwd+bwd_ms'):.2f}",
                     f"{g('ours_fwd+bwd_peak_mem_mb'):.0f} / {g('gsplat_fwd+bwd_peak_mem_mb'):.0f}"]
            if part == "T_calls":
                rows.append(["4D, T separate calls"] + cells + ["", ""])
                continue
            corr = c.get("correctness", {})
            gerr = max(corr.get("grad_rel_l2_err", {"-": NAN}).values())
            label = name if name != "4d" else f"4D one launch (T={c['T']} x {c['N'] // 1000}k @{c['res']})"
            rows.append([label] + cells + [_f(corr.get("image_max_abs_err"), ".1e"), f"{gerr:.1e}"])
    return _table(["case", "ours fwd (ms)", "gsplat fwd (ms)", "ratio", "ours fwd+bwd (ms)", "gsplat fwd+bwd (ms)",
                   "ratio", "ops-only fwd / fwd+bwd (ms)", "peak mem ours / gsplat (MiB, fwd+bwd)", "image max err",
                   "grad rel err (max)"], rows)


def rasterize_brief(rep: dict) -> str:
    """Forward+backward through the entry point and through the kernels alone, against gsplat."""
    rows = []
    for key, c in rep["cases"].items():
        m = c.get("one_launch", c)
        rows.append([key, f"{m['ours_fwd+bwd_ms']:.2f}", f"{m['ours_ops_fwd+bwd_ms']:.2f}", f"{m['gsplat_fwd+bwd_ms']:.2f}",
                     f"{m['ratio_fwd+bwd']:.2f}", f"{m['ours_ops_fwd+bwd_ms'] / m['gsplat_fwd+bwd_ms']:.2f}",
                     f"{c['correctness']['image_max_abs_err']:.1e}"])
    return _table(["case", "ours fwd+bwd ms", "ours kernels only ms", "gsplat fwd+bwd ms", "ratio", "ratio kernels only",
                   "max image diff vs gsplat"], rows)


HEXPLANE_CASES = {"res64^3x25_N100k": "64^3 x 25, 100k", "res64^3x25_N1000k": "64^3 x 25, 1M",
                  "res128^3x25_N100k": "128^3 x 25, 100k", "res128^3x25_N1000k": "128^3 x 25, 1M",
                  "res128^3x25_N1000k_shared_t": "128^3 x 25, 1M, one shared t"}


def hexplane(rep: dict) -> str:
    names = HEXPLANE_CASES
    rows = []
    for key, c in rep["cases"].items():
        g, f = c["grid_sample"], c["fused"]
        rows.append([names.get(key, key), f"{g['fwd_ms']:.3f} / {g['fwd_bwd_ms']:.2f}",
                     f"{f['fwd_ms']:.3f} / {f['fwd_bwd_ms']:.3f}",
                     f"{f['speedup_fwd']:.1f}x / {f['speedup_fwd_bwd']:.1f}x",
                     f"{g['peak_extra_mb_fwd_bwd']:.0f} / {f['peak_extra_mb_fwd_bwd']:.0f}"])
    return _table(["case", "grid_sample fwd / fwd+bwd (ms)", "fused fwd / fwd+bwd (ms)", "speed-up fwd / fwd+bwd",
                   "peak MB composition / fused"], rows)


def hexplane_order(rep: dict) -> str:
    """The visiting-order sweep: fwd+bwd ms per setting (Morton bits per axis, thread groups per
    block) and case, and each setting's time relative to input order with one group (bits0_iters1)."""
    cases = list(rep["cases"])
    settings = rep["setup"]["settings"]
    rows = []
    for s in settings:
        bits, iters = s.replace("bits", "").split("_iters")
        cells = [f"{bits} bits, {iters} group{'' if iters == '1' else 's'}" if s != "bits0_iters1"
                 else "input order, 1 group"]
        for c in cases:
            base, r = rep["cases"][c]["bits0_iters1"], rep["cases"][c][s]
            cells.append(f"{r['fwd_bwd_ms']:.3f} ({base['fwd_bwd_ms'] / r['fwd_bwd_ms']:.2f}x)")
        rows.append(cells)
    rows.append(["grid_sample"] + [f"{rep['cases'][c]['grid_sample']['fwd_bwd_ms']:.2f}" for c in cases])
    return _table(["setting"] + [HEXPLANE_CASES.get(c, c) for c in cases], rows)


ATTENTION_METHODS = ("ours", "eager", "flex", "sdpa")


def _attn_cell(r, key):
    if not r:
        return "-"
    if "skipped" in r:
        return "n/a"
    if "error" in r:
        return "OOM" if "OutOfMemory" in r["error"] else "error"
    return f"{r[key]:.2f}"


def _attention_methods(rep: dict) -> tuple:
    """The report's methods in table order (``ours_frozen`` only where a report has it)."""
    frozen = any("ours_frozen" in c["methods"] for c in rep["cases"])
    return ("ours",) + (("ours_frozen",) if frozen else ()) + ATTENTION_METHODS[1:]


def attention(rep: dict) -> str:
    sdpa = {c["case"]: c["methods"]["sdpa"] for c in rep["cases"] if "sdpa" in c["methods"]}
    methods = _attention_methods(rep)
    rows = []
    for c in rep["cases"]:
        ms = c["methods"]
        cells = []
        for m in methods:
            r = ms.get(m) or (sdpa.get(c["case"]) if m == "sdpa" else None)
            cells.append(f"{_attn_cell(r, 'ms_fwd')} / {_attn_cell(r, 'ms_fwd_bwd')}")
        o = ms.get("ours", {})
        tf = f"{o['tflops_fwd']:.0f} / {o['tflops_bwd']:.0f}" if "tflops_fwd" in o else "-"
        mem = f"{o['peak_extra_MB']:.0f}" if "peak_extra_MB" in o else "-"
        errs = c.get("errors", {})
        # dlog_sigma_st has an exact gradient of 0 (over-complete parametrisation): its relative
        # error is rounding noise over ~0 and is left out of the maximum
        err = " / ".join(f"{max(v for k, v in errs[d].items() if k != 'dlog_sigma_st'):.1e}"
                         if d in errs and "error" not in errs[d] else "-" for d in ("bfloat16", "float32"))
        rows.append([c["case"], c["mode"]] + cells + [tf, mem, err])
    return (f"GPU: {rep['gpu']}, torch {rep['torch']}, triton {rep['triton']}, bfloat16.\n\n"
            + _table(["shape", "mode"] + [f"{m} fwd / fwd+bwd (ms)" for m in methods]
                     + ["ours TFLOP/s fwd / bwd", "ours peak MB", "max rel. err bf16 / fp32"], rows))


def _psnr(x):
    return "-" if x is None else f"{x:.2f}"


def _construct_cells(r: dict) -> list:
    """A construct run's wall time, size, train and held-out scores, and held-out PSNR by kind."""
    h, k = r["heldout"], r["heldout"].get("psnr_by_kind", {})
    return [f"{r['wall_seconds']:.0f}", r["num_gaussians"], _psnr(r["train"]["psnr"]), _psnr(h["psnr"]),
            f"{h['ssim']:.3f}", *(_psnr(k.get(kind, {}).get("psnr"))
                                  for kind in ("novel_view", "novel_time", "novel_view_and_time"))]


def construct(rep: dict) -> str:
    out = []
    for section in ("default_schedule_alone", "default_schedule_quality", "variants",
                    "time_resolution_auto_rejected", "before_motion_fix"):
        if section not in rep:
            continue
        rows = []
        for r in rep[section]["runs"]:
            over = ", ".join(f"{a}={b}" for a, b in r["overrides"].items()) or "default"
            rows.append([r["object"], r["backend"], over, *_construct_cells(r)])
        out.append(f"**{section}**: {rep[section]['note']}\n\n" + _table(
            ["object", "HexPlane", "config", "wall s", "Gaussians", "train PSNR", "held-out PSNR", "held-out SSIM",
             "novel view", "novel time", "both"], rows))
    return "\n\n".join(out)


def construct_runs(rep: dict) -> str:
    """Every run of a ``benchmarks.construct`` JSON report, per object: its wall time, size and
    held-out scores (by kind where the input has view ids)."""
    rows = []
    for obj, entry in rep["objects"].items():
        for run, r in entry.items():
            if not isinstance(r, dict):
                continue
            rows.append([obj, run, *_construct_cells(r)])
    head = (f"input {rep.get('input', 'multiview')}, {rep['size']} px, {rep['frames']} frames, "
            f"{rep['coarse_iters']} + {rep['fine_iters']} iterations, {rep['device']}")
    return f"{head}\n\n" + _table(["object", "run", "wall s", "Gaussians", "train PSNR", "held-out PSNR",
                                    "held-out SSIM", "novel view", "novel time", "both"], rows)


def train(rep: dict) -> str:
    """Each stage's step time, memory and samples/s (the loop's, where the report has it)."""
    rows = []
    for stage, s in rep["stages"].items():
        extra = ""
        if "teachers_share" in s:
            extra = (f"teachers {s['teachers_ms_per_step']:.1f} ms ({100 * s['teachers_share']:.0f}%), Orster attention "
                     f"{s['orster_attention_ms_per_step']:.2f} ms ({100 * s['orster_attention_share']:.1f}%)")
        cfg = s.get("config", {})
        rows.append([stage, cfg.get("batch_size", "-"), f"{s['step_ms_median']:.0f}", f"{s['step_ms_min']:.0f}",
                     f"{s['peak_mem_gib']:.2f}", f"{s.get('loop_samples_per_s', s['samples_per_s']):.1f}", extra])
    target = "< 2" if "target_stage2_over_stage1_lt_2" in rep else "< 3"
    return _table(["stage", "clips/step", "step ms (median)", "step ms (min)", "peak GiB", "samples/s", "stage-2 parts"],
                  rows) + f"\n\nstage 2 / stage 1 step time = {rep['stage2_over_stage1']:.2f} (target {target})"


def train_sweep(rep: dict) -> str:
    """Stage-1 throughput against batch size, gradient checkpointing and cached latents."""
    rows = [[r["batch_size"], "on" if r["gradient_checkpointing"] else "off", "on" if r["cache_latents"] else "off",
             f"{r['step_ms_median']:.0f}", f"{r['loop_samples_per_s']:.0f}", f"{r['peak_mem_gib']:.2f}"]
            for r in rep["stage1_sweep"]]
    return _table(["clips/step", "checkpointing", "cached latents", "step ms (median)", "clips/s (loop)", "peak GiB"],
                  rows)


def generate(rep: dict) -> str:
    """``orster4d-generate`` per condition: the command's wall time and its own phase timings."""
    rows = []
    for name, r in rep["runs"].items():
        t = r["generation"]["timings"]
        cell = lambda k: "-" if k not in t else f"{t[k]:.1f}"  # noqa: E731
        rows.append([name, f"{r['wall_s']:.1f}", cell("sampling_orbit_s"), cell("sampling_static_s"),
                     cell("sampling_reference_s"), cell("construction_s"), cell("total_s")])
    ph = rep["training_phases_s"]
    return (_table(["run", "command wall s", "orbit video s", "static video s", "reference video s", "construction s",
                    "sampling + construction s"], rows)
            + f"\n\nConstruction schedule {rep['construct_iters'][0]} + {rep['construct_iters'][1]} iterations; "
            f"training in the same call ({rep['reproduction_preset']} preset): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in ph.items()) + f". GPU: {rep['gpu']}.")


def memory(rep: dict) -> str:
    """Peak memory of one paper-preset generation."""
    return _table(["frames x size", "dtype", "weights GiB", "peak allocated GiB", "peak reserved GiB", "wall s",
                   "fits a 24 GB card"],
                  [[f"{rep['frames']} x {rep['size']}", rep["dtype"], f"{rep['weights_gib']:.2f}",
                    f"{rep['peak_allocated_gib']:.2f}", f"{rep['peak_reserved_gib']:.2f}", f"{rep['wall_s']:.1f}",
                    "yes" if rep["fits_24_gb_card"] else "no"]])


def evaltime(rep: dict) -> str:
    """``orster4d-eval`` on one asset: setup and per-metric wall times."""
    parts = {**{f"setup: {k}": v for k, v in rep["setup_s"].items()}, **rep["per_metric_s"]}
    rows = [[k, f"{v:.2f}"] for k, v in parts.items()] + [["**total (orster4d-eval)**",
                                                            f"**{rep['orster4d_eval_total_s']:.2f}**"]]
    return (f"{rep['frames']} frames at {rep['size']} px, {rep['gaussians']} Gaussians, {rep['views']} reference views"
            f"; GPU: {rep.get('gpu', rep['device'])}.\n\n" + _table(["part", "seconds"], rows))


def relayout(rep: dict) -> str:
    """User-facing timings of two trees measured in one call (``new`` and ``old`` reports)."""
    rows, _ = compare(rep["new"], rep["old"], 0.05)
    keep = re.compile(r"^(rasterize/cases/[^/]+(/one_launch|/T_calls)?/ours_fwd(\+bwd)?_ms|"
                      r"hexplane/cases/[^/]+/fused/fwd(_bwd)?_ms)$")
    body = [[p.replace("_ms", ""), _f(a, ".3f"), _f(b, ".3f"), _f(r, ".2f")] for p, a, b, r, _ in rows if keep.match(p)]
    return _table(["timing (ms)", "new", "old", "old / new"], body)


# -- the reproduction (orster4d-reproduce's reproduction.json); the formatting is orster4d.reproduce.tables
def _repro_block(rep: dict, parts) -> str:
    """``parts``: ``(caption, which, names)``; each a caption, a score table, its absent metrics."""
    from orster4d.reproduce import tables as T

    out = []
    for caption, which, names in parts:
        absent = T.absent_lines(T.absent_metrics(rep, names, which))
        out.append(f"**{caption}**\n\n" + T.score_table(rep, names, which) + ("\n\n" + "\n".join(absent) if absent
                                                                               else ""))
    return "\n\n".join(out)


_REPRO_WHAT = {"summary": "generated vs true orbital videos of the held-out objects",
               "asset_summary": "4D assets built from the generated videos vs the multi-view ground truth "
                                "(held-out views and times)"}


def repro_table1(rep: dict) -> str:
    """Table 1 rows (ours, single-channel, stage 1 only) per condition, on videos then on assets."""
    from orster4d.reproduce.tables import table_names

    return _repro_block(rep, [(f"Table 1, {_REPRO_WHAT[w]}", w, table_names(rep, 1, w))
                              for w in ("summary", "asset_summary")])


def repro_ablations(rep: dict) -> str:
    """Tables 2 and 3: each table's rows (after ours, the reference) on videos and on assets."""
    from orster4d.reproduce.tables import table_names

    parts = []
    for t in (2, 3):
        for w in ("summary", "asset_summary"):
            names = table_names(rep, t, w)
            if names:
                parts.append((f"Table {t}, {_REPRO_WHAT[w]}", w, ["ours"] + names))
    return _repro_block(rep, parts)


def repro_scarcity(rep: dict) -> str:
    """Ours and the single-channel baseline at each 4D-set size of the scarcity curve."""
    from orster4d.reproduce.tables import table_names

    return _repro_block(rep, [(f"Scarcity curve, {_REPRO_WHAT['summary']}", "summary", table_names(rep, 4, "summary"))])


def repro_settings(rep: dict) -> str:
    """World, steps, seeds, VAE held-out PSNR, training throughput per stage, wall time."""
    from orster4d.reproduce.tables import settings_table

    return settings_table(rep)


def host_time(rep: dict) -> str:
    """Host time per entry-point call (``benchmarks.host_time``), microseconds."""
    return _table(["call", f"host time (us, median of {rep['reps']}, {rep['device']})"],
                  [[k, _f(v, ".1f")] for k, v in rep["rows"].items()])


def _op_label(op: str) -> str:
    """``orster4d::rasterize_fwd`` -> ``rasterize_fwd``; an autograd node -> ``<name> (backward)``."""
    backward = op.startswith("autograd::engine::evaluate_function:")
    name = op.split(": ", 1)[-1] if backward else op
    name = name.split("::")[-1].replace(">", "").strip()
    return f"{name.removesuffix('Backward0')} (backward)" if backward else name


def step_split(rep: dict) -> str:
    """Per-call wall, device and host-gap time and the largest device ops (``benchmarks.step_split``)."""
    rows = []
    for name, c in rep["cases"].items():
        ops = sorted(((op, v["ms"]) for op, v in c.get("by_op", {}).items()), key=lambda kv: -kv[1])[:3]
        top = "; ".join(f"{_op_label(op)} {ms:.3f}" for op, ms in ops)
        rows.append([name, _f(c["wall_ms"], ".2f"), _f(c["device_ms"], ".2f"), _f(c["host_gap_ms"], ".2f"), top])
    return _table(["call (profiled)", "wall (ms)", "device (ms)", "host gap (ms)", "largest device ops (ms)"], rows)


def timeline(rep: dict) -> str:
    """One profiled call's host ops in order: host time, launches and the device time they launched
    (``benchmarks.trace_timeline``); ops under 10 us of host time are left out."""
    rows = [[r["thread"], _op_label(r["op"]), _f(r["host_ms"] * 1e3, ".0f"), _f(r["launches"], ".0f"),
             _f(r["device_ms"] * 1e3, ".0f")] for r in rep["host_ops"] if r["host_ms"] >= 0.01]
    rows.append(["all", f"{rep['calls']} calls; GPU idle {rep['device_idle_ms'] * 1e3:.0f} us, first "
                 f"{rep['first_kernel']} at {rep['first_kernel_ms'] * 1e3:.0f} us",
                 _f(rep["host_ms"] * 1e3, ".0f"), _f(rep["launches"], ".0f"), _f(rep["device_busy_ms"] * 1e3, ".0f")])
    return _table(["thread", "host op (profiled)", "host (us)", "launches", "device (us)"], rows)


TABLES = {"repro_table1": repro_table1, "repro_ablations": repro_ablations, "repro_scarcity": repro_scarcity,
          "repro_settings": repro_settings, "relayout": relayout, "rasterize": rasterize,
          "rasterize_brief": rasterize_brief, "hexplane": hexplane, "hexplane_order": hexplane_order,
          "attention": attention,
          "construct": construct, "train": train, "train_sweep": train_sweep, "generate": generate, "memory": memory,
          "evaltime": evaltime, "host_time": host_time, "step_split": step_split, "construct_runs": construct_runs,
          "timeline": timeline}


def table(kind: str, path: Path) -> str:
    return table_from(json.loads(Path(path).read_text()), kind)


def table_from(rep: dict, kind: str) -> str:
    """The markdown table of kind ``kind`` for an already loaded report."""
    if kind not in TABLES:
        raise ValueError(f"unknown table kind {kind!r}; known: {sorted(TABLES)}")
    return TABLES[kind](rep)


# ------------------------------------------------------------------ docs
BLOCK = re.compile(r"(<!-- report: (\S+) (\S+) -->\n)(.*?)(<!-- end report -->)", re.S)


def _not_run(path: str) -> str:
    return f"*Not run yet: `{path}` is not in the repository.*"


def _block(kind: str, path: str, root: Path, figures: dict) -> str:
    """The body of one generated block; a figure kind adds ``{png path: image}`` to ``figures``."""
    if kind not in TABLES and kind not in FIGURES:
        raise ValueError(f"unknown report kind {kind!r}; known: {sorted(TABLES) + sorted(FIGURES)}")
    src = root / path
    if not src.exists():
        return _not_run(path)
    if kind in TABLES:
        return table(kind, src)
    suffix, draw, alt = FIGURES[kind]
    img = draw(src)
    if img is None:  # nothing to draw: no empty figure in the docs
        return f"*Not run yet: `{path}` holds nothing for this figure.*"
    name = f"{src.stem}_{suffix}.png"
    figures[root / "docs" / "figures" / name] = img
    return f"![{alt}](figures/{name})"


def render_docs(text: str, root: Path = ROOT, figures: dict | None = None) -> str:
    """``text`` with every generated block's body rebuilt from its report (or folder of strips);
    the figures its figure blocks name go into ``figures`` (``{png path: PIL image}``) when given."""
    figures = {} if figures is None else figures
    return BLOCK.sub(lambda m: m.group(1) + _block(m.group(2), m.group(3), root, figures) + "\n" + m.group(5), text)


def _same_image(png: Path, img) -> bool:
    """Whether ``png`` holds exactly the pixels of ``img`` (PNG bytes may differ across zlib versions)."""
    from PIL import Image

    if not png.is_file():
        return False
    with Image.open(png) as old:
        return old.size == img.size and old.convert("RGB").tobytes() == img.convert("RGB").tobytes()


def docs(check: bool, root: Path = ROOT) -> int:
    stale, figures = [], {}
    for page in sorted((root / "docs").glob("*.md")):
        old = page.read_text()
        new = render_docs(old, root, figures)
        for path in dict.fromkeys(m.group(3) for m in BLOCK.finditer(old) if not (root / m.group(3)).exists()):
            print(f"note: {page.relative_to(root)}: {path} is not in the repository (its blocks read "
                  f"'not run yet')", file=sys.stderr)
        if new != old:
            stale.append(page)
            if not check:
                page.write_text(new)
    for png, img in sorted(figures.items()):
        if not _same_image(png, img):
            stale.append(png)
            if not check:
                png.parent.mkdir(parents=True, exist_ok=True)
                img.save(png, format="PNG")
    verb = "would change" if check else "rewrote"
    for page in stale:
        print(f"{verb} {page.relative_to(root)}")
    return 1 if check and stale else 0


# ------------------------------------------------------------------ plots
def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit("benchmarks.report plot needs matplotlib (pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rasterize(rep: dict, png: Path) -> None:
    plt = _pyplot()
    names, vals = [], {k: [] for k in ("ours_fwd_ms", "gsplat_fwd_ms", "ours_fwd+bwd_ms", "gsplat_fwd+bwd_ms")}
    for name, c in rep["cases"].items():
        parts = [("one launch", c["one_launch"]), ("T calls", c["T_calls"])] if name == "4d" else [("", c)]
        for suffix, t in parts:
            names.append(f"{name} {suffix}".strip())
            for k in vals:
                vals[k].append(t.get(k, NAN))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    colours = {"ours_fwd_ms": "#1f77b4", "gsplat_fwd_ms": "#aec7e8", "ours_fwd+bwd_ms": "#d62728",
               "gsplat_fwd+bwd_ms": "#ff9896"}
    for i, (k, v) in enumerate(vals.items()):
        ax.bar([x + (i - 1.5) * 0.2 for x in range(len(names))], v, 0.2, label=k.replace("_ms", "").replace("_", " "),
               color=colours[k])
    ax.set_xticks(list(range(len(names))))
    ax.set_xticklabels(names)
    ax.set_ylabel("time (ms, median)")
    ax.set_yscale("log")
    ax.set_title(f"Rasterizer vs gsplat {rep['versions'].get('gsplat')} on {rep['gpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def plot_hexplane(rep: dict, png: Path) -> None:
    plt = _pyplot()
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
    fig.savefig(png, dpi=110)


def plot_attention(rep: dict, png: Path) -> None:
    plt = _pyplot()
    cases = rep["cases"]
    sdpa = {c["case"]: c["methods"]["sdpa"] for c in cases if "sdpa" in c["methods"]}
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cases)), 4.5))
    timed = lambda m: any("ms_fwd_bwd" in (c["methods"].get(m) or {}) for c in cases)  # noqa: E731
    methods = [m for m in _attention_methods(rep) if timed(m)]  # a method the run left out gets no bar
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs, ys = [], []
        for j, c in enumerate(cases):
            r = c["methods"].get(m) or (sdpa.get(c["case"]) if m == "sdpa" else None)
            if r and "ms_fwd_bwd" in r:
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(r["ms_fwd_bwd"])
        ax.bar(xs, ys, width, label=m + (" (plain attention)" if m == "sdpa" else ""))
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([f"{c['case']}\n{c['mode']}" for c in cases], fontsize=7)
    ax.set_ylabel("forward + backward, ms (log)")
    ax.set_title(f"Orster attention, bfloat16, {rep['gpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def plot_repro_scarcity(rep: dict, png: Path) -> None:
    """The scarcity curve of a ``reproduction.json`` (Pillow; :mod:`benchmarks.repro_figures`)."""
    from benchmarks.repro_figures import scarcity_curve

    scarcity_curve(rep).save(png, format="PNG")


PLOTS = {"rasterize": plot_rasterize, "hexplane": plot_hexplane, "attention": plot_attention,
         "repro_scarcity": plot_repro_scarcity}


def _scarcity_figure(src: Path):
    """The scarcity curve of a ``reproduction.json``, or None when it has no scarcity rows run."""
    from benchmarks.repro_figures import scarcity_curve, scarcity_points

    result = json.loads(src.read_text())
    return scarcity_curve(result) if any(scarcity_points(result).values()) else None


def _strips_figure(src: Path):
    from benchmarks.repro_figures import strips_figure

    return strips_figure(src)


# kind -> (suffix of docs/figures/<source stem>_<suffix>.png, draw(source path) -> PIL image, alt text)
FIGURES = {"repro_scarcity_plot": ("scarcity", _scarcity_figure,
                                   "Scarcity curve: image-to-4D PSNR against the number of 4D training objects"),
           "repro_strips": ("strips", _strips_figure,
                            "Generated (ours, single-channel) and true orbital videos of held-out objects")}


# ------------------------------------------------------------------ compare
def timings(rep, prefix: str = "") -> dict:
    """Every timing leaf of a report (a number under a key naming ms or seconds), by its path."""
    out = {}
    if isinstance(rep, dict):
        items = rep.items()
    elif isinstance(rep, list):  # attention: a list of cases, named by case and mode
        items = ((f"{c.get('case', i)}/{c.get('mode', '')}" if isinstance(c, dict) else str(i), c)
                 for i, c in enumerate(rep))
    else:
        return out
    for k, v in items:
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, (dict, list)):
            out.update(timings(v, path))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and re.search(r"(^|_)ms(_|$)", str(k)):
            out[path] = float(v)
    return out


def compare(a: dict, b: dict, tol: float) -> tuple[list, int]:
    """Rows (path, a, b, b / a, flag) of the timings both reports hold, and how many differ by more than ``tol``."""
    ta, tb = timings(a), timings(b)
    rows, off = [], 0
    for path in sorted(set(ta) & set(tb)):
        x, y = ta[path], tb[path]
        ratio = y / x if x > 0 else math.inf
        bad = abs(ratio - 1) > tol
        off += bad
        rows.append((path, x, y, ratio, "!" if bad else ""))
    return rows, off


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="merge a folder of part reports into one JSON")
    m.add_argument("folder", type=Path)
    m.add_argument("--gpu", required=True)
    m.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table", help="print a markdown table of a report")
    t.add_argument("kind", choices=sorted(TABLES))
    t.add_argument("report", type=Path)
    d = sub.add_parser("docs", help="regenerate the report tables in docs/*.md")
    d.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    g = sub.add_parser("plot", help="draw a report's plot (the benchmark plots need matplotlib)")
    g.add_argument("kind", choices=sorted(PLOTS))
    g.add_argument("report", type=Path)
    g.add_argument("png", type=Path)
    f = sub.add_parser("figure", help="reproduction: generated vs true orbital videos from a folder of strips")
    f.add_argument("--strips", type=Path, required=True,
                   help="a strips folder (<root>/strips of orster4d-reproduce: <row>/seed<s>/<object>_<kind>.png)")
    f.add_argument("--out", type=Path, required=True, help="PNG to write")
    f.add_argument("--kind", default="image", help="condition kind of the strips: image, text or static3d")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--objects", nargs="+", help="held-out object names (default: the first --max-objects)")
    f.add_argument("--max-objects", type=int, default=3)
    c = sub.add_parser("compare", help="timings of two reports (e.g. two checkouts on one GPU), B / A")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--tol", type=float, default=0.05, help="flag timings whose ratio is off 1 by more (default 0.05)")
    c.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.cmd == "merge":
        args.out.write_text(json.dumps(merge(args.folder, args.gpu), indent=1))
        print(f"wrote {args.out}")
    elif args.cmd == "table":
        print(table(args.kind, args.report))
    elif args.cmd == "docs":
        return docs(args.check)
    elif args.cmd == "plot":
        args.png.parent.mkdir(parents=True, exist_ok=True)
        PLOTS[args.kind](json.loads(args.report.read_text()), args.png)
        print(f"wrote {args.png}")
    elif args.cmd == "figure":
        from benchmarks.repro_figures import strips_figure

        args.out.parent.mkdir(parents=True, exist_ok=True)
        strips_figure(args.strips, kind=args.kind, seed=args.seed, objects=args.objects,
                      max_objects=args.max_objects).save(args.out, format="PNG")
        print(f"wrote {args.out}")
    else:
        rows, off = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()), args.tol)
        for path, x, y, ratio, flag in rows:
            print(f"{flag:1s} {ratio:6.3f}  {x:10.3f}  {y:10.3f}  {path}")
        print(f"{len(rows)} timings in both, {off} differ by more than {100 * args.tol:g}% (B / A; A = {args.a}, "
              f"B = {args.b})")
        if args.out:
            args.out.write_text(json.dumps([dict(zip(("path", "a_ms", "b_ms", "b_over_a", "flag"), r)) for r in rows],
                                           indent=1))
        return 1 if off else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
