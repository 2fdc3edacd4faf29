"""Loading one kernel family's dispatcher ops (shared by :mod:`orster4d.ops.rasterize` and
:mod:`orster4d.ops.hexplane`).

A family's C++ CPU and CUDA libraries (built on first use by :func:`orster4d.build.load_extension`)
register its ops as ``torch.ops.orster4d.*`` (with C++ autograd kernels for the differentiable ones);
its Python parts (fake kernels for ``torch.compile``) can be registered only once the CPU library has
defined the ops, and only once.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch

from orster4d.build import load_extension


def kernel_loaders(family: str, register_python_parts: Callable[[], None]) -> Tuple[Callable, Callable]:
    """The two loaders of the kernel family ``family`` (a folder of ``csrc``: "rasterize", "hexplane").

    Args:
        family: the kernel family whose libraries :func:`~orster4d.build.load_extension` builds.
        register_python_parts: registers the family's fake kernels; called
            once, after the first library of the family is loaded.
    Returns:
        ``(extension, ensure_loaded)``: ``extension(backend)`` loads the kernels of ``backend`` ("cpu"
        or "cuda") and returns ``torch.ops.orster4d``, whose ops dispatch on the device of their
        tensors; ``ensure_loaded(backend)`` does the same and returns True, and under
        ``torch.compile`` runs while tracing, leaving nothing in the graph.
    """
    registered = False

    def extension(backend: str):
        nonlocal registered
        load_extension(family, backend)
        if not registered:
            register_python_parts()
            registered = True
        return torch.ops.orster4d

    @torch.compiler.assume_constant_result
    def ensure_loaded(backend: str) -> bool:
        extension(backend)
        return True

    extension.__doc__ = (f"``torch.ops.orster4d`` with the ``{family}`` kernels of ``backend`` (\"cpu\" or \"cuda\") "
                         f"loaded (built on first use); its ops dispatch on the device of their tensors.")
    ensure_loaded.__doc__ = (f"Loads the ``{family}`` kernels of ``backend`` once; under ``torch.compile`` this runs "
                             f"while tracing and leaves nothing in the graph.")
    return extension, ensure_loaded
