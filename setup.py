"""orster4d: 4D generation with hand-written GPU kernels.

The C++/CUDA sources in ``csrc/`` are *not* compiled at install time: they are
built just in time on first use (see ``orster4d/build.py``), so
``pip install -e .`` works on machines without a GPU or a CUDA toolkit.
The Triton kernels in ``kernels/`` are installed as the ``orster4d.kernels``
package (in a source checkout ``orster4d/__init__.py`` finds them in place).
"""
from setuptools import find_packages, setup

setup(
    name="orster4d",
    version="0.1.0",
    description="4D generation (STD-4D diffusion, Orster transfer, 4D Gaussian splatting) with hand-written GPU kernels",
    python_requires=">=3.9",
    packages=find_packages(include=["orster4d", "orster4d.*"]) + ["orster4d.kernels"],
    package_dir={"orster4d.kernels": "kernels"},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",
        "numpy",
        "ninja",
        "pybind11",
        "tqdm",
        "pillow",
        "imageio",
    ],
    extras_require={
        "triton": ["triton"],
        "diffusion": ["diffusers", "transformers", "open_clip_torch", "lpips"],
        "test": [
            "pytest",
            "pytest-benchmark",
            "triton",
            "diffusers",
            "transformers",
            "open_clip_torch",
            "lpips",
        ],
    },
    entry_points={
        "console_scripts": [
            "orster4d-build=orster4d.build:main",
            "orster4d-render=orster4d.cli.render:main",
            "orster4d-train=orster4d.cli.train:main",
            "orster4d-construct=orster4d.cli.construct:main",
        ]
    },
)
