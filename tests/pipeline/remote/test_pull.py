"""``marketlake pull``: rows of the remote's exposed app tables changed since the last pull land
in a local lake table of the same name; soft deletes travel, hard deletes only with --full;
a table the remote does not expose, or a lake table's name, is refused."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from deltalake import DeltaTable
from remote_helpers import TOKEN, Remote

from marketlake.errors import ConfigError
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.remote.client import Remote as Target
from marketlake.pipeline.stages.pull import run_pull

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def remote(tmp_path_factory, pg_server_dsn):
    schema = f"mltest_{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("remote-pull")
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".watchlists (id bigint PRIMARY KEY, owner text NOT NULL, '
            "symbol text, note text, updated_at timestamptz NOT NULL DEFAULT now(), "
            "deleted_at timestamptz)"
        )
    srv = Remote(root / "home", root, pg_server_dsn, schema)
    srv.schema = schema
    yield srv
    srv.stop()
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def sql(remote, text: str, *params) -> None:
    with psycopg.connect(remote.dsn, autocommit=True) as conn:
        conn.execute(text.replace("{s}", f'"{remote.schema}"'), params or None)


def pull(home, remote, names=("watchlists",), full=False):
    settings = load_settings(home=home, env={})
    return run_pull(settings, Target.parse(remote.url, TOKEN), tables=list(names), full=full)


def local_rows(home) -> dict[int, tuple]:
    rows = DeltaTable(str(home / "lake" / "watchlists")).to_pyarrow_table().to_pylist()
    return {r["id"]: (r["owner"], r["symbol"], r["note"]) for r in rows}


def test_pull_changes_soft_and_hard_deletes(remote, tmp_path):
    home = tmp_path / "local"
    sql(
        remote,
        "INSERT INTO {s}.watchlists (id, owner, symbol, note) VALUES "
        "(1, 'ann', 'AAPL', NULL), (2, 'ann', 'MSFT', 'x'), (3, 'bob', 'BRK.B', NULL), "
        "(4, 'bob', 'TSLA', NULL)",
    )
    first = pull(home, remote)
    assert first.status == "ok", first.errors
    assert first.inserted == 4
    assert set(local_rows(home)) == {1, 2, 3, 4}

    again = pull(home, remote)  # rows stamped at the mark come again and change nothing
    assert again.inserted + again.updated + again.details["deleted"] == 0

    sql(remote, "UPDATE {s}.watchlists SET note = 'long', updated_at = now() WHERE id = 1")
    sql(remote, "UPDATE {s}.watchlists SET deleted_at = now(), updated_at = now() WHERE id = 2")
    sql(remote, "DELETE FROM {s}.watchlists WHERE id = 3")  # hard: leaves no change behind
    sql(remote, "INSERT INTO {s}.watchlists (id, owner, symbol) VALUES (5, 'cy', 'BTC/IDR')")
    second = pull(home, remote)
    assert (second.inserted, second.updated, second.details["deleted"]) == (1, 1, 1)
    rows = local_rows(home)
    assert set(rows) == {1, 3, 4, 5}
    assert rows[1] == ("ann", "AAPL", "long")

    full = pull(home, remote, full=True)
    assert full.details["deleted"] == 1
    assert set(local_rows(home)) == {1, 4, 5}


def test_pull_refuses_unexposed_and_lake_tables(remote, tmp_path):
    res = pull(tmp_path / "h", remote, names=["portfolios"])
    assert res.status == "failed"
    assert "not exposed for pull" in res.errors[0]
    with pytest.raises(ConfigError, match="lake table of its own"):
        pull(tmp_path / "h", remote, names=["ohlcv"])


def test_the_pull_route_needs_the_token(remote):
    import httpx

    res = httpx.get(remote.url + "/api/v1/sync/pull/watchlists", timeout=10)
    assert res.status_code == 401
    res = httpx.get(
        remote.url + "/api/v1/sync/watermarks",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert res.json()["data"]["pull"]["watchlists"]["key"] == ["id"]
