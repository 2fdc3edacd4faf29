"""A small ``save_pretrained`` / ``from_pretrained`` base for the package's own modules.

A folder holds ``config.json`` (the constructor's keyword arguments plus ``_class_name``) and
``model.safetensors`` (the state dict), like a diffusers model folder.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

import torch
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is an existing file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: required file not found: {path} (weights are never downloaded)")
    return path


def require_dir(path: str, what: str) -> str:
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: folder not found: {path!r} (weights are never downloaded)")
    return path


class PretrainedModule(nn.Module):
    """nn.Module whose constructor takes only JSON-serialisable keyword arguments.

    Subclasses call ``self.register_config(**kwargs)`` in ``__init__``; ``config`` is the dict.
    """

    config: Dict[str, Any]

    def register_config(self, **kwargs: Any) -> None:
        self.config = dict(kwargs)

    def save_pretrained(self, folder: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, CONFIG_NAME), "w") as f:
            json.dump({"_class_name": type(self).__name__, **self.config}, f, indent=2)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(folder, WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str, map_location: str = "cpu"):
        from safetensors.torch import load_file

        require_dir(folder, cls.__name__)
        with open(require_file(os.path.join(folder, CONFIG_NAME), cls.__name__)) as f:
            cfg = json.load(f)
        name = cfg.pop("_class_name", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"{folder}: config.json describes a {name}, expected {cls.__name__}")
        model = cls(**cfg)
        state = load_file(require_file(os.path.join(folder, WEIGHTS_NAME), cls.__name__), device=map_location)
        model.load_state_dict(state)
        return model


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with no trainable parameters; returns it."""
    module.eval()
    module.requires_grad_(False)
    return module


def module_by_name(root: nn.Module, name: str, what: str) -> nn.Module:
    """``root.get_submodule(name)`` with an error that names the block and the model."""
    try:
        return root.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{what}: block {name!r} does not exist in {type(root).__name__}") from None


def to_device_dtype(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(device=like.device, dtype=like.dtype)
