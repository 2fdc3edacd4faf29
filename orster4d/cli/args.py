"""What every ``orster4d-*`` command shares: range-checked argument types, the help formatter and
the description helper.

Each type is a callable for ``argparse``'s ``type=``: a value out of range is refused at parse time
(exit status 2, the message names the flag and the allowed range), before any work starts.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, Optional

__all__ = ["integer", "number", "positive_int", "nonneg_int", "positive_float", "nonneg_float", "unit_float",
           "finite_float", "device_name", "description", "HelpFormatter"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends each flag's default to its help (a list as
    its values separated by spaces), unless the default is unset (None, False, an empty list) or the
    help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default)
                or "default" in text or action.option_strings == []):
            return text
        if isinstance(default, (list, tuple)):  # as typed on the command line: "--background 1 1 1"
            shown = " ".join(str(v) for v in default).replace("%", "%%")
            return f"{text} (default: {shown})"
        return f"{text} (default: %(default)s)"


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")  # :func:`a.b` -> a.b
_LITERAL = re.compile(r"``([^`]+)``")                     # ``x`` -> x
_EMPHASIS = re.compile(r"`([^`]+)`")                      # `x` -> x
_BLOCK = re.compile(r"::$", re.MULTILINE)                 # "Examples::" -> "Examples:"


def description(doc: Optional[str]) -> str:
    """A module docstring as plain text for ``--help``: reStructuredText roles, literals and
    literal-block markers are stripped; line breaks are kept."""
    text = (doc or "").strip()
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return _BLOCK.sub(":", text)


def _range_text(lo, hi, above) -> str:
    if above is not None:
        return f"> {above}"
    if hi is None:
        return f">= {lo}"
    if lo is None:
        return f"<= {hi}"
    return f"in [{lo}, {hi}]"


def integer(lo: Optional[int] = None, hi: Optional[int] = None) -> Callable[[str], int]:
    """argparse type: an integer in ``[lo, hi]`` (either end may be open)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {_range_text(lo, hi, None)}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def number(lo: Optional[float] = None, hi: Optional[float] = None,
           above: Optional[float] = None) -> Callable[[str], float]:
    """argparse type: a finite number in ``[lo, hi]``, or ``> above`` when ``above`` is given."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (above is not None and v <= above) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be a number {_range_text(lo, hi, above)}, got {v:g}")
        return v
    parse.__name__ = "number"
    return parse


positive_int = integer(1)            # counts: iterations, steps, points, views, frames
nonneg_int = integer(0)              # seeds, counts where 0 means "none" or "off"
positive_float = number(above=0.0)   # sizes, radii, rates
nonneg_float = number(lo=0.0)        # loss weights (0 turns a term off), guidance scales
unit_float = number(0.0, 1.0)        # colours, fractions
finite_float = number()              # any finite number (log scales, angles)


def device_name(text: str) -> str:
    """argparse type for ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused when torch
    cannot use it on this machine (the rule of :func:`orster4d.devices.resolve_device`); returns the
    name as given (``auto`` stays ``auto``)."""
    from orster4d.devices import resolve_device  # imports torch: only when a device is parsed

    try:
        resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
