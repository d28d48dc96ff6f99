"""Which web pages may send the server writes: its own page, and scripts; no other site's.

    curl -F file=@7.png -F label=7 http://127.0.0.1:8000/v1/corrections   # a script: served

A browser names the page behind each request it sends (the Origin header, and Sec-Fetch-Site);
curl, httpx and other scripts send neither. So a write (any method but GET, HEAD and OPTIONS)
that a browser sends is served only when its Origin is the server itself (the Host it was sent
to) and that Host is a name of this server: localhost, an IP address, this machine's name, or a
name given to create_app. Any other page's write gets 403: a form or fetch() on evil.example
aimed at 127.0.0.1 (cross-site request forgery), and also a page on evil.example whose name was
re-pointed at 127.0.0.1 (DNS rebinding), where Origin and Host agree but the name is not ours.
Requests with neither header are served as before.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mnistlab.serve.requests import error_json

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # they change nothing, so any page may send them
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WILDCARDS = {"", "0.0.0.0", "::"}  # listening on every address names none of them


def local_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a browser may use for this server besides IP addresses: localhost, this
    machine's name (and its .local mDNS form), and `extra` (e.g. the --host given)."""
    machine = socket.gethostname().lower()
    names = {"localhost", machine, f"{machine}.local"}
    names.update(name.strip("[]").lower() for name in extra if name not in _WILDCARDS)
    return frozenset(names)


def write_refusal(method: str, headers: Headers, names: frozenset[str]) -> str | None:
    """Why a request is refused as a write from another site's page; None when it is not one."""
    if method in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is None:
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            return f"writes from another site's page are refused (Sec-Fetch-Site: {site})"
        return None  # not a browser: a script, which no page can make send anything
    host = headers.get("host", "")
    served = _address(f"//{host}", urlsplit(origin).scheme)
    if served is None or not _ours(served[0], names):
        return (f"Host {host[:80]!r} is not a name of this server; a page may write to it from "
                "localhost, its IP address or its machine name")
    if _address(origin, "") != served:
        return (f"writes from another site's page are refused (Origin {origin[:80]}); only the "
                "server's own page and scripts (no Origin header) may write")
    return None


class SameOriginWrites:
    """ASGI middleware: writes from another site's page get 403 {"error": ...} (write_refusal)."""

    def __init__(self, app: ASGIApp, names: frozenset[str]):
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = write_refusal(scope["method"], Headers(scope=scope), self.names)
            if reason is not None:
                response = Response(error_json(reason), status_code=403, media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _address(url: str, scheme: str) -> tuple[str, int | None] | None:
    """(host name, port) of an origin or of //host:port; a missing port is the scheme's default.
    None when it names no host ("null", an opaque origin) or holds a bad port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme or scheme)


def _ours(name: str, names: frozenset[str]) -> bool:
    """A name no other site can point at this server: an IP address, localhost or one we were given."""
    if name in names or name.endswith(".localhost"):  # *.localhost is loopback in browsers (RFC 6761)
        return True
    try:
        ipaddress.ip_address(name.split("%")[0])  # an IPv6 address may carry a zone: fe80::1%eth0
    except ValueError:
        return False
    return True
