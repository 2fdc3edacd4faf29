"""Device selection: auto, explicit devices and clear errors."""
import pytest
import torch

from orster4d.devices import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want and resolve_device(None).type == want


def test_unknown_and_unavailable_devices_are_named():
    with pytest.raises(ValueError, match="gpu0"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="cuda:99"):
        resolve_device("cuda:99")
