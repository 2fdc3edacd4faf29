"""Mean and two-sided 95% confidence interval over seeds (Student t)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

# t_{0.975, dof} for dof = 1..30; larger dof use the normal quantile 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(dof: int) -> float:
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


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
