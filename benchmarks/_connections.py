"""The connection-exhaustion phase of benchmarks/reliability.py: idle and slow-header clients
held open against a real server while a normal client keeps asking it to read digits.

An attacker thread opens `idle` sockets that send nothing and `drip` sockets that send a request
line and then one byte of a header each second, and holds them; a socket the server closes is
counted (and, with reopen, opened again at most once a second per socket, as a persistent but
not flooding attacker would). Meanwhile one normal client posts a drawing again and again.
"""

from __future__ import annotations

import http.client
import selectors
import socket
import statistics
import threading
import time
from typing import Any

DRIP_START = b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nX-Drip: "


def _open(address: tuple[str, int], drip: bool) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    if drip:
        sock.sendall(DRIP_START)
    sock.setblocking(False)
    return sock


def _attack(address: tuple[str, int], idle: int, drip: int, reopen: bool, stop: threading.Event,
            counts: dict[str, int]) -> None:
    selector = selectors.DefaultSelector()
    for k in range(idle + drip):
        selector.register(_open(address, k >= idle), selectors.EVENT_READ, k >= idle)
        counts["opened"] += 1
    counts["held_at_start"] = idle + drip
    pending: list[tuple[float, bool]] = []  # (when, drip) of sockets to open again
    while not stop.is_set():
        tick = time.monotonic() + 1.0
        while (left := tick - time.monotonic()) > 0 and not stop.is_set():
            for key, _ in selector.select(min(left, 0.2)):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    counts["closed_by_server"] += 1
                    if reopen:
                        pending.append((time.monotonic() + 1.0, key.data))
        for key in list(selector.get_map().values()):
            if key.data:
                try:
                    key.fileobj.send(b"a")
                except OSError:
                    pass
        now = time.monotonic()
        for when, is_drip in [p for p in pending if p[0] <= now]:
            pending.remove((when, is_drip))
            try:
                selector.register(_open(address, is_drip), selectors.EVENT_READ, is_drip)
                counts["opened"] += 1
            except OSError:
                counts["refused"] += 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()


def connection_phase(host: str, port: int, body: bytes, content_type: str, idle: int = 100, drip: int = 100,
                     seconds: float = 30.0, reopen: bool = True) -> dict[str, Any]:
    """Normal requests answered while `idle` + `drip` hostile connections are held (see the module).

    Args:
        body, content_type: one valid POST /v1/predict request body.
    """
    counts = {"opened": 0, "closed_by_server": 0, "refused": 0, "held_at_start": 0}
    stop = threading.Event()
    attacker = threading.Thread(target=_attack, args=((host, port), idle, drip, reopen, stop, counts), daemon=True)
    attacker.start()
    while counts["held_at_start"] == 0 and attacker.is_alive():  # every hostile socket is open
        time.sleep(0.05)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sent = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 200:
                errors[f"HTTP {response.status}"] = errors.get(f"HTTP {response.status}", 0) + 1
        except OSError as error:
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        latencies.append(time.perf_counter() - sent)
    stop.set()
    attacker.join(timeout=30)
    latencies.sort()
    return {
        "idle": idle,
        "drip": drip,
        "reopen": reopen,
        "seconds": seconds,
        "requests": len(latencies),
        "answered": len(latencies) - sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "latency_ms_p50": round(statistics.median(latencies) * 1e3, 1),
        "latency_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 1),
        "latency_ms_max": round(latencies[-1] * 1e3, 1),
        "hostile": counts,
    }
