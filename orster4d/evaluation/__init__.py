"""Scoring 4D assets with the paper's six metrics (``orster4d-eval``).

* against a reference dataset: PSNR, SSIM (:mod:`orster4d.metrics`), LPIPS, per kind of frame
  (:mod:`~orster4d.evaluation.reference`), and FVD on I3D features
  (:mod:`~orster4d.evaluation.i3d`, :mod:`~orster4d.evaluation.fvd`);
* against the condition: CLIP-F and CLIP-O (:mod:`~orster4d.evaluation.clip_score`).

Assets are read by :func:`orster4d.io.asset.read_asset` and rendered from their per-timestamp
PLYs (:mod:`~orster4d.evaluation.asset`); weights come from local files only (:mod:`~orster4d.evaluation.weights`); results become ``eval.json`` and
markdown tables (:mod:`~orster4d.evaluation.tables`) through :mod:`~orster4d.evaluation.run`.
"""
from orster4d.evaluation.asset import gaussians_at, render_asset
from orster4d.evaluation.fvd import frechet_distance, fvd, gaussian_stats
from orster4d.evaluation.weights import MissingWeights

__all__ = ["gaussians_at", "render_asset", "frechet_distance", "fvd", "gaussian_stats", "MissingWeights"]
