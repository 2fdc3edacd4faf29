"""LPIPS (Zhang et al. 2018) from local weight files only; nothing is ever downloaded.

An LPIPS network is an ImageNet backbone (torchvision's VGG16 or AlexNet features) plus small
linear calibration layers. Two kinds of file are accepted:

* a full LPIPS state dict (backbone and linear layers, as ``lpips.LPIPS().state_dict()``), named
  ``lpips_<net>.pth`` when it sits in a folder;
* torchvision's backbone state dict (``vgg16-397923af.pth``, ``alexnet-owt-7be5be79.pth``); the
  linear layers then come from the ``lpips`` package, which ships them.

Where :func:`load_lpips` looks, for ``weights``:

* a file: that file;
* a folder: ``<folder>/lpips_<net>.pth``, then ``<folder>/<torchvision backbone file>``;
* None: ``<torch hub dir>/checkpoints/<torchvision backbone file>`` (torchvision's cache).

:func:`load_lpips` raises when no file is found (naming every place it looked) or a file does not
hold the expected weights; :func:`try_load_lpips` returns ``(None, reason)`` instead, for an
optional loss term. The module maps two ``[B, 3, H, W]`` images in [-1, 1] to ``[B, 1, 1, 1]``
distances; :func:`lpips_distance` takes ``[..., H, W, 3]`` images in [0, 1].
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import torch

__all__ = ["BACKBONE_FILES", "load_lpips", "try_load_lpips", "lpips_distance", "lpips_candidates"]

# torchvision's file names for the backbones, as found in <torch hub dir>/checkpoints/
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def _check_net(net: str) -> None:
    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")


def lpips_candidates(weights: Optional[str], net: str) -> List[Path]:
    """The files :func:`load_lpips` tries, in order (see the module docstring)."""
    _check_net(net)
    if weights is None or str(weights) == "":
        return [Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]]
    p = Path(weights)
    if p.is_dir():
        return [p / f"lpips_{net}.pth", p / BACKBONE_FILES[net]]
    return [p]


def load_lpips(weights: Optional[str] = None, net: str = "alex", device=None) -> torch.nn.Module:
    """A frozen LPIPS(``net``) on ``device`` from local files (see the module docstring).

    Raises:
        ValueError: ``net`` is not "vgg" or "alex", or the file holds other weights.
        FileNotFoundError: no weight file; the message names every path tried.
        ImportError: the ``lpips`` package is missing.
    """
    tried = lpips_candidates(weights, net)
    path = next((p for p in tried if p.is_file()), None)
    if path is None:
        where = " and ".join(str(p) for p in tried)
        raise FileNotFoundError(f"LPIPS {net} weights not found: looked for {where} (nothing is downloaded; pass "
                                f"a full LPIPS state dict or torchvision's {BACKBONE_FILES[net]})")
    import lpips

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read LPIPS weights ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    full = any(k.startswith("lin") or k.startswith("net.") for k in state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=not full, net=net, pnet_rand=True, verbose=False)
    if full:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("scaling_layer.")]  # constant buffers
        if missing or unexpected:
            raise ValueError(f"{path} is not an LPIPS {net} state dict (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    else:
        linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        if not linear.is_file():  # pretrained=True above reads it; say so if the package lacks it
            raise FileNotFoundError(f"LPIPS linear-layer weights not found at {linear}")
        # torchvision's "features.<i>.<param>" live in lpips's "slice<k>.<i>.<param>"
        where = {name.split(".")[1]: name.split(".")[0] for name, _ in model.net.named_parameters()}
        mapped = {}
        for key, value in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "features" and parts[1] in where:
                mapped[f"{where[parts[1]]}.{parts[1]}.{parts[2]}"] = value
        expected = {name for name, _ in model.net.named_parameters()}
        if set(mapped) != expected:
            raise ValueError(f"{path} does not hold torchvision {net} feature weights "
                             f"(missing {sorted(expected - set(mapped))[:3]})")
        model.net.load_state_dict(mapped, strict=True)
    model = model.eval().to(device)
    model.requires_grad_(False)
    return model


def try_load_lpips(weights: Optional[str] = None, net: str = "alex",
                   device=None) -> Tuple[Optional[torch.nn.Module], str]:
    """``(module, "")``, or ``(None, reason)`` when a file is missing or wrong or ``lpips`` is not
    installed (for an optional loss term). A bad ``net`` still raises ValueError."""
    _check_net(net)
    try:
        return load_lpips(weights, net, device), ""
    except ImportError as e:
        return None, f"the lpips package is not installed ({e})"
    except (FileNotFoundError, ValueError) as e:
        return None, str(e)


def lpips_distance(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS per image of ``[..., H, W, 3]`` images in [0, 1] -> ``[...]``."""
    lead = pred.shape[:-3]
    x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2) * 2 - 1
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2) * 2 - 1
    return model(x, y).reshape(lead)
