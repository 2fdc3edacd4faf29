"""orster4d: 4D generation (STD-4D diffusion, Orster transfer, 4D Gaussian splatting).

Hand-written kernels live outside this package: C++/CUDA in ``csrc/`` (built just in
time by :mod:`orster4d.build`) and Triton in ``kernels/`` (importable as
``orster4d.kernels``).
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# In a source or editable checkout the Triton kernels sit in ../kernels; adding the
# checkout root to this package's search path makes them importable as
# ``orster4d.kernels`` without an install step (wheels map the folder directly).
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "kernels" / "__init__.py").is_file() and str(_checkout) not in __path__:
    __path__.append(str(_checkout))
