"""Multi-resolution HexPlane (K-Planes / 4DGS) sampling with fused C++/CUDA kernels.

Public API:

* :func:`hexplane_sample` ``(points [N, 4], planes: 6*L x [C, H, W], backend="fused") -> [N, C*L]``
* :func:`hexplane_sample_packed` ``(points, packed [rows, C], layout) -> [N, C*L]``
* :func:`hexplane_sample_reference`: the ``grid_sample`` composition.
* regularisers :func:`plane_tv`, :func:`time_smoothness`, :func:`time_l1`.
"""
from orster4d.ops.hexplane.layout import PLANE_AXES, PLANE_NAMES, SPATIAL_PLANES, TIME_PLANES, HexPlaneLayout
from orster4d.ops.hexplane.reference import hexplane_sample_reference
from orster4d.ops.hexplane.regularisers import plane_tv, time_l1, time_smoothness
from orster4d.ops.hexplane.sample import BACKENDS, hexplane_sample, hexplane_sample_packed

__all__ = [
    "BACKENDS",
    "PLANE_AXES",
    "PLANE_NAMES",
    "SPATIAL_PLANES",
    "TIME_PLANES",
    "HexPlaneLayout",
    "hexplane_sample",
    "hexplane_sample_packed",
    "hexplane_sample_reference",
    "plane_tv",
    "time_l1",
    "time_smoothness",
]
