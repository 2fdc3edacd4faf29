"""orster4d: 4D generation with hand-written GPU kernels.

The C++/CUDA sources in ``csrc/`` are *not* compiled at install time: they are built just in
time on first use (see ``orster4d/build.py``), so ``pip install -e .`` works on machines without
a GPU or a CUDA toolkit. A wheel ships ``csrc/`` inside the package (``orster4d/csrc``) so that
the same just-in-time build works outside a checkout. The Triton kernels in ``kernels/`` are
installed as the ``orster4d.kernels`` package (editable installs map the folder in place).
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithSources(build_py):
    """Copies ``csrc/`` into the built package so that wheels can JIT-build the kernels."""

    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "orster4d" / "csrc"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / "csrc", target, ignore=shutil.ignore_patterns("tests", "*.o", "*.so"))


setup(
    name="orster4d",
    version="0.1.0",
    description="4D generation (STD-4D diffusion, Orster transfer, 4D Gaussian splatting) with hand-written GPU kernels",
    python_requires=">=3.9",
    packages=find_packages(include=["orster4d", "orster4d.*"]) + ["orster4d.kernels"],
    package_dir={"orster4d.kernels": "kernels"},
    include_package_data=True,
    package_data={"orster4d.viewer": ["static/*.html", "static/*.js"]},
    cmdclass={"build_py": BuildPyWithSources},
    install_requires=[
        "torch>=2.4",
        "triton",
        "numpy",
        "ninja",
        "pybind11",
        "tqdm",
        "pillow",
        "imageio",
        "imageio-ffmpeg",
        "safetensors",
        "diffusers",
        "lpips",
        "open_clip_torch",
        "tensorboard",
    ],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "scipy"],
    },
    entry_points={
        "console_scripts": [
            "orster4d-build=orster4d.build:main",
            "orster4d-render=orster4d.cli.render:main",
            "orster4d-train=orster4d.cli.train:main",
            "orster4d-construct=orster4d.cli.construct:main",
            "orster4d-eval=orster4d.cli.eval:main",
            "orster4d-generate=orster4d.cli.generate:main",
            "orster4d-view=orster4d.cli.view:main",
            "orster4d-data=orster4d.cli.data:main",
            "orster4d-reproduce=orster4d.reproduce.cli:main",
        ]
    },
)
