"""The web server: a drawing page and an HTTP API over the shipped reader or one run's model.

    mnistlab serve [runs/<name>] [--port 0]   # prints the URL; the API is described at <URL>docs

`serve` chooses the model (the shipped reader; a run's newest personal model, which the page's
lessons make, or with --parent the run's own; a model.onnx runs on ONNX Runtime, so
Keras and TensorFlow are never imported and the first answer comes within ~2 s; else the run's
Keras model), binds the socket, prints the URL and runs uvicorn. `app.create_app` builds the FastAPI app from
any Predictor; `requests.Limits` bounds what a request may cost; `connections.Connection` is the
uvicorn protocol that bounds connections (idle ones cannot lock clients out).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from mnistlab.errors import MnistlabError
from mnistlab.personal import newest_personal, personal_name
from mnistlab.predict import DEFAULT_MIN_CONFIDENCE, load_predictor, model_name
from mnistlab.runs import RunDir
from mnistlab.runtimes import onnx_model
from mnistlab.serve.app import create_app
from mnistlab.serve.connections import Connection
from mnistlab.serve.requests import DEFAULT_LIMITS, Limits

__all__ = [
    "Limits",
    "ServeError",
    "bind",
    "build_server",
    "create_app",
    "load_predictor",
    "onnx_model",
    "running",
    "serve",
]

class ServeError(MnistlabError):
    """The server cannot start: a bad port, or an address taken or not ours to listen on."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 takes a free one (read it back with getsockname()).

    Raises:
        ServeError: the address is in use, unknown here, or needs privileges.
    """
    if not 0 <= port <= 65535:  # getaddrinfo would take 70000 as 70000 % 65536
        raise ServeError(f"port must be 0-65535, not {port}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise ServeError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}.") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
        sock.listen(128)  # before the URL is printed, so a client that reads it is queued, not refused
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}.") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """http://host:port/ of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def build_server(app: FastAPI, limits: Limits = DEFAULT_LIMITS) -> uvicorn.Server:
    """A uvicorn server with the limits' timeouts; run it with `.run(sockets=[bind(...)])`."""
    config = uvicorn.Config(
        app,
        # h11 with a header deadline and a connection limit idle clients cannot use up; uvicorn's
        # own limit_concurrency counts idle connections as load, so it is left off.
        http=functools.partial(Connection, limits=limits),
        ws="none",  # no WebSocket routes: an Upgrade header is an ordinary request's
        loop="asyncio",
        lifespan="off",  # the app has no start-up work: the model is loaded before the socket
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=5,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    return uvicorn.Server(config)


# Where the page's corrections go when the shipped reader is served (the package's own folder is
# no place to write): a folder in the current directory, as the start-up line says.
READER_CORRECTIONS = Path("corrections")


def serve(
    run: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    corrections: str | os.PathLike | None = None,
    limits: Limits = DEFAULT_LIMITS,
    parent: bool = False,
    teach: bool = True,
) -> None:
    """Serve the shipped reader or a run's model until interrupted; prints the URL once the model
    is loaded.

    Args:
        run: a run folder written by `mnistlab train`; None for the reader shipped with mnistlab.
        host, port: where to listen; 127.0.0.1 is this machine only, port 0 a free port.
        min_confidence: below this calibrated probability the status is "unsure".
        corrections: where corrections are stored; RUN/corrections by default, or
            READER_CORRECTIONS (./corrections) for the shipped reader.
        limits: sizes, counts and timeouts per request.
        parent: serve the run's own model, not its newest personal model (mnistlab.personal).
        teach: offer lessons (/v1/finetune and the page's teach mode) of the run; never for the
            shipped reader, which has no Keras model to fine-tune.

    Raises:
        RunError, ExportError, ServeError: the model cannot be loaded or the address cannot be
            listened on.
    """
    sock = bind(host, port)  # first: a taken port is told before seconds of model loading
    personal = newest_personal(run) if run is not None and not parent else None
    try:
        predictor = load_predictor(personal.path if personal else run, min_confidence)
    except BaseException:
        sock.close()
        raise
    if corrections is None:
        corrections = READER_CORRECTIONS if run is None else RunDir(Path(run)).corrections
    name = personal_name(run, personal.path) if personal else model_name(run)
    reason = ("turned off (mnistlab serve --no-teach)" if not teach else
              "the shipped reader is not taught; serve a run of your own (mnistlab train, then mnistlab serve "
              "runs/latest)" if run is None else "")
    # A name given to --host is one a browser may write to the server by (origins.local_names).
    app = create_app(predictor, corrections, run_name=name, limits=limits, allowed_hosts=[host],
                     teach_run=run if teach and run is not None else None, no_teach_reason=reason)
    url = url_of(sock)
    served = ("the shipped reader" if run is None else
              f"{personal.path}, the newest personal model of {run} (--parent serves {run} itself)" if personal
              else run)
    print(f"serving {served} ({predictor.runtime}) at {url}  (API docs at {url}docs; corrections go to "
          f"{corrections}; Ctrl-C stops)", flush=True)
    build_server(app, limits).run(sockets=[sock])


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, limits: Limits = DEFAULT_LIMITS) -> Iterator[str]:
    """Serve `app` from a background thread while the block runs; yields its URL.

    For tests, benchmarks and notebooks: the same uvicorn server as `serve`, on a free port.

    Raises:
        ServeError: the address cannot be listened on, or the server did not start in 30 s.
    """
    sock = bind(host, port)
    server = build_server(app, limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mnistlab-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the server on {url_of(sock)} did not start.")
            time.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
