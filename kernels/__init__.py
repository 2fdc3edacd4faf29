"""Triton kernels of orster4d (imported as ``orster4d.kernels``)."""
