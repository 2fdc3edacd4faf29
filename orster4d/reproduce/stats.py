"""Mean and two-sided 95% confidence interval over seeds (Student t)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

# t_{0.975, dof} for dof = 1..30 (6 decimals); larger dof use the Cornish-Fisher expansion around
# the normal quantile, accurate to better than 1e-5 there
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
_Z975 = 1.959963984540054


def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z, v = _Z975, float(dof)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))


def mean_ci(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """``{"mean", "half_width", "low", "high", "n"}`` of the finite values; the interval is
    ``mean +- t_{0.975, n-1} * std / sqrt(n)`` (sample std), None with fewer than two values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return {"mean": None, "half_width": None, "low": None, "high": None, "n": 0}
    m = sum(v) / n
    if n < 2:
        return {"mean": m, "half_width": None, "low": None, "high": None, "n": 1}
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    h = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": m, "half_width": h, "low": m - h, "high": m + h, "n": n}
