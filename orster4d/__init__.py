"""orster4d: 4D generation (dynamic 3D assets) with hand-written GPU kernels.

The package follows the method's two halves:

* generation (:mod:`orster4d.generation`): STD-4D diffusion with Orster prior transfer turns a
  condition into an orbital video of a moving object;
* 4D construction (:mod:`orster4d.recon`): 4D Gaussian Splatting with an ST-HexPlane deformation
  field fitted to that video, exported as a 4D asset.

Both stand on the kernels in :mod:`orster4d.ops` (Gaussian rasterizer, HexPlane sampling, Orster
attention) and share :mod:`orster4d.data`, :mod:`orster4d.io`, :mod:`orster4d.cameras` and
:mod:`orster4d.metrics`.

The names below are imported on first use, so ``import orster4d`` stays cheap (no diffusers, no
kernel build).
"""
from importlib import import_module as _import_module

__version__ = "0.1.0"

_PUBLIC = {
    # kernels
    "rasterize_gaussians": "orster4d.ops.rasterize",
    "RenderOutput": "orster4d.ops.rasterize",
    "hexplane_sample": "orster4d.ops.hexplane",
    "hexplane_sample_packed": "orster4d.ops.hexplane",
    "orster_attention": "orster4d.ops.attention",
    "GaussianKernelParams": "orster4d.ops.attention",
    # 4D construction
    "GaussianModel": "orster4d.recon.gaussians",
    "DeformationField": "orster4d.recon.deformation",
    "HexPlaneField": "orster4d.recon.hexplane_field",
    "ConstructConfig": "orster4d.recon.config",
    "construct": "orster4d.recon.fit",
    "DefaultStrategy": "orster4d.recon.strategy",
    # asset folders
    "Asset": "orster4d.io.asset",
    "read_asset": "orster4d.io.asset",
    # data and cameras
    "DynamicDataset": "orster4d.data.dataset",
    "load_dataset": "orster4d.data.dataset",
    "write_dataset": "orster4d.data.dataset",
    "generate_scene": "orster4d.data.render",
    "make_object": "orster4d.data.procedural",
    "OrbitTrajectory": "orster4d.cameras",
    # metrics
    "psnr": "orster4d.metrics",
    "ssim": "orster4d.metrics",
    # generation
    "STD4DUNet": "orster4d.generation.models.unet4d",
    "STD4DPipeline": "orster4d.generation.pipeline",
    "DisentanglementVAE": "orster4d.generation.models.vae",
    "OrsterTransfer": "orster4d.generation.orster",
    "train_stage": "orster4d.generation.training.trainer",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'orster4d' has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
