"""Just-in-time build of the package's C++/CUDA extensions.

Every kernel family lives in ``csrc/<family>/`` with two backends:

* ``csrc/<family>/cpu/*.cpp``            -> library ``orster4d_<family>_cpu``
* ``csrc/<family>/cuda/*.cu`` + ``*.cpp`` -> library ``orster4d_<family>_cuda``

Both see ``csrc/include`` on their include path; that is where the math shared
by the CPU and CUDA code lives, in ``__host__ __device__`` headers.

The libraries are not Python modules: loading one registers its kernels with the
PyTorch dispatcher, and the ops are called as ``torch.ops.orster4d.<op>``. A family's
CPU library defines the ops' schemas (``csrc/include/orster4d/op_schemas.h``) and its
CUDA library only adds CUDA kernels, so :func:`load_extension` loads the CPU library
of a family before its CUDA library.

Modules are built with ``torch.utils.cpp_extension.load`` (ninja) on first use
and cached in ``$ORSTER4D_BUILD_DIR`` (default ``~/.cache/orster4d/<torch>``).
A hash of every source *and* header is part of the build arguments, so nothing
rebuilds unless a file changed, and any change rebuilds.

Command line (``orster4d-build`` or ``python -m orster4d.build``)::

    orster4d-build                 # build every family for the backends this machine can run
    orster4d-build --cuda          # also build the CUDA modules (needs nvcc)
    orster4d-build --cuda-compile-only   # nvcc -c every .cu file, c++ -c every CUDA-side .cpp (CI, no GPU needed)
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
import torch

__all__ = ["BuildError", "load_extension", "families", "csrc_root", "build_dir", "build_parser", "main"]

_LOADED: dict[tuple[str, str], Path] = {}


class BuildError(RuntimeError):
    """A kernel failed to compile; the message names the compiler and the file."""


def csrc_root() -> Path:
    """The ``csrc/`` folder: beside the package in a source / editable checkout."""
    env = os.environ.get("ORSTER4D_CSRC")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parent.parent / "csrc", Path(__file__).resolve().parent / "csrc"]
    for c in candidates:
        if (c / "include").is_dir():
            return c
    raise BuildError(
        "cannot find the C++/CUDA sources (csrc/): install the package from a source checkout "
        "with `pip install -e .`, or set ORSTER4D_CSRC to the csrc folder"
    )


def build_dir() -> Path:
    """Cache folder for compiled modules (``$ORSTER4D_BUILD_DIR`` overrides)."""
    env = os.environ.get("ORSTER4D_BUILD_DIR")
    if env:
        root = Path(env)
    else:
        tag = torch.__version__.replace("+", "_")
        root = Path.home() / ".cache" / "orster4d" / f"torch{tag}-py{sys.version_info[0]}{sys.version_info[1]}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def families() -> list[str]:
    """Kernel families: subfolders of csrc/ that hold a cpu/ or cuda/ folder."""
    root = csrc_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "cpu").is_dir() or (p / "cuda").is_dir()))


def _sources(family: str, backend: str) -> list[Path]:
    folder = csrc_root() / family / backend
    if not folder.is_dir():
        raise BuildError(f"kernel family {family!r} has no {backend} backend (expected {folder})")
    exts = (".cpp",) if backend == "cpu" else (".cpp", ".cu")
    files = sorted(p for p in folder.iterdir() if p.suffix in exts)
    if not files:
        raise BuildError(f"no sources in {folder}")
    return files


def _backend_files(family: str, backend: str) -> list[Path]:
    """Every file of ``csrc/<family>/<backend>/`` (sources and the headers beside them)."""
    return sorted(p for p in (csrc_root() / family / backend).rglob("*") if p.is_file())


def _headers() -> list[Path]:
    return sorted(p for p in (csrc_root() / "include").rglob("*") if p.suffix in (".h", ".cuh", ".hpp"))


def _digest(files: list[Path]) -> str:
    h = hashlib.sha1()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cxx_standard() -> str:
    """The C++ standard torch's headers need: C++20 for recent releases, C++17 before."""
    from torch.utils import cpp_extension

    aten = Path(cpp_extension.include_paths()[0]) / "ATen" / "ATen.h"
    try:
        return "c++20" if "C++20" in aten.read_text() else "c++17"
    except OSError:
        return "c++17"


def _cflags(backend: str) -> tuple[list[str], list[str]]:
    std = f"-std={cxx_standard()}"
    cflags = ["-O3", std]
    if backend == "cpu":
        cflags += ["-fopenmp"]
    nvcc = ["-O3", std, "--use_fast_math", "--expt-relaxed-constexpr", "-lineinfo"]
    return cflags, nvcc


def _first_error(log: str) -> str:
    """The first ``file:line: error`` line of a compiler log, if any."""
    for line in log.splitlines():
        if re.search(r"(error|Error)", line) and re.search(r"\.(cu|cpp|h|cuh|hpp)[:(]", line):
            return line.strip()
    for line in log.splitlines():
        if "error" in line.lower():
            return line.strip()
    return ""


def _stage_sources(family: str, backend: str, digest: str) -> Path:
    """A copy of ``csrc/include`` and ``csrc/<family>/<backend>`` in the build cache, keyed by the
    sources' content digest, so that checkouts with identical sources compile identical paths and
    share one build (a build keyed by the checkout's path would rebuild whenever another checkout
    used the cache). Written beside, then renamed into place: a half-written copy is never used."""
    root = build_dir() / "sources" / f"{family}-{backend}-{digest}"
    if (root / ".complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    shutil.copytree(csrc_root() / "include", tmp / "include")
    shutil.copytree(csrc_root() / family / backend, tmp / family / backend)
    (tmp / ".complete").write_text(digest)
    try:
        tmp.rename(root)
    except OSError:  # another process staged the same digest first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_extension(family: str, backend: str, verbose: bool = False) -> Path:
    """Build (if needed) and load ``orster4d_<family>_<backend>`` into the dispatcher.

    Args:
        family: a folder under ``csrc/`` (``"rasterize"``, ``"hexplane"``).
        backend: ``"cpu"`` or ``"cuda"``; ``"cuda"`` loads the family's CPU library first (it
            defines the ops' schemas).

    Returns:
        The path of the loaded shared library. Its ops are ``torch.ops.orster4d.*``.
    """
    key = (family, backend)
    if key in _LOADED:
        return _LOADED[key]
    if backend not in ("cpu", "cuda"):
        raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")
    from torch.utils import cpp_extension

    sources = _sources(family, backend)
    name = f"orster4d_{family}_{backend}"
    if backend == "cuda":
        if cpp_extension.CUDA_HOME is None:
            raise BuildError(
                f"building {name} needs the CUDA toolkit (nvcc): set CUDA_HOME or put nvcc on PATH"
            )
        load_extension(family, "cpu", verbose=verbose)
    digest = _digest(_backend_files(family, backend) + _headers())
    cflags, nvcc_flags = _cflags(backend)
    cflags = cflags + [f"-DORSTER4D_SOURCE_DIGEST={digest}"]
    staged = _stage_sources(family, backend, digest)
    sources = [staged / family / backend / s.name for s in sources]
    folder = build_dir() / f"{name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(staged / "include")],
            extra_cflags=cflags,
            extra_cuda_cflags=nvcc_flags if backend == "cuda" else None,
            extra_ldflags=["-fopenmp"] if backend == "cpu" else None,
            build_directory=str(folder),
            with_cuda=backend == "cuda",
            is_python_module=False,  # loaded with torch.ops.load_library: registers the ops
            verbose=verbose,
        )
    except Exception as exc:  # torch raises RuntimeError / CalledProcessError with the ninja log
        log = str(exc).replace(str(staged), str(csrc_root()))  # name the user's files, not the copies
        compiler = "nvcc" if backend == "cuda" else os.environ.get("CXX", "c++")
        first = _first_error(log)
        raise BuildError(
            f"building {name} with {compiler} failed"
            + (f"; first error: {first}" if first else "")
            + f"\n(sources: {', '.join(s.name for s in sources)}; build folder: {folder})\n{log[-4000:]}"
        ) from exc
    _LOADED[key] = folder / f"{name}{getattr(cpp_extension, 'LIB_EXT', '.so')}"
    return _LOADED[key]


def backend_for(device: torch.device) -> str:
    """``"cuda"`` for CUDA tensors, ``"cpu"`` otherwise."""
    return "cuda" if device.type == "cuda" else "cpu"


def compile_cuda_only(arch: str = "90", out: Path | None = None, verbose: bool = True) -> list[Path]:
    """``nvcc -c`` every ``.cu`` file and ``c++ -c`` every ``.cpp`` file of the CUDA libraries (no GPU
    needed); raises BuildError on the first failure."""
    from torch.utils import cpp_extension

    homes = [os.environ.get("CUDA_HOME"), cpp_extension.CUDA_HOME, "/usr/local/cuda"]
    nvccs = [Path(h) / "bin" / "nvcc" for h in homes if h]
    nvcc = next((str(p) for p in nvccs if p.is_file()), None)
    if nvcc is None:
        raise BuildError(f"nvcc not found (looked in {', '.join(map(str, nvccs))}): set CUDA_HOME")
    includes = [f"-I{p}" for p in cpp_extension.include_paths(device_type="cuda")] if _include_takes_device() else [
        f"-I{p}" for p in cpp_extension.include_paths(cuda=True)
    ]
    includes.append(f"-I{csrc_root() / 'include'}")
    py_inc = subprocess.check_output([sys.executable, "-c", "import sysconfig;print(sysconfig.get_paths()['include'])"], text=True).strip()
    includes.append(f"-I{py_inc}")
    out = Path(out or tempfile.mkdtemp(prefix="orster4d-nvcc-"))
    out.mkdir(parents=True, exist_ok=True)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    std = cxx_standard()
    jobs = []
    for fam in families():
        folder = csrc_root() / fam / "cuda"
        if folder.is_dir():
            jobs += [(fam, src) for src in sorted(folder.glob("*.cu")) + sorted(folder.glob("*.cpp"))]
    defines = [f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_EXTENSION_NAME=orster4d_check",
               "-DTORCH_API_INCLUDE_EXTENSION_H"]
    cxx = os.environ.get("CXX", "c++")

    def compile_one(job: tuple[str, Path]) -> tuple[Path, Path, subprocess.CompletedProcess, float]:
        fam, src = job
        obj = out / f"{fam}_{src.stem}{src.suffix.replace('.', '_')}.o"
        if src.suffix == ".cu":
            cmd = [nvcc, "-c", str(src), "-o", str(obj), f"-gencode=arch=compute_{arch},code=sm_{arch}",
                   "-O3", f"-std={std}", "--use_fast_math", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC",
                   *defines, *includes]
        else:  # the CUDA library's host-only sources (op registration): the host compiler, as the JIT build
            cmd = [cxx, "-c", str(src), "-o", str(obj), "-O1", f"-std={std}", "-fPIC", *defines, *includes]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return src, obj, proc, time.time() - t0

    built = []
    workers = max(1, min(len(jobs), int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))))
    with ThreadPoolExecutor(workers) as pool:
        for src, obj, proc, seconds in pool.map(compile_one, jobs):
            if proc.returncode != 0:
                log = proc.stdout + proc.stderr
                tool = "nvcc" if src.suffix == ".cu" else cxx
                where = src.relative_to(csrc_root().parent)
                raise BuildError(f"{tool} failed on {where}: {_first_error(log)}\n{log[-4000:]}")
            if verbose:
                tool = "nvcc" if src.suffix == ".cu" else "c++ "
                print(f"  {tool} ok  {src.relative_to(csrc_root().parent)}  ({seconds:.1f} s)")
            built.append(obj)
    return built


def _include_takes_device() -> bool:
    import inspect
    from torch.utils import cpp_extension

    return "device_type" in inspect.signature(cpp_extension.include_paths).parameters


def _build_one(family: str, backend: str, verbose: bool) -> tuple[str, float, str]:
    """Build one library; returns ``(library name, seconds, .so path)`` (picklable, for worker processes)."""
    t0 = time.time()
    path = load_extension(family, backend, verbose=verbose)
    return f"orster4d_{family}_{backend}", time.time() - t0, str(path)


def build_parser() -> argparse.ArgumentParser:
    from orster4d.cli.args import HelpFormatter, description, nonneg_int

    p = argparse.ArgumentParser(prog="orster4d-build", formatter_class=HelpFormatter,
                                description="Build the orster4d C++/CUDA kernels ahead of time.\n\n" + description(__doc__))
    p.add_argument("--cuda", action="store_true", help="also build the CUDA modules (default: when torch sees a GPU)")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU modules")
    p.add_argument("--cuda-compile-only", action="store_true",
                   help="only compile the CUDA libraries' sources to objects (no GPU needed)")
    p.add_argument("--arch", default="90", help="SM architecture for --cuda-compile-only")
    p.add_argument("--jobs", type=nonneg_int, default=0,
                   help="modules built at once, each in its own process (0: all of them)")
    p.add_argument("--verbose", action="store_true", help="print the compiler commands and output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cuda_compile_only:
            t0 = time.time()
            objs = compile_cuda_only(arch=args.arch)
            print(f"compiled {len(objs)} CUDA files for sm_{args.arch} in {time.time() - t0:.1f} s")
            return 0
        backends = [] if args.no_cpu else ["cpu"]
        if args.cuda or torch.cuda.is_available():
            backends.append("cuda")
        print(f"build folder: {build_dir()}")
        todo = [(fam, be) for fam in families() for be in backends if (csrc_root() / fam / be).is_dir()]
        jobs = max(1, min(args.jobs or len(todo), len(todo)))
        if jobs == 1:
            for fam, be in todo:
                print("  built {:32s} {:6.1f} s  ({})".format(*_build_one(fam, be, args.verbose)))
        else:  # modules in separate processes (ninja parallelises only within one module)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                futs = [pool.submit(_build_one, fam, be, args.verbose) for fam, be in todo]
                for fut in as_completed(futs):
                    print("  built {:32s} {:6.1f} s  ({})".format(*fut.result()), flush=True)
    except BuildError as exc:
        print(f"orster4d-build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
