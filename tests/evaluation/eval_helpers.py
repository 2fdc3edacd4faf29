"""Tiny stand-ins for the evaluation networks, saved to files and loaded through the real paths.

None of these is pretrained: they exercise the loading and scoring code only.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn


class TinyVideoNet(nn.Module):
    """``[B, 3, T, H, W]`` -> ``[B, 8]``: a strided Conv3d, ReLU, global average, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, stride=(2, 8, 8))
        self.fc = nn.Linear(6, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def save_tiny_i3d_torchscript(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TinyVideoNet().eval()), str(path))
    return path


def save_alexnet_features(path: Path, seed: int = 0) -> Path:
    """A random torchvision AlexNet's ``features.*`` entries (all LPIPS reads), as a state dict file."""
    import torchvision

    torch.manual_seed(seed)
    sd = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def make_weights_folder(root: Path, seed: int = 0) -> Path:
    """``root`` in the ``$ORSTER4D_WEIGHTS`` layout: tiny CLIP, random AlexNet features, tiny I3D export."""
    from orster4d.generation.training.tiny_assets import make_tiny_clip

    make_tiny_clip(os.fspath(root / "clip"), seed)
    save_alexnet_features(root / "lpips" / "alexnet-owt-7be5be79.pth", seed)
    save_tiny_i3d_torchscript(root / "i3d" / "i3d_torchscript.pt", seed)
    return root
