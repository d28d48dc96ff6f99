"""The server's speed on loopback: start-up, one drawing's latency, requests/s under concurrency.

    python benchmarks/serve.py RUN [--clients 1,4,16] [--seconds 5]

First the serving path in this process, per runtime (Keras always; ONNX when RUN/model.onnx
exists, see `mnistlab export`): one 28x28 image through Predictor.probabilities (median and
90th percentile of 2,000 calls) and the 10,000 test images at batch 1024. Then, per runtime, a
server started in its own process with the app `mnistlab serve` runs, so the clients do not
share its interpreter: start to the first /healthz answer; for two uploads, a canvas-sized
drawing (an MNIST test digit as a 280x280 PNG, dark on white) and the 28x28 digit itself, the
median and 90th-percentile time of POST /v1/predict one request after the other, then
requests/s, p99 latency and errors with N clients, each a thread with its own keep-alive
connection (http.client). Prints the machine, the versions and tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, timed  # noqa: E402

from mnistlab.runs import RunDir  # noqa: E402


def server_main(run: str, runtime: str) -> None:
    """The child process: the app of `mnistlab serve`, with the runtime forced."""
    from mnistlab.predict import Predictor
    from mnistlab.serve import bind, build_server, create_app, url_of

    if runtime == "onnx":
        predictor = Predictor.from_onnx(RunDir(Path(run)).onnx)
    else:
        import keras  # noqa: F401  - imported before the socket, as `mnistlab serve` does

        predictor = Predictor.from_run(run)
    corrections = Path(tempfile.gettempdir()) / f"mnistlab-bench-{uuid.uuid4().hex}"  # no corrections are sent
    app = create_app(predictor, corrections, run_name=Path(run).name, runtime=runtime)
    sock = bind("127.0.0.1", 0)
    print(url_of(sock), flush=True)
    build_server(app).run(sockets=[sock])


def test_digit():
    from mnistlab.data import default_cache_dir, load_mnist

    return load_mnist(cache_dir=default_cache_dir(), progress=False).x_test


def drawing_png(digit) -> bytes:
    """An MNIST test digit as the page sends it: 280x280, dark strokes on white."""
    from PIL import Image

    return png_bytes(np.asarray(Image.fromarray(255 - digit).resize((280, 280), Image.BILINEAR)))


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"drawing.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(conn: http.client.HTTPConnection, body: bytes, content_type: str) -> bool:
    """One POST /v1/predict; True when it was answered 200."""
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    return response.status == 200


def measure(url: str, png: bytes, clients: list[int], seconds: float) -> dict:
    address = urllib.parse.urlparse(url)
    body, content_type = multipart(png)

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(address.hostname, address.port, timeout=60)

    conn = connect()
    for _ in range(10):  # warm-up: imports on first use, the model's first call
        if not post(conn, body, content_type):
            raise RuntimeError("the server refused the benchmark's upload")
    latencies = timed(lambda: post(conn, body, content_type), 200)
    conn.close()
    result = {
        "latency_ms_p50": round(statistics.median(latencies) * 1e3, 2),
        "latency_ms_p90": round(statistics.quantiles(latencies, n=10)[-1] * 1e3, 2),
        "load": {},
    }
    for n in clients:
        times: list[list[float]] = [[] for _ in range(n)]
        errors = [0] * n
        stop = time.perf_counter() + seconds

        # Joined before the loop moves on, so binding this round's stop/times/errors is what it wants.
        def client(k: int, stop: float = stop, times: list = times, errors: list = errors) -> None:
            c = connect()
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    ok = post(c, body, content_type)
                except OSError:
                    ok = False
                    c.close()
                    c = connect()
                times[k].append(time.perf_counter() - start)
                errors[k] += not ok
            c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        every = sorted(x for row in times for x in row)
        result["load"][str(n)] = {
            "requests_per_s": round(len(every) / elapsed, 1),
            "latency_ms_p99": round(every[min(len(every) - 1, int(len(every) * 0.99))] * 1e3, 2),
            "errors": sum(errors),
            "requests": len(every),
        }
    return result


def png_bytes(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def in_process(run: str, runtime: str, x_test) -> dict:
    """The serving path without HTTP: Predictor.probabilities on one image and on 10,000."""
    from mnistlab.predict import Predictor

    predictor = Predictor.from_onnx(RunDir(Path(run)).onnx) if runtime == "onnx" else Predictor.from_run(run)
    one = x_test[:1]
    for _ in range(200):
        predictor.probabilities(one)
    latencies = timed(lambda: predictor.probabilities(one), 2000)
    predictor.probabilities(x_test[:1024])
    start = time.perf_counter()
    predictor.probabilities(x_test)
    rate = len(x_test) / (time.perf_counter() - start)
    return {"runtime": runtime, "one_image_ms_p50": round(statistics.median(latencies) * 1e3, 4),
            "one_image_ms_p90": round(statistics.quantiles(latencies, n=10)[-1] * 1e3, 4),
            "batch1024_img_s": round(rate)}


def bench(run: str, runtime: str, uploads: dict[str, bytes], clients: list[int], seconds: float) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--server", runtime, run], stdout=subprocess.PIPE, text=True)
    try:
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the {runtime} server did not start")
        address = urllib.parse.urlparse(url)
        while True:
            try:
                conn = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.005)
        startup = time.perf_counter() - start
        return {"runtime": runtime, "startup_s": round(startup, 2),
                "uploads": {name: measure(url, png, clients, seconds) for name, png in uploads.items()}}
    finally:
        child.terminate()
        child.wait(timeout=30)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--server":
        server_main(sys.argv[3], sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder; with model.onnx in it, ONNX is measured too")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients to measure, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per concurrency level")
    args = parser.parse_args()
    info = header()
    clients = [int(n) for n in args.clients.split(",")]
    runtimes = ["keras"] + (["onnx"] if RunDir(Path(args.run)).onnx.is_file() else [])
    x_test = test_digit()
    local = [in_process(args.run, runtime, x_test) for runtime in runtimes]
    print("\nserving path in process (Predictor.probabilities)")
    print(f"{'runtime':<8}{'1 image p50 ms':>16}{'p90 ms':>9}{'batch 1024 img/s':>18}")
    for r in local:
        print(f"{r['runtime']:<8}{r['one_image_ms_p50']:>16.3f}{r['one_image_ms_p90']:>9.3f}"
              f"{r['batch1024_img_s']:>18,}")
    uploads = {"280x280 drawing": drawing_png(x_test[0]), "28x28 digit": png_bytes(x_test[0])}
    results = [bench(args.run, runtime, uploads, clients, args.seconds) for runtime in runtimes]
    print(f"\nPOST /v1/predict on loopback, {args.seconds:.0f} s per concurrency level")
    print(f"{'runtime':<8}{'upload':<17}{'start s':>8}{'p50 ms':>8}{'p90 ms':>8}"
          + "".join(f"{f'{n} cl. req/s':>13}{'p99 ms':>8}{'err':>5}" for n in clients))
    for r in results:
        for name, u in r["uploads"].items():
            load = "".join(f"{u['load'][str(n)]['requests_per_s']:>13.1f}{u['load'][str(n)]['latency_ms_p99']:>8.1f}"
                           f"{u['load'][str(n)]['errors']:>5}" for n in clients)
            print(f"{r['runtime']:<8}{name:<17}{r['startup_s']:>8.2f}{u['latency_ms_p50']:>8.2f}{u['latency_ms_p90']:>8.2f}{load}")
    print(json.dumps({"benchmark": "serve", "run": args.run, "seconds": args.seconds,
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "in_process": local, "http": results}))

if __name__ == "__main__":
    main()
