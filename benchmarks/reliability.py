"""Reliability: training that resumes after kills, an HTTP API fuzzed with 10,000 malformed inputs,
a steady load on it, hostile connections held against it, and files that explode in memory.

    python benchmarks/reliability.py [RUN] [--only resume,fuzz,load,connections,bombs] [--fuzz 10000]
        [--rate 200] [--seconds 60] [--idle 100] [--drip 100] [--hold-seconds 30]

resume: benchmarks/_kill_resume.py kills training at random moments and resumes it, TRIALS times;
    how many resumes finished, the epochs each lost, and the final accuracy against a run that
    was never interrupted.
fuzz: N requests, seeded, to a real server (uvicorn on loopback in its own process, as `mnistlab
    serve` runs it, over RUN's model.onnx when it has one, else its Keras model), one after
    another: MNIST test digits drawn 280 px wide as PNG, JPEG, GIF, WebP, TIFF and BMP, damaged
    (bit flips, cuts, header bytes, insertions); random bytes; valid images of odd shapes; JSON
    bodies of random structure, base64 or not; multipart bodies with damaged headers and
    boundaries; other content types; empty and oversized bodies; broken HTTP. Counts 2xx / 4xx /
    5xx / connection errors per kind, 4xx answers without a JSON `error`, the tracebacks the
    server logged, and whether its process is still alive. Target: no 5xx, no crash.
load: valid drawings at a fixed rate for S seconds (open loop: request k leaves at k/rate from a
    pool of keep-alive clients), errors, latency, and the server process's RSS memory before,
    during and after. Target: no errors, flat memory.
connections: benchmarks/_connections.py holds IDLE silent sockets and DRIP sockets sending one
    header byte a second (each reopened a second after the server closes it) while one client
    posts drawings for HOLD seconds: requests answered, errors, latency. Target: every normal
    request answered with 200 (issue 15: 200 connections held).
bombs: benchmarks/_bombs.py builds files that unpack to 2 GB (IDX gzip, npz, mnist.npz in the
    cache and via --data-path, model.keras members) and a FIFO as an image, and feeds each to the
    CLI in its own process: exit status, the one error line, peak RSS. Target: each refused
    (exit 2, one line) under 1 GB.

Without RUN, a tiny run (`fast`, 1 epoch on 6,000 images) is trained first into a temporary
folder. Prints the machine and versions, a line or table per part, then one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import io
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.runs import RunDir  # noqa: E402

PARTS = ("resume", "fuzz", "load", "connections", "bombs")
ENDPOINTS = ("/v1/predict", "/v1/read", "/v1/corrections")
# Share of each kind of fuzzed request; they sum to 1.
KINDS = {
    "damaged image": 0.33,
    "valid image": 0.05,
    "random bytes": 0.10,
    "odd shape": 0.05,
    "json": 0.23,
    "damaged multipart": 0.10,
    "content type": 0.06,
    "empty body": 0.03,
    "deep json": 0.02,
    "broken http": 0.025,
    "oversized body": 0.005,
}


# -- the server, in its own process ----------------------------------------------------------


def server_main(run: str, runtime: str, corrections: str) -> None:
    """The child process: the app `mnistlab serve` runs, with the runtime forced."""
    from mnistlab.predict import Predictor
    from mnistlab.serve import bind, build_server, create_app, url_of

    if runtime == "onnx":
        predictor = Predictor.from_onnx(RunDir(Path(run)).onnx)
    else:
        predictor = Predictor.from_run(run)
    app = create_app(predictor, corrections, run_name=Path(run).name, runtime=runtime)
    sock = bind("127.0.0.1", 0)
    print(url_of(sock), flush=True)
    build_server(app).run(sockets=[sock])


class Server:
    """`server_main` in a child process; its stderr (uvicorn's log) goes to a file."""

    def __init__(self, run: str, runtime: str, workdir: Path):
        self.log = workdir / "server.log"
        self._log = open(self.log, "w")
        self.child = subprocess.Popen(
            [sys.executable, __file__, "--server", runtime, run, str(workdir / "corrections")],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        self.url = self.child.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the {runtime} server did not start; see {self.log}")
        address = urllib.parse.urlparse(self.url)
        self.host, self.port = address.hostname, address.port

    def alive(self) -> bool:
        return self.child.poll() is None

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def rss_mb(self) -> float:
        import psutil

        return round(psutil.Process(self.child.pid).memory_info().rss / 2**20, 1)

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        self.child.terminate()
        self.child.wait(timeout=30)
        self._log.close()


# -- inputs ----------------------------------------------------------------------------------


def drawings(count: int) -> list[np.ndarray]:
    """MNIST test digits as the page draws them: 280x280, dark strokes on white (uint8)."""
    from PIL import Image

    from mnistlab.data import DataError, default_cache_dir, load_mnist

    try:
        digits = load_mnist(cache_dir=default_cache_dir(), offline=True, progress=False).x_test[:count]
    except DataError:  # no MNIST cache here: rings of random size stand in
        rows, cols = np.mgrid[:28, :28]
        rng = np.random.default_rng(0)
        digits = [np.where(np.abs(np.hypot(rows - 14, cols - 14) - rng.uniform(4, 9)) < 1.5, 255, 0).astype(np.uint8)
                  for _ in range(count)]
    return [255 - np.asarray(Image.fromarray(d).resize((280, 280), Image.BILINEAR)) for d in digits]


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def valid_files(pictures: list[np.ndarray]) -> list[bytes]:
    """Each drawing in one format or flavour, in turn."""
    flavours = [
        ("PNG", {}), ("JPEG", {"quality": 75}), ("JPEG", {"quality": 90, "progressive": True}), ("GIF", {}),
        ("WEBP", {}), ("WEBP", {"lossless": True}), ("TIFF", {"compression": "tiff_lzw"}), ("BMP", {}),
    ]
    files = []
    for k, pixels in enumerate(pictures):
        fmt, options = flavours[k % len(flavours)]
        files.append(encode(pixels, fmt, **options))
    files.append(encode(255 - pictures[0][::10, ::10], "PNG"))  # a 28x28 digit as MNIST stores it
    return files


def damage(rng: np.random.Generator, data: bytes, near_start: int | None = None) -> bytes:
    """Bit flips, cuts, overwritten header bytes, insertions, deletions: one to four of them."""
    out = bytearray(data)
    for _ in range(rng.integers(1, 5)):
        if not out:
            break
        end = len(out) if near_start is None else min(len(out), near_start)
        at = int(rng.integers(0, end))
        match rng.integers(0, 5):
            case 0:
                out[at] ^= 1 << int(rng.integers(0, 8))
            case 1:
                del out[at:]
            case 2:
                out[at % min(64, len(out))] = int(rng.integers(0, 256))
            case 3:
                out[at:at] = rng.bytes(int(rng.integers(1, 32)))
            case 4:
                del out[at : at + int(rng.integers(1, 64))]
    return bytes(out)


def odd_shape(rng: np.random.Generator) -> bytes:
    """A valid PNG or JPEG of 1..3000 px a side (at most 1 Mpx): noise, blank, stripes or a blob."""
    height, width = (int(v) for v in np.exp(rng.uniform(0, np.log(3000), 2)))
    width = max(1, min(width, 1_000_000 // height))
    rows, cols = np.mgrid[:height, :width]
    pattern = rng.integers(0, 4)
    if pattern == 0:
        pixels = rng.integers(0, 256, (height, width))
    elif pattern == 1:
        pixels = np.full((height, width), rng.integers(0, 256))
    elif pattern == 2:
        pixels = ((cols // max(1, width // 7)) % 2) * 255
    else:
        pixels = np.where(np.hypot(rows - height / 2, cols - width / 2) < min(height, width) / 3, 0, 255)
    pixels = pixels.astype(np.uint8)
    return encode(pixels, "PNG") if rng.random() < 0.7 or min(height, width) < 2 else encode(pixels, "JPEG")


def json_value(rng: np.random.Generator, images: list[bytes], depth: int = 0) -> Any:
    """A random JSON value: scalars, base64 of images or of nothing, lists and objects."""
    choice = rng.integers(0, 11 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return bool(rng.integers(0, 2))
    if choice == 2:
        if rng.random() < 0.8:
            return int(rng.integers(-(2**62), 2**62))
        return float(rng.normal() * 10.0 ** rng.integers(-5, 300))
    if choice == 3:
        return "".join(chr(int(c)) for c in rng.integers(1, 0x2FF, rng.integers(0, 20)))
    if choice in (4, 5):
        return base64.b64encode(images[rng.integers(len(images))]).decode()
    if choice == 6:
        return "data:image/png;base64," + base64.b64encode(images[rng.integers(len(images))]).decode()
    if choice == 7:
        return base64.b64encode(rng.bytes(int(rng.integers(0, 300)))).decode()[: int(rng.integers(0, 400))] + "=*!"[
            rng.integers(0, 3)] * int(rng.integers(0, 3))
    if choice == 8:
        return ["3", 3, "10", -1, 3.5, "", " 7 ", "seven", "٣"][rng.integers(0, 9)]
    if choice == 9:
        return [json_value(rng, images, depth + 1) for _ in range(rng.integers(0, 5))]
    keys = ["image", "images", "label", "file", "", "imagé"]
    return {keys[rng.integers(len(keys))]: json_value(rng, images, depth + 1) for _ in range(rng.integers(0, 4))}


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str], boundary: str) -> bytes:
    body = b""
    for name, filename, data in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return body + f"--{boundary}--\r\n".encode()


def fuzz_request(rng: np.random.Generator, kind: str, images: list[bytes], shapes: list[bytes]) -> dict[str, Any]:
    """One request of a kind: {"path", "body", "content_type"} or, for broken HTTP, {"raw"}."""
    path = ENDPOINTS[rng.choice(3, p=[0.7, 0.15, 0.15])]
    label = ["3", "0", "9", "10", "-1", "x", " 5 ", ""][rng.integers(0, 8)] if rng.random() < 0.9 else None
    fields = {"label": label} if label is not None and path == "/v1/corrections" else {}
    boundary = f"fuzz{rng.integers(1 << 30)}"

    def as_file(data: bytes) -> dict[str, Any]:
        count = 1 if rng.random() < 0.85 else int(rng.integers(0, 20))
        name = "file" if count == 1 and rng.random() < 0.8 else ["files", "file", "upload"][rng.integers(0, 3)]
        filename = ["drawing.png", "", "../../etc/x.png", "\u00e9\u4e2d.jpg", "a\\b.gif"][rng.integers(0, 5)]
        return {"path": path, "body": multipart([(name, filename, data)] * count, fields, boundary),
                "content_type": f"multipart/form-data; boundary={boundary}"}

    if kind == "damaged image":
        return as_file(damage(rng, images[rng.integers(len(images))]))
    if kind == "valid image":
        return as_file(images[rng.integers(len(images))])
    if kind == "random bytes":
        return as_file(rng.bytes(int(rng.integers(0, 5000))))
    if kind == "odd shape":
        return as_file(shapes[rng.integers(len(shapes))])
    if kind == "json":
        value = json_value(rng, images) if rng.random() < 0.3 else {
            key: json_value(rng, images) for key in ("image", "images", "label") if rng.random() < 0.5}
        return {"path": path, "body": json.dumps(value).encode(), "content_type": "application/json"}
    if kind == "damaged multipart":
        body = as_file(images[rng.integers(len(images))])["body"]
        content_type = [f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                        "multipart/form-data; boundary=", f"multipart/form-data; boundary={boundary}x"][
            rng.choice(4, p=[0.7, 0.1, 0.1, 0.1])]
        return {"path": path, "body": damage(rng, body, near_start=300), "content_type": content_type}
    if kind == "content type":
        content_type = ["text/plain", "application/x-www-form-urlencoded", "image/png", "", "application/json; x",
                        "multipart/mixed", "*/*", "application/JSON"][rng.integers(0, 8)]
        body = images[rng.integers(len(images))] if rng.random() < 0.5 else rng.bytes(int(rng.integers(0, 500)))
        return {"path": path, "body": body, "content_type": content_type}
    if kind == "empty body":
        types = ["application/json", f"multipart/form-data; boundary={boundary}", ""]
        return {"path": path, "body": b"", "content_type": types[rng.integers(0, 3)]}
    if kind == "deep json":
        depth = int(rng.integers(100, 200_000))
        body = b'{"image": ' + b"[" * depth + b"]" * depth + b"}" if rng.random() < 0.5 else b"9" * depth
        return {"path": path, "body": body, "content_type": "application/json"}
    if kind == "oversized body":
        types = ["application/json", "multipart/form-data; boundary=x"]
        return {"path": path, "oversized": True, "content_type": types[rng.integers(0, 2)]}
    raw = [
        b"GARBAGE\r\n\r\n",
        rng.bytes(int(rng.integers(1, 300))),
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\nZZ\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"im",
    ]
    return {"raw": raw[rng.integers(len(raw))]}


# -- sending ---------------------------------------------------------------------------------


def send_raw(server: Server, data: bytes) -> tuple[int | None, bool]:
    """Broken HTTP on its own connection: the status answered (None for none), and whether the
    answer's body is a JSON error (serve.connections answers protocol errors in JSON)."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return None, True
    return int(answer.split(b" ", 2)[1]), is_json_error(answer.partition(b"\r\n\r\n")[2])


def fuzz(server: Server, count: int, seed: int, pictures: list[np.ndarray]) -> dict[str, Any]:
    import httpx

    rng = np.random.default_rng(seed)
    images = valid_files(pictures)
    shapes = [odd_shape(rng) for _ in range(60)]  # drawn from in turn: encoding each anew costs more than serving it
    oversized = rng.bytes(10 * 1024 * 1024 + 1)  # one byte over Limits().max_request_bytes
    names, weights = list(KINDS), np.array(list(KINDS.values()))
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: list[dict[str, Any]] = []  # the first few 5xx and connection errors, to debug
    slowest = 0.0
    start = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for k in range(count):
            kind = names[rng.choice(len(names), p=weights / weights.sum())]
            request = fuzz_request(rng, kind, images, shapes)
            sent = time.perf_counter()
            text = ""
            try:
                if "raw" in request:
                    status, json_error = send_raw(server, request["raw"])
                else:
                    headers = {"content-type": request["content_type"]} if request["content_type"] else {}
                    body = oversized if request.get("oversized") else request["body"]
                    response = client.post(request["path"], content=body, headers=headers)
                    status, text = response.status_code, response.text[:200]
                    json_error = status < 400 or is_json_error(response.content)
            except httpx.TransportError as error:
                counts[kind]["connection error"] += 1
                if len(examples) < 10:
                    examples.append({"kind": kind, "request": k, "error": f"{type(error).__name__}: {error}"})
                continue
            slowest = max(slowest, time.perf_counter() - sent)
            outcome = "no answer" if status is None else f"{status // 100}xx"
            counts[kind][outcome] += 1
            if not json_error:
                counts[kind]["4xx without JSON error"] += 1
            if outcome == "5xx" and len(examples) < 10:
                examples.append({"kind": kind, "request": k, "status": status, "body": text})
            if (k + 1) % 1000 == 0:
                print(f"  {k + 1:,} requests, {time.perf_counter() - start:.0f} s", flush=True)
    total = collections.Counter()
    for row in counts.values():
        total.update(row)
    corrections = Path(server.log.parent / "corrections")
    return {
        "requests": count,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "slowest_answer_s": round(slowest, 2),
        "counts": {key: total[key] for key in ("2xx", "4xx", "5xx", "connection error", "no answer",
                                               "4xx without JSON error")},
        "by_kind": {kind: dict(counts[kind]) for kind in names},
        "server_alive": server.alive(),
        "server_healthy_after": server.healthy(),
        "server_tracebacks": server.tracebacks(),
        "corrections_stored": sum(1 for p in corrections.rglob("*.png")) if corrections.exists() else 0,
        "examples": examples,
    }


def is_json_error(body: bytes) -> bool:
    """The answer's body is {"error": one line}, as every refusal of the API is."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and list(parsed) == ["error"] and "\n" not in str(parsed["error"])


def load(server: Server, rate: float, seconds: float, pictures: list[np.ndarray], clients: int) -> dict[str, Any]:
    """Valid drawings at `rate` requests/s for `seconds`, open loop, from `clients` keep-alive threads.

    Request k is due at k / rate. A server slower than the rate falls behind: what is not sent by
    the end is counted as not sent, so the run lasts `seconds` (and what is in flight then)."""
    bodies = [multipart([("file", f"{k}.png", encode(p, "PNG"))], {}, "load") for k, p in enumerate(pictures)]
    content_type = "multipart/form-data; boundary=load"

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(server.host, server.port, timeout=60)

    def post(conn: http.client.HTTPConnection, body: bytes) -> int:
        conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status

    warm = connect()
    for k in range(200):  # imports on first use, the allocator's first growth
        post(warm, bodies[k % len(bodies)])
    warm.close()
    rss = {"start_mb": server.rss_mb()}
    total = int(rate * seconds)
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    lateness: list[float] = []
    errors = collections.Counter()
    samples: list[tuple[float, float]] = []
    begin = time.perf_counter() + 0.5

    def client() -> None:
        conn = connect()
        while True:
            with lock:
                k = state["next"]
                state["next"] += 1
            due = begin + k / rate
            if k >= total or time.perf_counter() > begin + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                status = post(conn, bodies[k % len(bodies)])
                if status != 200:
                    errors[f"HTTP {status}"] += 1
            except OSError as error:
                errors[type(error).__name__] += 1
                conn.close()
                conn = connect()
            done = time.perf_counter()
            with lock:
                latencies.append(done - sent)
                lateness.append(max(0.0, sent - due))
        conn.close()

    def sampler() -> None:
        while any(t.is_alive() for t in threads):
            samples.append((round(time.perf_counter() - begin, 1), server.rss_mb()))
            time.sleep(max(1.0, seconds / 12))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    watcher = threading.Thread(target=sampler, daemon=True)
    for t in threads:
        t.start()
    watcher.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    time.sleep(1)
    rss["end_mb"] = server.rss_mb()
    latencies.sort()
    return {
        "rate_asked": rate,
        "seconds": seconds,
        "requests": len(latencies),
        "rate_achieved": round(len(latencies) / elapsed, 1),
        "not_sent_behind_schedule": total - len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "latency_ms_p50": round(statistics.median(latencies) * 1e3, 1),
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1e3, 1),
        "late_ms_p99": round(sorted(lateness)[int(len(lateness) * 0.99)] * 1e3, 1),
        "clients": clients,
        "rss_mb": {**rss, "samples": samples},
        "rss_growth_mb": round(rss["end_mb"] - rss["start_mb"], 1),
        "server_alive": server.alive(),
    }


def resume(trials: int, seed: int, epochs: int, train_limit: int) -> dict[str, Any]:
    try:
        from _kill_resume import kill_resume_trials
    except ImportError:
        print("resume: benchmarks/_kill_resume.py is not there; skipped")
        return {"skipped": "benchmarks/_kill_resume.py missing"}
    result = kill_resume_trials(trials=trials, seed=seed, epochs=epochs, train_limit=train_limit)
    # None: a trial that needed no rerun (killed after it ended) loses nothing; one that never
    # finished has no accuracy (it is missing from `finished`).
    lost = [n for n in result["epochs_lost"] if n is not None]
    final = [a * 100 for a in result["final_accuracy"] if a is not None] or [float("nan")]
    print(f"{result['finished']}/{result['trials']} resumes finished, at most {max(lost, default=0)} epochs lost "
          f"each, final accuracy {min(final):.2f}–{max(final):.2f} % "
          f"(uninterrupted {result['reference_accuracy'] * 100:.2f} %)")
    return result


def tiny_run(workdir: Path) -> str:
    """Train `fast` for one epoch on 6,000 images: a model to serve when no RUN is given."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    out = workdir / "tiny-run"
    train(preset_config("fast", epochs=1, train_limit=6000, test_limit=1000, validation_split=0.1, patience=0,
                        out=str(out), verbose=0))
    return str(out)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--server":
        server_main(sys.argv[3], sys.argv[2], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run folder to serve (default: train a tiny one)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, comma-separated: {','.join(PARTS)}")
    parser.add_argument("--runtime", choices=("onnx", "keras"), help="default: onnx when RUN/model.onnx exists")
    parser.add_argument("--fuzz", type=int, default=10_000, help="fuzzed requests")
    parser.add_argument("--seed", type=int, default=0, help="seeds the fuzz and the kill times")
    parser.add_argument("--rate", type=float, default=200.0, help="load: requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="load: how long")
    parser.add_argument("--clients", type=int, default=16, help="load: keep-alive client threads")
    parser.add_argument("--trials", type=int, default=10, help="resume: kill-and-resume trials")
    parser.add_argument("--epochs", type=int, default=4, help="resume: epochs per trial")
    parser.add_argument("--train-limit", type=int, default=6000, help="resume: training images")
    parser.add_argument("--idle", type=int, default=100, help="connections: silent sockets held")
    parser.add_argument("--drip", type=int, default=100, help="connections: sockets sending a header byte a second")
    parser.add_argument("--hold-seconds", type=float, default=30.0, help="connections: how long")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    info = header()
    results: dict[str, Any] = {"benchmark": "reliability", "parts": parts,
                               "machine": {k: v for k, v in info.items() if k != "versions"},
                               "versions": info["versions"]}
    if "resume" in parts:
        print("\nresume: kill training at random moments, resume it")
        results["resume"] = resume(args.trials, args.seed, args.epochs, args.train_limit)
    if {"fuzz", "load", "connections", "bombs"} & set(parts):
        workdir = Path(tempfile.mkdtemp(prefix="mnistlab-reliability-"))
        try:
            run = args.run or tiny_run(workdir)
            if "bombs" in parts:
                from _bombs import bomb_phase

                print("\nbombs: files that unpack to 2 GB, each fed to the CLI in its own process")
                results["bombs"] = bomb_phase(workdir, Path(run))
                if not {"fuzz", "load", "connections"} & set(parts):
                    print(json.dumps(results))
                    return
            runtime = args.runtime or ("onnx" if RunDir(Path(run)).onnx.is_file() else "keras")
            results.update(run=run, runtime=runtime)
            pictures = drawings(100)
            server = Server(run, runtime, workdir)
            try:
                print(f"\nserving {run} ({runtime}) at {server.url}, RSS {server.rss_mb()} MB")
                if "fuzz" in parts:
                    print(f"\nfuzz: {args.fuzz:,} malformed requests, seed {args.seed}")
                    f = fuzz(server, args.fuzz, args.seed, pictures)
                    results["fuzz"] = f
                    print(f"{'kind':<20}" + "".join(f"{c:>8}" for c in ("2xx", "4xx", "5xx", "conn")))
                    for kind, row in f["by_kind"].items():
                        print(f"{kind:<20}" + "".join(f"{row.get(c, 0):>8}" for c in ("2xx", "4xx", "5xx",
                                                                                    "connection error")))
                    c = f["counts"]
                    print(f"{f['requests']:,} requests in {f['seconds']:.0f} s: {c['2xx']:,} 2xx, {c['4xx']:,} 4xx, "
                          f"{c['5xx']} 5xx, {c['connection error']} connection errors, {c['no answer']} unanswered "
                          f"(broken HTTP), {c['4xx without JSON error']} refusals without a JSON error; server "
                          f"{'alive' if f['server_alive'] else 'DEAD'}, {f['server_tracebacks']} tracebacks logged, "
                          f"slowest answer {f['slowest_answer_s']} s")
                if "load" in parts:
                    print(f"\nload: {args.rate:g} requests/s of valid drawings for {args.seconds:g} s")
                    lo = load(server, args.rate, args.seconds, pictures, args.clients)
                    results["load"] = lo
                    print(f"{lo['requests']:,} requests answered at {lo['rate_achieved']} /s "
                          f"(asked {lo['rate_asked']:g}; "
                          f"{lo['not_sent_behind_schedule']:,} not sent in time), {lo['errors']} errors, "
                          f"latency p50 {lo['latency_ms_p50']} ms, p99 {lo['latency_ms_p99']} ms; "
                          f"RSS {lo['rss_mb']['start_mb']} -> {lo['rss_mb']['end_mb']} MB "
                          f"(samples {', '.join(str(mb) for _, mb in lo['rss_mb']['samples'])})")
                if "connections" in parts:
                    from _connections import connection_phase

                    print(f"\nconnections: {args.idle} silent and {args.drip} slow-header sockets held for "
                          f"{args.hold_seconds:g} s while one client posts drawings")
                    body = multipart([("file", "held.png", encode(pictures[0], "PNG"))], {}, "held")
                    co = connection_phase(server.host, server.port, body, "multipart/form-data; boundary=held",
                                          args.idle, args.drip, args.hold_seconds)
                    co["server_alive"] = server.alive()
                    results["connections"] = co
                    print(f"{co['answered']:,} of {co['requests']:,} normal requests answered, {co['errors']} errors "
                          f"{co['error_kinds'] or ''}, latency p50 {co['latency_ms_p50']} ms, p99 "
                          f"{co['latency_ms_p99']} ms, max {co['latency_ms_max']} ms; hostile sockets opened "
                          f"{co['hostile']['opened']}, closed by the server {co['hostile']['closed_by_server']}")
            finally:
                server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
