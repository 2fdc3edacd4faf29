"""The one convention for the package's saved models, and small helpers shared by the models.

Every model the package saves is a diffusers model: a subclass of :class:`SavedModel`
(``diffusers.ModelMixin`` + ``diffusers.ConfigMixin``) whose ``__init__`` is decorated with
``@register_to_config`` and takes only JSON-serialisable arguments. ``save_pretrained(folder)``
writes ``config.json`` (the constructor's arguments plus ``_class_name``) and
``diffusion_pytorch_model.safetensors`` (the state dict, bit-exact); ``from_pretrained(folder)``
rebuilds the model from them. Weights are always local: nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import sys

from diffusers import ConfigMixin, ModelMixin
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

_SAID = set()


def say_once(key: str, message: str) -> None:
    """Print ``message`` to stderr the first time ``key`` is seen in this process."""
    if key not in _SAID:
        _SAID.add(key)
        print(message, file=sys.stderr)


def diffusers_load_kwargs() -> dict:
    """Keyword arguments for every ``from_pretrained`` of a diffusers model in the package.

    Without ``accelerate`` diffusers warns on every load that it cannot use ``low_cpu_mem_usage``;
    the package then asks for the plain loader and says so once per process.
    """
    try:
        import accelerate  # noqa: F401
    except ImportError:
        say_once("accelerate", "orster4d: `accelerate` is not installed; diffusers models load without "
                               "low_cpu_mem_usage (more host memory while loading)")
        return {"low_cpu_mem_usage": False}
    return {}


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is an existing file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: required file not found: {path} (weights are never downloaded)")
    return path


def require_dir(path: str, what: str) -> str:
    """Return ``path`` if it is an existing folder, else raise FileNotFoundError naming it and ``what``."""
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: folder not found: {path!r} (weights are never downloaded)")
    return path


class SavedModel(ModelMixin, ConfigMixin):
    """Base of the package's saved models: diffusers' ``ModelMixin`` + ``ConfigMixin``.

    ``from_pretrained`` checks the folder before diffusers reads it (missing files are
    FileNotFoundError naming them, a folder of another class is ValueError) and refuses weights
    that do not match the architecture (missing or unexpected keys).
    """

    config_name = CONFIG_NAME

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs):
        what = cls.__name__
        require_dir(folder, what)
        with open(require_file(os.path.join(folder, CONFIG_NAME), what)) as f:
            name = json.load(f).get("_class_name", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"{folder}: config.json describes a {name}, expected {cls.__name__}")
        weights = os.path.join(folder, WEIGHTS_NAME)
        if not os.path.isfile(weights + ".index.json"):  # else saved in shards (max_shard_size)
            require_file(weights, what)
        kwargs = {**diffusers_load_kwargs(), **kwargs, "output_loading_info": True}
        model, info = super().from_pretrained(folder, **kwargs)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise ValueError(f"{folder}: weights do not match the {cls.__name__} of its config.json: "
                             + "; ".join(f"{k} {list(v)[:3]}" for k, v in bad.items()))
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
