"""Every ``orster4d-*`` console script: ``--help`` is plain text that shows each number flag's default,
and bad numbers or devices are refused at parse time (exit status 2, the flag named)."""
import argparse
import importlib
import re
from pathlib import Path

import pytest
import torch

SETUP = Path(__file__).resolve().parents[2] / "setup.py"


def console_scripts():
    """``{name: "module:function"}`` read from setup.py's console_scripts."""
    text = SETUP.read_text()
    found = dict(re.findall(r'"(orster4d-[a-z0-9-]+)=([\w.]+:\w+)"', text))
    assert len(found) >= 9, found
    return found


SCRIPTS = console_scripts()


def _entry(name):
    module, func = SCRIPTS[name].split(":")
    mod = importlib.import_module(module)
    return mod, getattr(mod, func)


def _exit_code(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _parsers(parser, argv=()):
    """``(argv, parser)`` for the parser and each of its sub-commands."""
    yield list(argv), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, [*argv, sub_name])


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or \
        (isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_number(x) for x in v))


def _option_chunks(text):
    """The help text of each option, keyed by its first flag (the option lines of ``--help``)."""
    chunks, key = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            key = m.group(1)
            chunks[key] = line
        elif key is not None and line.startswith("    "):
            chunks[key] += " " + line
        else:
            key = None
    return {k: " ".join(v.split()) for k, v in chunks.items()}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_is_plain_and_shows_number_defaults(name, capsys):
    mod, main = _entry(name)
    code, out, _ = _exit_code(main, ["--help"], capsys)
    assert code == 0
    assert "``" not in out and ":func:" not in out and ":mod:" not in out
    assert out.startswith("usage:")
    assert hasattr(mod, "build_parser"), f"{name}: the parser is built by build_parser()"
    for argv, parser in _parsers(mod.build_parser()):
        code, text, _ = _exit_code(main, [*argv, "--help"], capsys)
        assert code == 0 and "``" not in text, (name, argv)
        chunks = _option_chunks(text)
        for action in parser._actions:
            if not action.option_strings or not _is_number(action.default):
                continue
            chunk = chunks.get(action.option_strings[0])
            assert chunk is not None, (name, argv, action.option_strings)
            d = action.default
            shown = {str(d), " ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)}
            assert any(x in chunk for x in shown), \
                f"{name} {' '.join(argv)}: {action.option_strings[0]} does not show its default {d}: {chunk!r}"


# Each row: command, the arguments that make the rest of the command line valid, the bad flag and value(s).
BAD = [
    ("orster4d-build", [], ["--jobs", "-1"]),
    ("orster4d-build", [], ["--jobs", "two"]),
    ("orster4d-render", ["--demo"], ["--n", "0"]),
    ("orster4d-render", ["--demo"], ["--cameras", "-2"]),
    ("orster4d-render", ["--demo"], ["--repeat", "0"]),
    ("orster4d-render", ["--demo"], ["--log-scale", "nan"]),
    ("orster4d-render", ["--demo"], ["--seed", "-1"]),
    ("orster4d-construct", ["in", "-o", "out"], ["--coarse-iters", "0"]),
    ("orster4d-construct", ["in", "-o", "out"], ["--lambda-lpips", "inf"]),
    ("orster4d-construct", ["in", "-o", "out"], ["--time-smoothness", "-0.1"]),
    ("orster4d-construct", ["in", "-o", "out"], ["--checkpoint-every", "-1"]),
    ("orster4d-construct", ["--demo", "-o", "out"], ["--size", "4"]),
    ("orster4d-construct", ["--demo", "-o", "out"], ["--views", "0"]),
    ("orster4d-train", ["--stage", "1"], ["--steps", "0"]),
    ("orster4d-train", ["--stage", "1"], ["--steps", "1.5"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--steps", "0"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--guidance", "-1"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--guidance", "nan"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--prior-steps", "0"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--construct-iters", "10", "-1"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--construct-iters", "0", "10"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--construct-points", "0"]),
    ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"], ["--seed", "-3"]),
    ("orster4d-eval", ["asset"], ["--clip-views", "0"]),
    ("orster4d-eval", ["asset"], ["--fvd-clip-frames", "4"]),
    ("orster4d-eval", ["asset"], ["--fvd-clip-frames", "-1"]),
    ("orster4d-eval", ["asset"], ["--dnerf-downscale", "0"]),
    ("orster4d-eval", ["asset"], ["--background", "1", "nan", "1"]),
    ("orster4d-eval", ["asset"], ["--background", "1", "1", "1.5"]),
    ("orster4d-view", ["asset"], ["--port", "-1"]),
    ("orster4d-view", ["asset"], ["--port", "70000"]),
    ("orster4d-data", ["build", "--root", "w"], ["--static", "-1"]),
    ("orster4d-data", ["build", "--root", "w"], ["--frames", "0"]),
    ("orster4d-data", ["build", "--root", "w"], ["--size", "-8"]),
    ("orster4d-data", ["build", "--root", "w"], ["--radius", "0"]),
    ("orster4d-data", ["build", "--root", "w"], ["--fov", "inf"]),
    ("orster4d-data", ["build", "--root", "w"], ["--elevation", "nan"]),
    ("orster4d-data", ["build", "--root", "w"], ["--seed", "-1"]),
    ("orster4d-data", ["subset", "--root", "w", "--set", "scarce4d", "--out", "o", "-n", "1"], ["-n", "0"]),
    ("orster4d-reproduce", ["--root", "r"], ["--seeds", "0", "-1"]),
    ("orster4d-reproduce", ["--root", "r"], ["--world-seed", "-1"]),
]


@pytest.mark.parametrize("name,base,bad", BAD, ids=[f"{n} {' '.join(b)}" for n, _, b in BAD])
def test_bad_numbers_fail_at_parse_time(name, base, bad, capsys):
    _, main = _entry(name)
    code, _, err = _exit_code(main, [*base, *bad], capsys)
    assert code == 2
    assert f"argument {bad[0]}" in err or f"/{bad[0]}" in err, err
    # the same command line without the bad flag parses (so the flag is what was refused)
    mod, _ = _entry(name)
    mod.build_parser().parse_args(base)


DEVICE_COMMANDS = [("orster4d-render", ["--demo"]), ("orster4d-construct", ["in", "-o", "out"]),
                   ("orster4d-generate", ["--prompt", "x", "--model", "m", "-o", "o"]), ("orster4d-eval", ["asset"]),
                   ("orster4d-data", ["build", "--root", "w"]), ("orster4d-reproduce", ["--root", "r"])]


@pytest.mark.parametrize("name,base", DEVICE_COMMANDS, ids=[n for n, _ in DEVICE_COMMANDS])
def test_device_is_checked_at_parse_time(name, base, capsys):
    mod, main = _entry(name)
    bad = ["tpu", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda"]) + \
        [f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"]
    for device in bad:
        code, _, err = _exit_code(main, [*base, "--device", device], capsys)
        assert code == 2 and "argument --device" in err, (device, err)
    for device in ("auto", "cpu"):
        assert mod.build_parser().parse_args([*base, "--device", device]).device == device


def test_shared_types_accept_the_range_and_refuse_the_rest():
    from orster4d.cli import args as A

    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    for _ in range(20):
        n = int(torch.randint(1, 10**6, (1,), generator=g))
        x = float(torch.rand((), generator=g))
        assert A.positive_int(str(n)) == n and A.nonneg_int(str(n - 1)) == n - 1
        assert A.unit_float(repr(x)) == x and A.nonneg_float(repr(x)) == x and A.finite_float(repr(-n * x)) == -n * x
        for t, bad in ((A.positive_int, str(1 - n)), (A.nonneg_int, str(-n)), (A.positive_float, repr(-x)),
                       (A.unit_float, repr(1 + x + 1e-3)), (A.nonneg_float, repr(-x - 1e-9))):
            with pytest.raises(argparse.ArgumentTypeError):
                t(bad)
    for t in (A.positive_float, A.nonneg_float, A.unit_float, A.finite_float):
        for bad in ("nan", "inf", "-inf", "x"):
            with pytest.raises(argparse.ArgumentTypeError):
                t(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="> 0"):
        A.positive_float("0")
    port = A.integer(0, 65535)
    assert port("0") == 0 and port("65535") == 65535
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \[0, 65535\]"):
        port("65536")


def test_description_strips_markup():
    from orster4d.cli.args import description

    doc = ("``orster4d-x``: do a thing (see :func:`orster4d.a.b` and :class:`~orster4d.c.D`).\n\n"
           "Examples::\n\n    orster4d-x --n 3   # writes ``out/``\n")
    text = description(doc)
    assert text == ("orster4d-x: do a thing (see orster4d.a.b and orster4d.c.D).\n\nExamples:\n\n"
                    "    orster4d-x --n 3   # writes out/")
    assert description(None) == ""
