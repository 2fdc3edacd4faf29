"""Test set-up shared by every test module.

Without a GPU, Triton kernels run in the interpreter (TRITON_INTERPRET=1), which
must be set before triton is first imported.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device; torch sees none")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_cuda)


@pytest.fixture
def rng_seed():
    """A fresh seed per test (printed on failure), so every run draws new inputs."""
    seed = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    return seed


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny models (avoids oversubscribing CI's two cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
