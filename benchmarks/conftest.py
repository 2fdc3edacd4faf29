"""pytest set-up of the benchmarks (``pytest benchmarks/ --benchmark-only``).

Without a GPU every bench skips with its reason; Triton kernels would run in the interpreter
(TRITON_INTERPRET=1), which must be set before triton is first imported.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
