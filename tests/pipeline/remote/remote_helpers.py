"""Two homes: a remote ``marketlake serve`` (its own PostgreSQL schema) on a loopback port,
and a local home that pushes to it and pulls from it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl

from marketlake.lake import Lake

TOKEN = "remote-token-0123456789abcdef"
PULL_CONFIG = """
[postgres]
schema = "{schema}"

[serve.pull.tables.watchlists]
key = ["id"]
updated_at = "updated_at"
deleted = "deleted_at"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Remote:
    """``marketlake serve`` of the remote home, as a child process (restartable)."""

    def __init__(
        self,
        home: Path,
        cwd: Path,
        dsn: str,
        schema: str,
        extra_env: dict | None = None,
        extra_config: str = "",
    ) -> None:
        self.home, self.cwd, self.dsn = home, cwd, dsn
        self.extra_env = dict(extra_env or {})
        (cwd / "marketlake.toml").write_text(PULL_CONFIG.format(schema=schema) + extra_config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "MARKETLAKE_HOME": str(self.home), "MARKETLAKE_DSN": self.dsn}
        env["MARKETLAKE_API_TOKEN"] = TOKEN
        return env | self.extra_env

    def start(self) -> None:
        log = (self.cwd / f"serve-{self.port}.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketlake.cli", "serve", "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                httpx.get(self.url + "/api/v1/sync/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not start: {self.output()}")

    def output(self) -> str:
        return (self.cwd / f"serve-{self.port}.log").read_text()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def cli_env(home: Path, token: str = TOKEN) -> dict[str, str]:
    env = {**os.environ, "MARKETLAKE_HOME": str(home), "MARKETLAKE_REMOTE_TOKEN": token}
    env.pop("MARKETLAKE_DSN", None)
    return env


def table(home: Path, name: str) -> pl.DataFrame:
    """A lake table's rows in key order, columns sorted (an exact-equality checksum)."""
    lake = Lake(home)
    frame = lake.read(name)
    key = list(lake_key(name))
    return frame.select(sorted(frame.columns)).sort(key)


def lake_key(name: str) -> tuple[str, ...]:
    from marketlake.lake.tables import TABLES

    return TABLES[name].key
