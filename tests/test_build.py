"""The JIT builder: error messages name the compiler and the file; the digest tracks headers."""
import shutil
from pathlib import Path

import pytest

from orster4d import build


def _fake_csrc(tmp_path: Path, source: str, backend: str = "cpu", suffix: str = ".cpp") -> Path:
    root = tmp_path / "csrc"
    (root / "include" / "orster4d").mkdir(parents=True)
    (root / "include" / "orster4d" / "shared.h").write_text("#pragma once\ninline int shared() { return 1; }\n")
    (root / "broken" / backend).mkdir(parents=True)
    (root / "broken" / backend / f"broken_op{suffix}").write_text(source)
    return root


def test_failed_build_names_compiler_and_file(tmp_path, monkeypatch):
    root = _fake_csrc(tmp_path, "#error this source is broken on purpose\n")
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    monkeypatch.setenv("ORSTER4D_BUILD_DIR", str(tmp_path / "cache"))
    with pytest.raises(build.BuildError) as err:
        build.load_extension("broken", "cpu")
    msg = str(err.value)
    assert "orster4d_broken_cpu" in msg and "broken_op.cpp" in msg
    assert "c++" in msg and "broken on purpose" in msg  # our summary and the compiler's own line


def test_unknown_backend_and_family(tmp_path, monkeypatch):
    root = _fake_csrc(tmp_path, "int x;\n")
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    assert build.families() == ["broken"]
    with pytest.raises(ValueError, match="backend"):
        build.load_extension("broken", "metal")
    with pytest.raises(build.BuildError, match="no cuda backend"):
        build.load_extension("broken", "cuda")


def test_digest_changes_with_any_header(tmp_path, monkeypatch):
    root = _fake_csrc(tmp_path, "int x;\n")
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    files = build._sources("broken", "cpu") + build._headers()
    before = build._digest(files)
    assert build._digest(files) == before
    (root / "include" / "orster4d" / "shared.h").write_text("#pragma once\ninline int shared() { return 2; }\n")
    assert build._digest(files) != before


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(), reason="needs nvcc")
def test_cuda_compile_only_names_the_failing_file(tmp_path, monkeypatch):
    root = _fake_csrc(tmp_path, "#error this kernel is broken on purpose\n", backend="cuda", suffix=".cu")
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    with pytest.raises(build.BuildError) as err:
        build.compile_cuda_only(out=tmp_path / "obj", verbose=False)
    assert "nvcc failed on" in str(err.value) and "broken_op.cu" in str(err.value)


def test_build_command_reports_a_failure_from_its_worker_processes(tmp_path, monkeypatch, capsys):
    root = _fake_csrc(tmp_path, "#error first module is broken\n")
    shutil.copytree(root / "broken", root / "broken2")  # a second module: built in parallel
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    monkeypatch.setenv("ORSTER4D_BUILD_DIR", str(tmp_path / "cache"))
    assert build.main(["--jobs", "2", "--no-cpu"]) == 0  # nothing to build: no CUDA here, no CPU asked
    assert build.main(["--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "orster4d-build:" in err and "broken_op.cpp" in err
    assert "first module is broken" in err


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(), reason="needs nvcc")
def test_cuda_compile_only_checks_the_cuda_librarys_cpp_files(tmp_path, monkeypatch):
    """The CUDA library's host-only sources (its op registration) are compiled too, by the host compiler."""
    root = _fake_csrc(tmp_path, "#error this registration is broken on purpose\n", backend="cuda", suffix=".cpp")
    monkeypatch.setenv("ORSTER4D_CSRC", str(root))
    with pytest.raises(build.BuildError) as err:
        build.compile_cuda_only(out=tmp_path / "obj", verbose=False)
    assert "failed on" in str(err.value) and "broken_op.cpp" in str(err.value)
    assert "broken on purpose" in str(err.value)


def test_checkouts_with_identical_sources_share_one_build(tmp_path):
    """A second checkout of the same sources (here: a copy of csrc/) finds the first one's build in
    the shared cache and compiles nothing; a changed source gets a build of its own."""
    import os
    import shutil
    import subprocess
    import sys

    lib = build.load_extension("hexplane", "cpu")
    before = lib.stat().st_mtime_ns
    copy = tmp_path / "csrc"
    shutil.copytree(build.csrc_root(), copy)
    env = dict(os.environ, ORSTER4D_CSRC=str(copy), ORSTER4D_BUILD_DIR=str(build.build_dir()))
    out = subprocess.run([sys.executable, "-c", "from orster4d import build; print(build.load_extension('hexplane', 'cpu'))"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(lib)
    assert lib.stat().st_mtime_ns == before  # not rebuilt
    src = next((copy / "hexplane" / "cpu").glob("*.cpp"))
    digest = build._digest(build._backend_files("hexplane", "cpu") + build._headers())
    src.write_text(src.read_text() + "\n// changed\n")
    os.environ["ORSTER4D_CSRC"] = str(copy)
    try:
        changed = build._digest(build._backend_files("hexplane", "cpu") + build._headers())
    finally:
        del os.environ["ORSTER4D_CSRC"]
    assert changed != digest
