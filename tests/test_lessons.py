"""The server's lessons (mnistlab.serve.lessons): POST /v1/finetune learns the stored drawings in
a child process and switches the served model with no request failing; a second lesson while
one runs is a 409; a lesson killed midway leaves the parent serving; --no-teach has no routes."""

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from mnistlab.personal import MIN_SAMPLES, personal_root, read_progress
from mnistlab.predict import load_predictor
from mnistlab.serve import create_app, running
from mnistlab.serve.corrections import CorrectionStore

DEADLINE_S = 300  # for a lesson: under a minute here, far more on a loaded CI machine
# Requests in flight at once during the switch, each sent as the one before it is answered: below
# the server's max_pending (32), so none is refused as too many, however slow a loaded machine is.
CONCURRENCY = 16


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _drawing(digit_pixels):
    """MNIST pixels as the page sends a drawing: dark ink on white, 280 px."""
    return _png(255 - np.asarray(Image.fromarray(digit_pixels).resize((280, 280), Image.BILINEAR)))


@pytest.fixture
def parent(onnx_run, mnist, tmp_path):
    """A fresh copy of conftest's onnx_run with four drawings of each digit stored."""
    run = tmp_path / "run"
    shutil.copytree(onnx_run, run)
    store = CorrectionStore(run / "corrections", 10_000, 10**9)
    for digit in range(10):
        for index in np.flatnonzero(mnist.y_test == digit)[:4]:
            store.add(_drawing(mnist.x_test[index]), digit)
    return run


def _serve(run, **options):
    """In this process (a thread): for the tests that need no load."""
    app = create_app(load_predictor(run), run / "corrections", run_name=run.name, **options)
    return running(app)


@contextlib.contextmanager
def serve_command(*argv):
    """`mnistlab ARGV... --port 0` (a serve command) in its own process, as a person starts it;
    yields its URL and start-up line. Load from this process then competes with the server for
    cores, not for one interpreter. tests/test_backends.py serves with it too."""
    process = subprocess.Popen([sys.executable, "-m", "mnistlab.cli", *argv, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert " at http" in line, (line, process.stderr.read() if process.poll() is not None else "")
        yield line.split(" at ", 1)[1].split()[0], line
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        finally:
            process.kill()


def _until(client, condition, deadline_s=DEADLINE_S):
    """GET /v1/finetune until `condition(answer)` holds; the answer."""
    deadline = time.monotonic() + deadline_s
    while True:
        answer = client.get("/v1/finetune").json()
        if condition(answer):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


class Load:
    """POST /v1/predict from CONCURRENCY clients at once, each sending its next request when its
    last is answered, from a thread until stopped: each answer's status (-1: a 200 without a
    digit) and its start and end times."""

    def __init__(self, url, image):
        self.url, self.image, self.results = url, image, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _one(self, client):
        start = time.monotonic()
        try:
            response = await client.post("v1/predict", files={"file": ("d.png", self.image)})
            status = response.status_code
            if status == 200 and response.json()["predictions"][0]["digit"] is None:
                status = -1
        except httpx.HTTPError as e:
            status = type(e).__name__
        self.results.append((status, start, time.monotonic()))

    async def _client(self, client):
        while not self.stop.is_set():
            await self._one(client)

    async def _run(self):
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            await asyncio.gather(*(self._client(client) for _ in range(CONCURRENCY)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)


def test_a_lesson_switches_the_model_with_no_request_failing(parent, mnist):
    model_before = (parent / "model.keras").read_bytes()
    with serve_command("serve", str(parent)) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/v1/model").json()["teach"] == {"available": True, "reason": None}
        idle = client.get("/v1/finetune").json()
        assert idle["state"] == "idle" and idle["samples"] == [4] * 10 and idle["min_samples"] == MIN_SAMPLES
        started = client.post("/v1/finetune")
        assert started.status_code == 202 and started.json()["state"] == "running"
        second = client.post("/v1/finetune")
        assert second.status_code == 409 and "running already" in second.json()["error"]
        seen = _until(client, lambda a: a.get("phase") == "learning" or a["state"] != "running")
        assert seen["state"] == "running" and 0 < seen["progress"] < 1
        # Load from the end of learning (checking MNIST and exporting take seconds) to a second
        # past the switch.
        late = _until(client, lambda a: a.get("phase") in ("checking", "exporting", "done") or a["state"] != "running")
        assert late.get("phase") in ("checking", "exporting"), late
        with Load(url, _png(mnist.x_test[0])) as load:
            done = _until(client, lambda a: a["state"] != "running")
            switched = time.monotonic()
            time.sleep(1.0)
        assert done["state"] == "done", done
        result = done["result"]
        assert result["held_out"] == 10 and result["learnt_from"] == 30
        assert result["before"]["yours"] is not None and 0 < result["after"]["mnist"] <= 1
        assert client.get("/v1/model").json()["run"] == f"run/personal/{result['lesson']}"
        failed = [r for r in load.results if r[0] != 200]
        seconds = max(end for _, _, end in load.results) - min(start for _, start, _ in load.results)
        print(f"\n{len(load.results)} requests in {seconds:.1f} s ({len(load.results) / seconds:.0f}/s) "
              f"across the switch; {len(failed)} failed")
        assert not failed
        # The load spanned the switch: answered before it, and sent after it.
        assert any(end < switched for _, _, end in load.results)
        assert any(start > switched for _, start, _ in load.results)
        assert client.post("/v1/predict", files={"file": ("d.png", _drawing(mnist.x_test[0]))}).status_code == 200
    assert (parent / "model.keras").read_bytes() == model_before
    assert (personal_root(parent) / result["lesson"] / "model.onnx").is_file()

    # Started again, the server serves the lesson and says so; --parent serves the run itself.
    with serve_command("serve", str(parent)) as (url, line):
        assert "newest personal model" in line and result["lesson"] in line
        assert httpx.get(url + "v1/model").json()["run"] == f"run/personal/{result['lesson']}"
    with serve_command("serve", str(parent), "--parent", "--no-teach") as (url, line):
        model = httpx.get(url + "v1/model").json()
        assert model["run"] == "run" and "personal" not in line
        assert model["teach"]["available"] is False and "--no-teach" in model["teach"]["reason"]
        assert httpx.post(url + "v1/finetune").status_code == 404


def _lesson_process():
    """The lesson's process: this process's child running `mnistlab.cli teach`."""
    for child in psutil.Process().children(recursive=True):
        if "teach" in child.cmdline():
            return child
    return None


def test_a_killed_lesson_leaves_the_parent_serving(parent, mnist):
    with serve_command("serve", str(parent)) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/finetune").status_code == 202
        _until(client, lambda a: a.get("phase") == "learning")
        os.kill(_lesson_process().pid, signal.SIGKILL)
        failed = _until(client, lambda a: a["state"] != "running")
        assert failed["state"] == "failed" and "signal 9" in failed["error"], failed
        assert client.get("/v1/model").json()["run"] == "run"
        answer = client.post("/v1/predict", files={"file": ("d.png", _drawing(mnist.x_test[0]))})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["digit"] == mnist.y_test[0]
        # The half-made lesson is never served; a new lesson may start.
        lessons = [p for p in personal_root(parent).iterdir() if p.is_dir()]
        assert len(lessons) == 1 and not (lessons[0] / "model.onnx").exists()
        assert read_progress(lessons[0])["phase"] == "learning"
        assert client.post("/v1/finetune").status_code == 202
        _until(client, lambda a: a["state"] != "running")


def test_a_lesson_that_fails_says_why_and_the_model_goes_on(parent, mnist):
    broken = next((parent / "corrections" / "3").iterdir())
    broken.write_bytes(b"not a png")  # as a disk error or a hand-edited folder leaves it
    with _serve(parent, teach_run=parent) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/finetune").status_code == 202
        failed = _until(client, lambda a: a["state"] != "running")
        assert failed["state"] == "failed" and broken.name in failed["error"], failed
        assert "\n" not in failed["error"] and "Traceback" not in failed["error"]
        assert client.get("/v1/model").json()["run"] == "run"
        answer = client.post("/v1/predict", files={"file": ("d.png", _drawing(mnist.x_test[0]))})
        assert answer.json()["predictions"][0]["digit"] == mnist.y_test[0]


def test_a_lesson_needs_enough_drawings(onnx_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(onnx_run, run)
    with _serve(run, teach_run=run) as url, httpx.Client(base_url=url, timeout=60) as client:
        refused = client.post("/v1/finetune")
        assert refused.status_code == 400 and "needs 10 drawings" in refused.json()["error"]
        assert client.get("/v1/finetune").json()["state"] == "idle"


def test_without_teach_there_are_no_lesson_routes(onnx_run):
    with _serve(onnx_run, no_teach_reason="turned off") as url, httpx.Client(base_url=url) as client:
        assert client.get("/v1/model").json()["teach"] == {"available": False, "reason": "turned off"}
        for method in ("get", "post"):
            answer = getattr(client, method)("/v1/finetune")
            assert answer.status_code == 404 and "no such route" in answer.json()["error"]
