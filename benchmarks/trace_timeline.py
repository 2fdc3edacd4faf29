"""Host and device timelines of one call, read from a Chrome trace that ``benchmarks.step_split``
wrote (``--trace-dir``): where the host spends a call, how many launches it makes, and how long
the GPU waits for them.

    python -m benchmarks.trace_timeline TRACE.json.gz --json timeline.json

No GPU is needed: the trace holds the profiled run. ``step_split`` synchronises the device after
every call, so the host's ``cudaDeviceSynchronize`` events cut the trace into calls; every window
between two of them is one call, and the report averages over those windows. Per call:

- ``host_ms``: the host's time from the end of one synchronisation to the start of the next;
- ``device_busy_ms``: the union of the GPU's kernels, memsets and copies in the window;
- ``device_idle_ms``: ``host_ms - device_busy_ms``, the time the GPU had nothing to run;
- ``first_kernel_ms``: when the first kernel whose name holds ``--first-kernel`` (default the
  projection, ``project_fwd_kernel``) starts, counted from the window's start: everything the
  host does before it delays the whole call;
- ``api``: CUDA runtime calls by name (launches, memsets, copies, synchronisations) and their
  host microseconds;
- ``host_ops``: the top-level ops of each host thread (the Python thread, then autograd's device
  thread for the backward) in the order of their first start: host milliseconds, the number of
  launches (kernels, memsets, copies) they make, and the device milliseconds of the work they
  launched (matched through the profiler's correlation ids).

The profiler's own overhead inflates every host time (about 1.5x for the rasterizer at 100k
Gaussians), so compare these numbers with each other, not with unprofiled timings.
"""
from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from typing import Dict, List, Tuple

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaMemsetAsync", "cudaMemcpyAsync", "cuLaunchKernel",
            "cuLaunchKernelEx")
DEVICE_CATS = ("kernel", "gpu_memset", "gpu_memcpy")
HOST_CATS = ("cpu_op", "cuda_runtime", "cuda_driver")
SYNC = "cudaDeviceSynchronize"


def _read(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def load(path: str) -> List[dict]:
    """The complete ("X") events of a Chrome trace file, gzipped or not, sorted by start time."""
    data = _read(path)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return sorted((e for e in events if e.get("ph") == "X" and "dur" in e), key=lambda e: e["ts"])


def gpu_name(path: str):
    """The traced GPU's name (the profiler's ``deviceProperties``), or None."""
    data = _read(path)
    props = data.get("deviceProperties") if isinstance(data, dict) else None
    return props[0].get("name") if props else None


def _union_us(intervals: List[Tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _top_level(events: List[dict]) -> List[dict]:
    """Events of one thread not nested in an earlier one (events sorted by start)."""
    out, end = [], float("-inf")
    for e in events:
        if e["ts"] >= end:
            out.append(e)
            end = e["ts"] + e["dur"]
    return out


def windows(events: List[dict]) -> List[Tuple[float, float]]:
    """``(start, end)`` of every call: from the end of one device synchronisation to the start of the next."""
    syncs = [e for e in events if e.get("cat") == "cuda_runtime" and e["name"] == SYNC]
    return [(a["ts"] + a["dur"], b["ts"]) for a, b in zip(syncs, syncs[1:])]


def timeline(events: List[dict], first_kernel: str = "project_fwd_kernel") -> Dict:
    """The per-call averages of the module docstring, over every window of ``events``."""
    wins = windows(events)
    if not wins:
        raise ValueError(f"no two {SYNC} events in the trace: it does not come from benchmarks.step_split")
    n = len(wins)
    device = [e for e in events if e.get("cat") in DEVICE_CATS]
    host = [e for e in events if e.get("cat") in HOST_CATS]
    launch_of = {e["args"]["correlation"]: e for e in host
                 if e["name"] in LAUNCHES and "correlation" in e.get("args", {})}
    busy = idle = first = 0.0
    firsts = 0
    api: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0.0])
    ops: Dict[Tuple[int, str], Dict[str, float]] = {}
    order: Dict[Tuple[int, str], Tuple[int, float]] = {}
    threads: List = []
    for a, b in wins:
        dev = [e for e in device if a <= launch_of.get(e.get("args", {}).get("correlation"), e)["ts"] < b]
        span = b - a
        work = _union_us([(max(e["ts"], a), min(e["ts"] + e["dur"], b)) for e in dev if e["ts"] < b])
        busy += work
        idle += span - work
        ks = [e for e in dev if e.get("cat") == "kernel" and first_kernel in e["name"]]
        if ks:
            first += ks[0]["ts"] - a
            firsts += 1
        mine = [e for e in host if a <= e["ts"] < b]
        for e in mine:
            if e.get("cat") == "cuda_runtime":
                api[e["name"]][0] += 1
                api[e["name"]][1] += e["dur"]
        dev_by_corr = defaultdict(float)
        for e in dev:
            dev_by_corr[e.get("args", {}).get("correlation")] += e["dur"]
        by_thread = defaultdict(list)
        for e in mine:
            by_thread[e["tid"]].append(e)
        for tid, evs in by_thread.items():
            if tid not in threads:
                threads.append(tid)
            for top in _top_level(evs):
                end = top["ts"] + top["dur"]
                inside = [e for e in evs if top["ts"] <= e["ts"] < end and e["name"] in LAUNCHES]
                key = (tid, top["name"])
                row = ops.setdefault(key, {"host_ms": 0.0, "launches": 0.0, "device_ms": 0.0, "calls": 0.0})
                row["host_ms"] += top["dur"] / 1e3
                row["launches"] += len(inside)
                row["device_ms"] += sum(dev_by_corr.get(e.get("args", {}).get("correlation"), 0.0)
                                        for e in inside) / 1e3
                row["calls"] += 1
                order.setdefault(key, (threads.index(tid), top["ts"] - a))
    names = {tid: ("python" if i == 0 else f"thread {i}") for i, tid in enumerate(threads)}
    rows = []
    for key in sorted(ops, key=lambda k: order[k]):
        r = ops[key]
        rows.append({"thread": names[key[0]], "op": key[1], "host_ms": round(r["host_ms"] / n, 4),
                     "launches": round(r["launches"] / n, 2), "device_ms": round(r["device_ms"] / n, 4),
                     "calls": round(r["calls"] / n, 2)})
    return {
        "calls": n,
        "host_ms": round(sum(b - a for a, b in wins) / n / 1e3, 4),
        "device_busy_ms": round(busy / n / 1e3, 4),
        "device_idle_ms": round(idle / n / 1e3, 4),
        "first_kernel": first_kernel,
        "first_kernel_ms": round(first / firsts / 1e3, 4) if firsts else None,
        "launches": round(sum(v[0] for k, v in api.items() if k in LAUNCHES) / n, 2),
        "api": {k: {"calls": round(v[0] / n, 2), "host_us": round(v[1] / n, 1)}
                for k, v in sorted(api.items(), key=lambda kv: -kv[1][1])},
        "host_ops": rows,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace", help="a Chrome trace from benchmarks.step_split --trace-dir (.json or .json.gz)")
    p.add_argument("--json", help="write the report there")
    p.add_argument("--first-kernel", default="project_fwd_kernel",
                   help="a substring of the kernel whose start marks the end of the entry point's host work")
    p.add_argument("--commit", help="the commit the trace was recorded at (stored in the report)")
    args = p.parse_args(argv)
    rep = timeline(load(args.trace), args.first_kernel)
    rep = {"trace": args.trace.replace("\\", "/"), "gpu": gpu_name(args.trace), "commit": args.commit, **rep}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
            f.write("\n")
    print(f"{rep['calls']} calls: host {rep['host_ms']:.3f} ms, device busy {rep['device_busy_ms']:.3f} ms, "
          f"idle {rep['device_idle_ms']:.3f} ms; first {args.first_kernel} at {rep['first_kernel_ms']} ms; "
          f"{rep['launches']} launches per call")
    for r in rep["host_ops"]:
        if r["host_ms"] >= 0.01:
            print(f"  [{r['thread']}] {r['op'][:70]:70s} host {r['host_ms']:.3f} ms, {r['launches']:.0f} launches, "
                  f"device {r['device_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
