"""Test helpers: a loopback replay server for the recorded provider responses, and a fake clock.

The server (``http.server.ThreadingHTTPServer`` on 127.0.0.1:0 in a thread) answers each request
from the routes registered on it, matched by method, path (percent-decoded) and a subset of
query parameters (so ``crumb``, ``period1`` or ``lang`` do not matter unless a route names them);
the latest matching route wins, and a route can answer a sequence (429 then 200). Requests
without a route get a 404 and are listed in ``unmatched``. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from marketlake.pipeline.config import ProviderSettings


@dataclass
class Reply:
    """One answer. ``drip`` sends the body a byte at a time, that many seconds apart
    (``drip_headers``: the status line and headers too); ``endless`` repeats the body until
    the client hangs up (no content-length)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0
    drip_headers: bool = False
    endless: bool = False


def load_recording(path: Path) -> Reply:
    """A recorded response as a :class:`Reply`, whatever the file kind (cassette, envelope,
    body-only or doc sample)."""
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and ("response" in doc or "_envelope_note" in doc):
        resp = doc.get("response") or doc
        status = int(resp.get("status", 200))
        headers = {}
        for k, v in (resp.get("headers") or {}).items():
            if k.lower() in ("content-type", "retry-after"):
                headers[k.lower()] = v[0] if isinstance(v, list) else str(v)
        if "content_type" in resp:
            headers["content-type"] = resp["content_type"]
        for key in ("bodyJson", "body", "bodyText"):
            if key in resp:
                value = resp[key]
                break
        else:
            value = None
        if isinstance(value, str):
            body = value.encode()
            headers.setdefault("content-type", "text/plain")
        else:
            body = json.dumps(value).encode()
            headers.setdefault("content-type", "application/json")
        return Reply(status, body, headers)
    return Reply(200, json.dumps(doc).encode(), {"content-type": "application/json"})


@dataclass
class Route:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    replies: list[Reply]
    served: int = 0

    def next(self) -> Reply:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class ReplayServer:
    """See the module docstring."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.seen: list[Seen] = []
        self.unmatched: list[Seen] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms ACK wait)

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                reply = server._answer(self.command, self.path, dict(self.headers.items()))
                if reply.delay:
                    threading.Event().wait(reply.delay)
                if reply.drip_headers:
                    self._drip_all(reply)
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.endless:
                    self.send_header("connection", "close")
                    self.end_headers()
                    try:
                        while not server.stopping.is_set():
                            self.wfile.write(reply.body)
                    except OSError:  # the client hung up
                        pass
                    self.close_connection = True
                    return
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                if not reply.drip:
                    self.wfile.write(reply.body)
                    return
                try:
                    for i in range(len(reply.body)):
                        if server.stopping.wait(reply.drip):
                            break
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                except OSError:
                    self.close_connection = True

            def _drip_all(self, reply: Reply) -> None:
                head = [f"HTTP/1.1 {reply.status} OK", f"content-length: {len(reply.body)}"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                raw = ("\r\n".join(head) + "\r\n\r\n").encode() + reply.body
                self.close_connection = True
                try:
                    for i in range(len(raw)):
                        if server.stopping.wait(reply.drip):
                            break
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                except OSError:
                    pass

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def add(
        self,
        path: str,
        reply: Reply | list[Reply],
        *,
        params: dict[str, str] | None = None,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> Route:
        route = Route(
            method,
            path,
            dict(params or {}),
            {k.lower(): v for k, v in (headers or {}).items()},
            reply if isinstance(reply, list) else [reply],
        )
        with self._lock:
            self.routes.append(route)
        return route

    def add_file(self, path: str, fixture: Path, *, status: int | None = None, **kw: Any) -> Route:
        reply = load_recording(fixture)
        if status is not None:
            reply.status = status
        return self.add(path, reply, **kw)

    def add_json(self, path: str, body: Any, status: int = 200, **kw: Any) -> Route:
        return self.add(
            path,
            Reply(status, json.dumps(body).encode(), {"content-type": "application/json"}),
            **kw,
        )

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def _answer(self, method: str, raw_path: str, headers: dict[str, str]) -> Reply:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        low = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            seen = Seen(method, path, params, low)
            self.seen.append(seen)
            for route in reversed(self.routes):
                if route.method != method or route.path != path:
                    continue
                if any(params.get(k) != v for k, v in route.params.items()):
                    continue
                if any(low.get(k) != v for k, v in route.headers.items()):
                    continue
                return route.next()
            self.unmatched.append(seen)
        return Reply(404, b'{"error": "no replay route"}', {"content-type": "application/json"})

    def start(self) -> ReplayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeClock:
    """An injectable clock: ``now()`` for providers, ``sleep()`` records and advances time."""

    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.current

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.current += timedelta(seconds=seconds)


def settings_for(name: str, server: ReplayServer | str, **kw: Any) -> ProviderSettings:
    """Provider settings pointed at a replay server (= MARKETLAKE_<PROVIDER>_BASE_URL)."""
    url = server if isinstance(server, str) else server.url
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_max_s", 0.05)
    kw.setdefault("timeout_s", 5.0)
    return ProviderSettings(name=name, base_url=url, **kw)
