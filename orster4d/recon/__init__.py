"""4D construction (paper section 3.2, Eq. 7-10, 17, 18): canonical 3D Gaussians and a
deformation field fitted to a video of a moving object, written as an asset folder.

Modules: :mod:`~orster4d.recon.config` (configuration, input checks), :mod:`~orster4d.recon.fit`
(the training loop, :func:`construct`), :mod:`~orster4d.recon.strategy` (densification),
:mod:`~orster4d.recon.gaussians`, :mod:`~orster4d.recon.deformation`,
:mod:`~orster4d.recon.hexplane_field` (the models), :mod:`~orster4d.recon.losses`,
:mod:`~orster4d.recon.render`, :mod:`~orster4d.recon.evaluate`, :mod:`~orster4d.recon.initialise`,
:mod:`~orster4d.recon.export` (writing the asset folder; :func:`orster4d.io.asset.read_asset` reads it),
:mod:`~orster4d.recon.manifest` (what construct wrote, for ``--overwrite``); its logs (JSON lines,
TensorBoard, curves) are written with :mod:`orster4d.logs`, shared with training.
"""
from orster4d.recon.config import CHECKPOINT, ConstructConfig, InputError, schedules, validate_inputs
from orster4d.recon.deformation import DeformationField
from orster4d.recon.export import write_outputs
from orster4d.recon.fit import construct
from orster4d.recon.gaussians import GaussianModel
from orster4d.recon.hexplane_field import HexPlaneField
from orster4d.recon.render import deform, render, render_frames
from orster4d.recon.strategy import DefaultStrategy

__all__ = ["CHECKPOINT", "ConstructConfig", "InputError", "validate_inputs", "construct", "DefaultStrategy",
           "GaussianModel", "DeformationField", "HexPlaneField", "deform", "render", "render_frames",
           "schedules", "write_outputs"]
