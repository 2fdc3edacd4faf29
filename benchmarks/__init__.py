"""Benchmarks: one module per kernel or workload.

Each of ``rasterize``, ``hexplane``, ``attention``, ``construct`` and ``train`` holds its cases,
its pytest-benchmark benches (``pytest benchmarks/ --benchmark-only``; they skip without CUDA)
and a JSON report (``python -m benchmarks.<name> --json OUT``). ``report`` merges reports and
writes the docs' tables and plots; ``timing`` holds the shared GPU timing helpers.
Run everything from the repository root.
"""
