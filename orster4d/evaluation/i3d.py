"""Inception-I3D (Carreira & Zisserman 2017), the video network FVD's features come from.

:class:`InceptionI3d` is the RGB Inception-v1 inflated to 3D, with TensorFlow "SAME" padding
computed from each input's size, batch norm (eps 1e-3) after every bias-free convolution, and a
1x1x1 convolution to 400 Kinetics logits. Its parameter names are those of the widely used PyTorch
port whose ``i3d_pretrained_400.pt`` the FVD code of VideoGPT, DisCo and Consistent4D loads
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...),
so that file loads with ``strict=True``.

FVD features (:func:`i3d_features`) are the 400 logits averaged over the remaining temporal
positions, as in those implementations; videos are resized to 224x224 and scaled to [-1, 1].
A TorchScript export (e.g. ``i3d_torchscript.pt`` of the StyleGAN-V FVD code) is also accepted: it
is called with ``rescale=False, resize=False, return_features=True`` when its ``forward`` takes
those arguments.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 224
MIN_FRAMES = 9  # three temporal stride-2 stages, then a temporal average pool of 2

# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) of the Inception blocks, in order
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Zero-pads ``x [B, C, T, H, W]`` as TensorFlow's "SAME" (extra padding at the back)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """SAME-padded Conv3d (+ BatchNorm3d, + ReLU)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), relu: bool = True,
                 batch_norm: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated."""

    def __init__(self, cin: int, c: Tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c[5])

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """RGB Inception-I3D: ``[B, 3, T, 224, 224]`` in [-1, 1] -> logits ``[B, num_classes]``
    (averaged over time); ``T >= 9``."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.add_module(name, Mixed(*_MIXED[name]))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.add_module(name, Mixed(*_MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            self.add_module(name, Mixed(*_MIXED[name]))
        self.logits = Unit3D(1024, num_classes, relu=False, batch_norm=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D input must be [B, 3, T >= {MIN_FRAMES}, H, W], got {tuple(x.shape)}")
        for name, module in self.named_children():
            if name == "logits":
                break
            x = module(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # [B, 1024, T', 1, 1] at 224 px
        x = self.logits(x)
        return x.mean(dim=(2, 3, 4))


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


class _TorchScriptI3D(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module
        try:
            args = {a.name for a in module.forward.schema.arguments}
        except AttributeError:
            args = set()
        self.kwargs = ({"rescale": False, "resize": False, "return_features": True}
                       if {"rescale", "resize", "return_features"} <= args else {})

    def forward(self, x):
        return self.module(x, **self.kwargs)


def load_i3d(path, device="cpu") -> nn.Module:
    """Frozen I3D from a state dict of :class:`InceptionI3d` or a TorchScript export."""
    path = Path(path)
    if _is_torchscript(path):
        with warnings.catch_warnings():  # newer torch flags TorchScript as deprecated; exports still load
            warnings.simplefilter("ignore", FutureWarning)
            model = _TorchScriptI3D(torch.jit.load(str(path), map_location="cpu"))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"I3D: cannot read {path} ({type(e).__name__}: {e})") from e
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or "logits.conv3d.weight" not in state:
            raise ValueError(f"I3D: {path} is neither a TorchScript export nor an InceptionI3d state dict "
                             f"(no 'logits.conv3d.weight')")
        model = InceptionI3d(num_classes=state["logits.conv3d.weight"].shape[0])
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"I3D: {path} does not match the InceptionI3d architecture "
                             f"({str(e).splitlines()[0]})") from e
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def i3d_features(model: nn.Module, videos: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """FVD features of ``videos [N, T, H, W, 3]`` in [0, 1] -> ``[N, D]`` float64 (``T >= 9``)."""
    if videos.dim() != 5 or videos.shape[-1] != 3:
        raise ValueError(f"videos must be [N, T, H, W, 3], got {tuple(videos.shape)}")
    if videos.shape[1] < MIN_FRAMES:
        raise ValueError(f"FVD: I3D needs clips of at least {MIN_FRAMES} frames, got {videos.shape[1]}")
    dev = next(iter(model.parameters()), torch.empty(0)).device
    out = []
    for s in range(0, videos.shape[0], batch):
        v = videos[s:s + batch].to(dev, torch.float32)
        n, t, h, w, _ = v.shape
        x = v.reshape(n * t, h, w, 3).permute(0, 3, 1, 2)
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=min(h, w) > INPUT_SIZE)
        x = x.reshape(n, t, 3, INPUT_SIZE, INPUT_SIZE).permute(0, 2, 1, 3, 4) * 2 - 1
        out.append(model(x).reshape(n, -1).double().cpu())
    return torch.cat(out)
