"""The README and the tutorials run as written, so the documentation cannot go stale.

docs/tutorial.md's commands run in order, as a newcomer types them, on a slice of MNIST;
docs/tutorial-python.md's code runs as one Python session; the README starts with the two
commands CI runs, and its tour is the tutorial's.
"""

import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TUTORIAL = ROOT / "docs" / "tutorial.md"
PYTHON_TUTORIAL = ROOT / "docs" / "tutorial-python.md"
MNISTLAB = str(Path(sys.executable).with_name("mnistlab"))

# What the test adds to a tutorial command so that it runs in seconds on a slice of MNIST, and
# serves on a free port; the commands as written train and score on all of it.
TINY = {
    "train": ["--train-limit", "2000", "--test-limit", "500"],
    "evaluate": ["--limit", "500"],
    "report": ["--limit", "500", "--sweep-images", "100"],
    "serve": ["--port", "0"],
}
# The install line: the environment this runs in is the one it makes (.ci/run makes it).
INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[tensorflow]"'


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _commands(path: Path) -> list[str]:
    """The commands of a page's `sh` blocks, one per line, without their comments."""
    lines = (line for block in _blocks(path, "sh") for line in block.splitlines())
    return [shlex.join(words) for words in (shlex.split(line, comments=True) for line in lines) if words]


def test_readme_starts_with_the_two_commands():
    first, second, *_ = _blocks(README, "sh")
    assert first.strip().startswith(INSTALL)
    assert first.strip().endswith("&& mnistlab train")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert second.strip() == ci, "the README's test command is what .ci/run runs"


def test_readme_tour_is_the_tutorials():
    readme, tutorial = _commands(README)[2:], _commands(TUTORIAL)
    assert len(readme) >= 5, "the README lost its tour"
    assert [c for c in readme if c not in tutorial] == []


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert len(local) >= 5, "the README lost its links to the docs"
    assert [link for link in local if not (ROOT / link).exists()] == []


def _start_server(argv: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    """Start `mnistlab serve ...`; its process and URL once /healthz answers (the model loaded)."""
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + 300  # a Keras model on two busy cores
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, "mnistlab serve ended before it served"
            continue
        if " at http" in line:
            url = line.split(" at ", 1)[1].split()[0]
            assert httpx.get(url + "healthz", timeout=60).json() == {"status": "ok"}
            return process, url
    raise AssertionError("mnistlab serve printed no URL in 300 s")


def _shown(pattern: str, text: str) -> list[tuple[str, ...]]:
    return re.findall(pattern, text, flags=re.M)


def test_tutorial_commands_run(mnist, tmp_path):
    commands = _commands(TUTORIAL)
    assert commands[0] == shlex.join(shlex.split(INSTALL)), "the tutorial starts with the install"
    assert len(commands) >= 8, "the tutorial lost its commands"
    outputs, server = {}, None
    try:
        for command in commands[1:]:
            words = shlex.split(command)
            assert words[0] == "mnistlab", f"the tutorial runs {command!r}; teach this test to run it"
            argv = [MNISTLAB, *words[1:], *TINY.get(words[1], [])]
            if words[1] == "serve":
                server, url = _start_server(argv, tmp_path)
                assert "<canvas" in httpx.get(url, timeout=60).text  # the drawing page
                continue
            done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
        # What the steps say they leave behind.
        run = tmp_path / "runs" / "first"
        assert {"model.keras", "config.toml", "history.csv", "metrics.json", "report.html"} <= {
            p.name for p in run.iterdir()}
        assert "run folder runs/first" in outputs["mnistlab train --out runs/first"].splitlines()
        assert server is not None, "the tutorial serves the run"
        sample = next((tmp_path / "samples").glob("*.png"))
        with sample.open("rb") as image:
            answer = httpx.post(url + "v1/predict", files={"file": (sample.name, image)}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            finally:
                server.kill()

    # The shipped reader's answers are the page's: each image's digit and status, the number read.
    page = TUTORIAL.read_text(encoding="utf-8")
    row = r"^(samples/\S+)\s+(\d)\s+[\d.]+%\s+(ok|unsure)\b"
    shown = _shown(row, page)
    assert len(shown) >= 4
    assert _shown(row, outputs["mnistlab predict samples/"]) == shown
    number = r"^(\d+)  \((ok|unsure),"
    reading = next(c for c in outputs if c.startswith("mnistlab read "))
    assert _shown(number, outputs[reading]) == _shown(number, page)


def test_python_tutorial_runs(mnist, tmp_path, monkeypatch):
    blocks = _blocks(PYTHON_TUTORIAL, "python")
    assert len(blocks) >= 4, "the Python tutorial lost its code"
    monkeypatch.chdir(tmp_path)  # it saves files: keep them out of the checkout
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(PYTHON_TUTORIAL), "exec"), namespace)  # noqa: S102 - our own docs
    assert (tmp_path / "recipe.keras").is_file()
    assert (tmp_path / "runs" / "recipe-linear" / "metrics.json").is_file()
