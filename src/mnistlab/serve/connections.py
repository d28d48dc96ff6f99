"""Connections to the server: bounded in number, in the time their headers take, and answered
in JSON even below the app.

    mnistlab serve --host 0.0.0.0     # 200 clients that connect and send nothing lock nobody out

uvicorn's keep-alive timeout closes a connection idle between requests, but not one that never
sends a request, and its `limit_concurrency` counts such connections as load: 100 sockets that
send nothing (or headers at a byte a second) would get every other client a 503. `Connection` is
uvicorn's h11 protocol with three changes:

- a deadline for headers: Limits.header_timeout_s from the connection's opening, or from the
  first byte of a later request on a kept-alive one, until the request's headers are complete;
  then the connection is closed, after a 408 when part of a request had come.
- a limit that idle clients cannot use up: past Limits.max_connections, a new connection closes
  the one that has waited longest for a request (idle, or still sending its headers); only
  requests past that many at once are refused, with 503.
- the refusals made below the app (malformed HTTP, headers too large, the limit, the deadline)
  are {"error": "<one line>"} with a status, as the app's are.

Some failures get no answer at all: a connection closed by the deadline or the limit before it
sent a byte (there is no request to answer), and the rare request whose HTTP breaks after the app
has begun its answer (the connection is closed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from mnistlab.serve.requests import Limits, error_json

MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers (h11's default); more get 431


def _closing_json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a JSON refusal after which the connection is closed."""
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]


class _Parser(h11.Connection):
    """h11's server side, keeping the last parse error so that the refusal can say what it was."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as e:
            self.error = e
            raise


class Connection(H11Protocol):
    """One client connection (uvicorn's H11Protocol), with the deadline, limit and JSON refusals
    above; build with functools.partial(Connection, limits=...) as uvicorn.Config's `http`."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: Limits):
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _Parser(h11.SERVER, MAX_HEADER_BYTES)  # nothing has been received yet
        self.limits = limits
        self.app = self._serve_unless_full  # uvicorn calls self.app for each request
        self._app = config.loaded_app
        self._waiting_since: float | None = None  # monotonic seconds; None while a request is served
        self._header_timer: asyncio.TimerHandle | None = None

    # -- uvicorn's hooks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = time.monotonic()
        self._start_header_deadline()
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(others) >= self.limits.max_connections:
            self._close_longest_waiting(others)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting_since is not None and self._header_timer is None:
            self._start_header_deadline()  # the first byte of a kept-alive connection's next request
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers came, and the app has it
            self._waiting_since = None
            self._stop_header_deadline()

    def on_response_complete(self) -> None:
        self._waiting_since = time.monotonic()  # before uvicorn reads a pipelined next request
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        error = self.conn.error
        if error is not None and error.error_status_hint == 431:
            self._refuse(431, f"the request line and headers are over {MAX_HEADER_BYTES // 1024} KiB")
        else:  # 400 also where h11 hints 501 (an unknown Transfer-Encoding): bad input is a 4xx
            # h11 says what broke, then shows the bytes as a bytearray's repr: not for the client
            said = str(error or "").partition(": bytearray(")[0][:100]
            detail = f" ({said})" if said else ""
            self._refuse(400, f"malformed HTTP request{detail}")

    # -- ours -----------------------------------------------------------------------------

    async def _serve_unless_full(self, scope: Any, receive: Any, send: Any) -> None:
        if len(self.tasks) > self.limits.max_connections:  # this request's own task included
            body = error_json(f"the server is answering {self.limits.max_connections} requests already; "
                              "try again in a moment")
            await send({"type": "http.response.start", "status": 503, "headers": _closing_json_headers(body)})
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)

    def _close_longest_waiting(self, others: list[H11Protocol]) -> None:
        """Make room: close the connection that has waited longest for a request (this new one
        stays, and is refused at its request if every other is still busy then)."""
        waiting = [c for c in others if isinstance(c, Connection) and c._waiting_since is not None]
        if waiting:
            min(waiting, key=lambda c: c._waiting_since or 0.0).transport.close()

    def _start_header_deadline(self) -> None:
        self._stop_header_deadline()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _stop_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_since is None or self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a request came
            self._refuse(408, f"the request's headers took over {self.limits.header_timeout_s:g} s to arrive")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer {"error": message} with `status` when no answer has begun, then close."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = error_json(message)
            headers = _closing_json_headers(body)
            for event in (h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status]),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        self.transport.close()
