"""Losses of 4D construction (Eq. 18) and the LPIPS network loader (local weights only).

LPIPS (Zhang et al. 2018) needs two sets of weights: the linear calibration layers, which ship
inside the ``lpips`` package, and the ImageNet backbone (torchvision's VGG16 or AlexNet), which
torchvision would download. Nothing is downloaded here: :func:`load_lpips` builds the network with
a random backbone (``pnet_rand=True``) and loads the backbone from a file that must already
exist (an explicit path, or torchvision's file in the torch hub cache).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch

# torchvision's file names for the backbones, as found in <torch hub dir>/checkpoints/
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def load_lpips(net: str = "vgg", weights: Optional[str] = None, device=None) -> Tuple[Optional[torch.nn.Module], str]:
    """``(lpips_module, "")`` when every weight file is present, else ``(None, reason)``.

    Args:
        net: "vgg" or "alex".
        weights: path to the torchvision backbone state dict (e.g. ``vgg16-397923af.pth``); default:
            ``torch.hub.get_dir()/checkpoints/<BACKBONE_FILES[net]>``.
    The module maps two ``[B, 3, H, W]`` images in [-1, 1] to ``[B, 1, 1, 1]`` distances; its
    parameters are frozen.
    """
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    try:
        import lpips
    except ImportError as e:
        return None, f"the lpips package is not installed ({e})"
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    if not linear.is_file():
        return None, f"LPIPS linear-layer weights not found at {linear}"
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    if not path.is_file():
        return None, (f"LPIPS {net} backbone weights not found at {path} (no download is attempted; "
                      f"pass --lpips-weights or place torchvision's {BACKBONE_FILES[net]} there)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return None, f"cannot read LPIPS backbone weights {path} ({type(e).__name__}: {e})"
    with warnings.catch_warnings(), open(os.devnull, "w"):
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    # torchvision's "features.<i>.<param>" live in lpips's "slice<k>.<i>.<param>"
    where = {name.split(".")[1]: name.split(".")[0] for name, _ in model.net.named_parameters()}
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in where:
            mapped[f"{where[parts[1]]}.{parts[1]}.{parts[2]}"] = value
    expected = {name for name, _ in model.net.named_parameters()}
    if set(mapped) != expected:
        return None, f"{path} does not hold torchvision {net} feature weights (missing {sorted(expected - set(mapped))[:3]})"
    model.net.load_state_dict(mapped, strict=True)
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, ""


def lpips_distance(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS per image of ``[..., H, W, 3]`` images in [0, 1] -> ``[...]``."""
    lead = pred.shape[:-3]
    x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2) * 2 - 1
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2) * 2 - 1
    return model(x, y).reshape(lead)


def depth_smoothness(depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Depth smoothness (RegNeRF-style): mean squared difference of neighbouring expected depths,
    weighted by both pixels' alpha. ``depth, alpha [..., H, W, 1]`` -> scalar."""
    d = depth[..., 0]
    a = alpha[..., 0].detach()
    dx = (d[..., :, 1:] - d[..., :, :-1]) ** 2 * (a[..., :, 1:] * a[..., :, :-1])
    dy = (d[..., 1:, :] - d[..., :-1, :]) ** 2 * (a[..., 1:, :] * a[..., :-1, :])
    return dx.mean() + dy.mean()
