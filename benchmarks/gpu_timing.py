"""GPU time and memory of a callable (CUDA only), shared by the benchmarks and ``scripts/gpu_*_report.py``.

Not a benchmark file itself (pytest collects ``bench_*.py``); importing it needs no GPU.
"""
from __future__ import annotations

import statistics

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
