"""The small-scale reproduction protocol (``orster4d-reproduce``): paper Tables 1-3 in the
procedural data-scarcity world (:mod:`orster4d.data.world`), scored against true orbital videos
and, for 4D assets, against the multi-view ground truth on held-out views and times.

- :mod:`~orster4d.reproduce.rows`: the rows of the tables as data (stages, per-stage config
  overrides, what is scored, construction settings, seeds);
- :mod:`~orster4d.reproduce.presets`: the ``tiny`` (CPU tests) and ``small`` (one GPU) sizes;
- :mod:`~orster4d.reproduce.cache`: runs cached by a hash of their config and inputs;
- :mod:`~orster4d.reproduce.vae`: the image VAE trained on procedural frames;
- :mod:`~orster4d.reproduce.protocol`: world, VAE, teachers, each row's stages, evaluation;
- :mod:`~orster4d.reproduce.scoring`: generated vs true orbital videos (PSNR, SSIM, LPIPS, FVD),
  and 4D assets built from generated videos vs the multi-view ground truth (PSNR, SSIM, LPIPS);
- :mod:`~orster4d.reproduce.stats` and :mod:`~orster4d.reproduce.tables`: mean and 95% interval
  over seeds, ``reproduction.json`` and markdown tables.
"""
from orster4d.reproduce.presets import PRESETS, ReproPreset
from orster4d.reproduce.rows import ROWS, Row, find_rows

__all__ = ["PRESETS", "ReproPreset", "ROWS", "Row", "find_rows"]
