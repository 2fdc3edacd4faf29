"""The HexPlane sampler's dispatcher ops: loading and fake kernels.

The C++ CPU and CUDA kernels are registered with the PyTorch dispatcher (schemas in
``csrc/include/orster4d/op_schemas.h``); one op name dispatches on the tensors' device:

* ``orster4d::hexplane_fwd(points [N, 4], packed [rows, C], meta) -> [N, C * L]``
* ``orster4d::hexplane_fwd_out(points, packed, meta, out [N, C * L])`` writes into ``out``, returns it
* ``orster4d::hexplane_bwd(grad_out [N, C * L], points, packed, meta, need_points, need_planes)
  -> (grad_points [N, 4], grad_packed [rows, C])``; a gradient not asked for is an empty ``[0]`` tensor

``meta`` is :meth:`HexPlaneLayout.meta` (per level: resolutions x, y, z, t and six row offsets).
``hexplane_fwd`` carries a C++ autograd kernel (``csrc/hexplane/cpu/autograd.cpp``, built into the
CPU library: gradients to ``points`` and ``packed``, only those asked for). This module adds a fake
(meta) kernel for each op, so that ``torch.compile`` traces them.
"""
from __future__ import annotations

import torch

from orster4d.ops._extensions import kernel_loaders

META_PER_LEVEL = 10  # csrc/include/orster4d/hexplane_math.h: kMetaPerLevel


def _fake_fwd(points, packed, meta):
    return packed.new_empty((points.shape[0], packed.shape[1] * (len(meta) // META_PER_LEVEL)))


def _fake_fwd_out(points, packed, meta, out):
    return out


def _fake_bwd(grad_out, points, packed, meta, need_points, need_planes):
    return (torch.empty_like(points) if need_points else points.new_empty((0,)),
            torch.empty_like(packed) if need_planes else packed.new_empty((0,)))


def _register_python_parts() -> None:
    """Fake kernels; once, after the CPU library has defined the ops (and the autograd kernel)."""
    torch.library.register_fake("orster4d::hexplane_fwd", _fake_fwd)
    torch.library.register_fake("orster4d::hexplane_fwd_out", _fake_fwd_out)
    torch.library.register_fake("orster4d::hexplane_bwd", _fake_bwd)


extension, ensure_loaded = kernel_loaders("hexplane", _register_python_parts)
