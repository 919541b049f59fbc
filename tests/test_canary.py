"""Secrets never leak: canaries in the DSN password and in every API key, then a sync against a
hostile loopback server (error bodies echoing the key, a cross-origin redirect) and loads into
the real PostgreSQL with a refused, a keyword-form and a malformed DSN. Nothing a user or an
operator can read may hold a canary or a 4+ character prefix of one: stdout, stderr, every
file under ``$MARKETLAKE_HOME`` (parquet decoded, Delta logs, change-feed files) and every
row of the serving schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "pipeline" / "providers"))  # the replay server
from replay_server import ReplayServer, Reply  # noqa: E402

from marketlake.lake import Lake
from marketlake.pipeline import universe
from marketlake.pipeline.config import SECRET_ENV

CANARIES = {
    "dsn": "dsnQ7vK2pX9w",
    "fmp": "fmpR4tZ8mN1c",
    "upstox": "upxB6yH3qL5s",
    "coingecko": "cgkW2nJ7fD4v",
}
PREFIX = 6  # a cut-off key shows at least this much (redaction removes prefixes of 4+)


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marketlake.cli", *args],
        cwd=home,
        env={**os.environ, "MARKETLAKE_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def leaks(text: str) -> list[str]:
    return [name for name, c in CANARIES.items() if c[:PREFIX] in text]


def file_text(path: Path) -> str:
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        return frame.select(pl.all().cast(pl.String)).write_csv() + " ".join(frame.columns)
    return path.read_bytes().decode("utf-8", "replace")


@pytest.fixture
def hostile():
    """The CoinGecko stand-in: every answer echoes the key back, one redirects away."""
    server, other = ReplayServer().start(), ReplayServer().start()
    key = CANARIES["coingecko"]
    echo = f"invalid api key {key} for this plan"
    server.add("/coins/aaa-echo", Reply(500, ("x" * 185 + " " + echo * 4).encode()))
    server.add("/coins/bbb-redirect", Reply(302, b"", {"location": f"{other.url}/steal"}))
    server.add_json("/coins/ccc-notfound", {"error": echo}, status=404)
    server.add_json("/coins/zzz-auth", {"status": {"error_message": echo}}, status=401)
    yield server, other
    server.stop()
    other.stop()


@pytest.mark.postgres
def test_no_canary_anywhere(home, hostile, pg_server_dsn):
    server, other = hostile
    schema = f"mlcanary_{uuid.uuid4().hex[:8]}"
    (home / "marketlake.toml").write_text(
        f'[postgres]\nschema = "{schema}"\n\n[providers.coingecko]\nmax_retries = 0\n'
    )
    lake = Lake(home)
    for coin in ("aaa-echo", "bbb-redirect", "ccc-notfound", "zzz-auth"):
        universe.add(lake, coin, run_id="u", provider="coingecko", asset_type="crypto")
    pw = CANARIES["dsn"]
    keyword_dsn = f"host=127.0.0.1 port=5432 dbname=test user=postgres password='x {pw}'"
    env = {SECRET_ENV[name]: CANARIES[name] for name in SECRET_ENV}
    env["MARKETLAKE_COINGECKO_BASE_URL"] = server.url
    env["MARKETLAKE_DSN"] = keyword_dsn
    runs = [
        cli(home, env, "sync", "--kinds", "profile", "--concurrency", "1", "--json"),
        cli(home, env, "load", "--json"),  # keyword form, quoted password: trust auth lets it in
        cli(home, env, "load", "--dsn", f"host=127.0.0.1 user=nobody_ml password=x;{pw}"),
        cli(home, env, "load", "--dsn", f"postgresql//postgres:{pw}@127.0.0.1/test"),
    ]
    try:
        sync = json.loads(runs[0].stdout)
        assert sync["tasks"]["failed"] == 4, runs[0].stdout + runs[0].stderr
        assert "***" in runs[0].stdout  # the echoed key reached the messages, redacted
        assert runs[1].returncode == 0, runs[1].stderr
        assert [r.returncode for r in runs[2:]] == [2, 2], [r.stderr for r in runs[2:]]
        assert "does not parse" in runs[3].stderr
        # the key went to the API's own origin only, and the redirect was not followed
        assert other.seen == []
        assert any(s.headers.get("x-cg-demo-api-key") == CANARIES["coingecko"] for s in server.seen)
        found = {}
        for i, r in enumerate(runs):
            for where, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                if leaks(text):
                    found[f"run {i} {where}"] = leaks(text)
        files = [p for p in home.rglob("*") if p.is_file() and p.name != "marketlake.toml"]
        assert any("_delta_log" in p.parts for p in files)
        for path in files:
            if leaks(file_text(path)):
                found[str(path.relative_to(home))] = leaks(file_text(path))
        rows = served_rows(pg_server_dsn, schema)
        assert rows, "the load wrote nothing to scan"
        for table, text in rows.items():
            if leaks(text):
                found[f"postgres {schema}.{table}"] = leaks(text)
        assert found == {}
    finally:
        drop(pg_server_dsn, schema)


def served_rows(dsn: str, schema: str) -> dict[str, str]:
    import psycopg

    out = {}
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            text = conn.execute(
                f'SELECT coalesce(string_agg(t::text, chr(10)), \'\') FROM "{schema}"."{table}" t'  # noqa: S608
            ).fetchone()[0]
            out[table] = text
    return out


def drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
