"""Shared by every benchmark module: GPU time and memory of a callable, and the JSON report's frame.

Importing this module needs no GPU; the timing functions need CUDA.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch


def cuda_median_ms(fn, warmup: int = 5, iters: int = 30) -> float:
    """Median milliseconds of ``fn()`` over ``iters`` calls, after ``warmup`` untimed calls.

    Each call is timed with a pair of CUDA events recorded around it on the current stream, and
    the device is synchronised after each call, so a time covers the call's kernels plus any
    host-side gaps between their launches, with no overlap between calls.
    """
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_extra_mb(fn) -> float:
    """Peak GPU memory (MiB, 2**20 bytes) allocated while ``fn()`` runs, above what was allocated
    just before it (torch's caching allocator: ``max_memory_allocated - memory_allocated``).

    Resets torch's peak-memory statistics. Memory that ``fn`` leaves allocated (e.g. ``.grad``
    tensors) counts, as it is part of the peak.
    """
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def gpu_name() -> str:
    """The CUDA device's name (``torch.cuda.get_device_name(0)``); raises without a device."""
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: torch sees none")
    return torch.cuda.get_device_name(0)


def report_parser(description: str) -> argparse.ArgumentParser:
    """The command line every ``python -m benchmarks.<kernel>`` report shares: ``--json OUT``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", required=True, type=Path, metavar="OUT",
                   help="report file to write (rewritten after every case, so a time-out leaves a partial report)")
    return p


def write_json(path: Path, report: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def python_version() -> str:
    return platform.python_version()
