"""Local weight files of the evaluation networks (CLIP, LPIPS backbone, I3D): found, never downloaded.

A weight path comes from the command line or from the folder named by ``$ORSTER4D_WEIGHTS``,
laid out as::

    $ORSTER4D_WEIGHTS/
        clip/                      open_clip folder: open_clip_config.json + open_clip_model.safetensors
                                   (the layout the training stages read), or clip/open_clip_model.bin
                                   with the architecture named by --clip-model (e.g. ViT-B-32)
        lpips/vgg16-397923af.pth   torchvision VGG16 state dict (alexnet-owt-7be5be79.pth for --lpips-net alex)
        i3d/i3d_pretrained_400.pt  Inception-I3D state dict (400 Kinetics classes), or
        i3d/i3d_torchscript.pt     a TorchScript export of the same network

A missing file raises :class:`MissingWeights` naming the metric, the file and every place that was
searched; the caller may turn it into an absent metric (``--skip-missing``) but never into a number.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

import torch

ENV = "ORSTER4D_WEIGHTS"

# metric family -> (what, candidate paths under $ORSTER4D_WEIGHTS, command-line flag)
CLIP_CANDIDATES = ("clip", "clip/open_clip_model.safetensors", "clip/open_clip_model.bin",
                   "clip/open_clip_pytorch_model.bin")
I3D_CANDIDATES = ("i3d/i3d_pretrained_400.pt", "i3d/i3d_torchscript.pt")


def lpips_candidates(net: str) -> tuple:
    from orster4d.perceptual import BACKBONE_FILES

    return (f"lpips/{BACKBONE_FILES[net]}",)


class MissingWeights(FileNotFoundError):
    """A metric's weight file is absent; ``reason`` is the message (metric, file, where looked)."""

    def __init__(self, metric: str, reason: str):
        super().__init__(f"{metric}: {reason}")
        self.metric = metric
        self.reason = reason


def locate(metric: str, explicit: Optional[str], candidates: Sequence[str], flag: str,
           folder_ok: bool = False) -> Path:
    """The weight path for ``metric``: ``explicit`` if given (it must exist), else the first of
    ``candidates`` that exists under ``$ORSTER4D_WEIGHTS``. Raises :class:`MissingWeights`."""
    def usable(p: Path) -> bool:
        return p.is_file() or (folder_ok and p.is_dir())

    if explicit:
        p = Path(explicit).expanduser()
        if usable(p):
            return p
        raise MissingWeights(metric, f"weights not found at {p} (given by {flag}; no download is attempted)")
    root = os.environ.get(ENV)
    looked: List[str] = []
    if root:
        for c in candidates:
            p = Path(root).expanduser() / c
            if usable(p):
                return p
            looked.append(str(p))
        where = f"looked for {', '.join(looked)} (from ${ENV})"
    else:
        where = f"no {flag} given and ${ENV} is not set"
    raise MissingWeights(metric, f"weights not found: {where}; pass {flag} PATH or set ${ENV} to a folder "
                                 f"holding {candidates[0]} (no download is attempted)")


# ------------------------------------------------------------------------------------------ loaders
def load_clip(path: Path, model_name: Optional[str] = None, device="cpu"):
    """Frozen open_clip ``CLIP`` from a folder (training's layout) or a checkpoint file of the
    built-in architecture ``model_name`` (an open_clip config name such as ``ViT-B-32``)."""
    path = Path(path)
    if path.is_dir():
        from orster4d.generation.models.conditions import load_clip as load_clip_folder

        return load_clip_folder(str(path), device)
    import open_clip
    from open_clip.model import CLIP

    if not model_name:
        raise ValueError(f"CLIP: {path} is a single checkpoint file; name its architecture with --clip-model "
                         f"(an open_clip config such as ViT-B-32), or pass a folder with open_clip_config.json")
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"CLIP: unknown open_clip architecture {model_name!r} (--clip-model)")
    if cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ValueError(f"CLIP: architecture {model_name!r} needs a Hugging Face text tower, which would be "
                         f"downloaded; use an architecture with open_clip's own text transformer")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    model = CLIP(**{k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")})
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"CLIP: {path} does not hold {model_name} weights ({str(e).splitlines()[0]})") from e
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_lpips(path: Path, net: str = "vgg", device="cpu") -> torch.nn.Module:
    """Frozen LPIPS with the torchvision ``net`` backbone from ``path`` (the package's loader)."""
    from orster4d.perceptual import try_load_lpips

    model, reason = try_load_lpips(str(path), net, device)
    if model is None:
        raise MissingWeights("LPIPS", reason)
    return model


def lpips_distance(model, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS per image of ``[..., H, W, 3]`` images in [0, 1] -> ``[...]``."""
    from orster4d.perceptual import lpips_distance as distance

    return distance(model, pred, target)
