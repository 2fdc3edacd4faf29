"""Argument types shared by the ``orster4d-*`` commands: numbers are range-checked at parse time.

Each type is a callable for ``argparse``'s ``type=``; a value out of range is refused with a
message that names the allowed range, before any work starts.
"""
from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonneg_int", "positive_float", "nonneg_float", "unit_float", "HelpFormatter"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends each flag's default to its help, unless the
    default is unset (None, False) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text
                or action.option_strings == [] or "%(default)" in text):
            return text
        return f"{text} (default: %(default)s)"


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    v = _number(int, text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {v}")
    return v


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _number(float, text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {v}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (a loss weight: 0 turns the term off)."""
    v = _number(float, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {v}")
    return v


def unit_float(text: str) -> float:
    """A number in [0, 1]."""
    v = _number(float, text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {v}")
    return v
