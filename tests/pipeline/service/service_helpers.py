"""A real ``marketlake serve`` in a subprocess on a free loopback port, and an SSE reader."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl

from marketlake.lake import Lake
from marketlake.pipeline import universe

TOKEN = "test-token-0123456789abcdef"
NOW = "2026-11-20T18:00:00+00:00"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_universe(home: Path, symbols: list[str]) -> None:
    """Synthetic equities ``symbols`` in one commit."""
    rows = pl.DataFrame(
        {
            "symbol": symbols,
            "asset_type": ["equity"] * len(symbols),
            "provider": ["synthetic"] * len(symbols),
        }
    )
    Lake(home).upsert(
        "instruments", universe.instruments_frame(rows, "u"), run_id="u", stage="universe"
    )


def env_for(home: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {**os.environ, "MARKETLAKE_HOME": str(home), "MARKETLAKE_NOW": NOW}
    env.pop("MARKETLAKE_API_TOKEN", None)
    if token:
        env["MARKETLAKE_API_TOKEN"] = token
    return env


class Server:
    """``marketlake serve`` as a child process."""

    def __init__(self, home: Path, cwd: Path, *, token: str | None = TOKEN) -> None:
        self.home, self.cwd = home, cwd
        self.start(token)

    def start(self, token: str | None = TOKEN, *, wait: bool = True) -> None:
        """Start (again, after :meth:`kill9` or :meth:`stop`) on a new port; ``wait=False``
        returns at once (call :meth:`wait_ready` before using it)."""
        self.token = token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.cwd / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketlake.cli", "serve", "--port", str(self.port)],
            cwd=self.cwd,
            env=env_for(self.home, token),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                httpx.get(self.base + "/api/v1/sync/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not start: {self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def client(self, token: str | None = None) -> httpx.Client:
        tok = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def events(client: httpx.Client, run_id: str) -> Iterator[tuple[str, dict]]:
    """``(event, data)`` pairs of a run's SSE stream until its final event."""
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=60) as res:
        assert res.status_code == 200, res.read()
        kind, data = "message", []
        for line in res.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                yield kind, json.loads("\n".join(data))
                if kind == "final":
                    return
                kind, data = "message", []
