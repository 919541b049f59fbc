"""MERGEs: upserts that touch only changed rows, scoped replaces, key deletes.

Each is one commit pinned to the snapshot it read (see :mod:`marketlake.lake.writes`). A
matched row is updated only when a value column is distinct, so a re-run changes 0 rows and
the commit's metrics count real changes. Symbols are never interpolated into predicates:
only partition values, which come from fixed vocabularies and are checked, are.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable

from marketlake.lake._errors import lake_errors
from marketlake.lake.frames import to_arrow
from marketlake.lake.tables import TableDef, with_period
from marketlake.lake.writes import literal


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _counts(metrics: dict, rows: int) -> tuple[int, int, int, int]:
    inserted = int(metrics.get("num_target_rows_inserted", 0))
    updated = int(metrics.get("num_target_rows_updated", 0))
    deleted = int(metrics.get("num_target_rows_deleted", 0))
    return inserted, updated, rows - inserted - updated, deleted


def merge_upsert(
    dt: DeltaTable,
    tdef: TableDef,
    frame: pl.DataFrame,
    props: CommitProperties,
    *,
    merge_schema: bool | None = None,
) -> tuple[int, int, int, int]:
    """MERGE ``frame`` (unique keys) on the table key; (inserted, updated, unchanged, deleted).
    ``merge_schema`` (default: the table's ``evolving``) adds the frame's columns the table
    lacks in the same commit."""
    if merge_schema is None:
        merge_schema = tdef.evolving
    if "period" in tdef.partitions and "period" not in frame.columns:
        frame = with_period(frame)
    frame = frame.sort([c for c in (*tdef.partitions, *tdef.key) if c in frame.columns])
    data = to_arrow(tdef, frame)
    on = [f"t.{q(k)} = s.{q(k)}" for k in tdef.key if k not in tdef.partitions]
    for p in tdef.partitions:
        values = sorted({str(v) for v in frame.get_column(p).unique().to_list()})
        on.append(f"t.{q(p)} = s.{q(p)}")
        on.append(f"t.{q(p)} IN ({', '.join(literal(v) for v in values)})")
    skip = {*tdef.key, *tdef.partitions, *tdef.bookkeeping}
    value_cols = [c for c in data.schema.names if c not in skip]
    with lake_errors("merge into", tdef.name):
        existing = set(dt.schema().to_arrow().names) if merge_schema else set(data.schema.names)
        # a column the table does not have yet (a new indicator) changes every non-null row
        changed = " OR ".join(
            f"(t.{q(c)} IS DISTINCT FROM s.{q(c)})" if c in existing else f"(s.{q(c)} IS NOT NULL)"
            for c in value_cols
        )
        merger = dt.merge(
            data,
            predicate=" AND ".join(on),
            source_alias="s",
            target_alias="t",
            merge_schema=merge_schema,
            commit_properties=props,
        )
        if changed:
            merger = merger.when_matched_update_all(predicate=changed)
        metrics = merger.when_not_matched_insert_all().execute()
    return _counts(metrics, data.num_rows)


def merge_replace(
    dt: DeltaTable,
    tdef: TableDef,
    frame: pl.DataFrame,
    stale: pl.DataFrame,
    props: CommitProperties,
) -> tuple[int, int, int, int]:
    """Insert/update ``frame`` and delete the ``stale`` keys in one MERGE (the keys to delete
    ride in the source as data, flagged, never as SQL)."""
    key = list(tdef.key)
    data = to_arrow(tdef, frame)
    flag = "_ml_delete"
    src = pa.concat_tables(
        [
            data.append_column(flag, pa.array([False] * data.num_rows, type=pa.bool_())),
            to_arrow(tdef, stale).append_column(
                flag, pa.array([True] * stale.height, type=pa.bool_())
            ),
        ]
    )
    on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in key)
    cols = list(data.schema.names)
    skip = {*key, *tdef.partitions, *tdef.bookkeeping}
    changed = " OR ".join(f"(t.{q(c)} IS DISTINCT FROM s.{q(c)})" for c in cols if c not in skip)
    mapping = {q(c): f"s.{q(c)}" for c in cols}
    with lake_errors("replace in", tdef.name):
        merger = dt.merge(
            src, predicate=on, source_alias="s", target_alias="t", commit_properties=props
        )
        merger = merger.when_matched_delete(predicate=f"s.{flag}")
        if changed:
            merger = merger.when_matched_update(updates=dict(mapping), predicate=f"({changed})")
        metrics = merger.when_not_matched_insert(
            updates=mapping, predicate=f"NOT s.{flag}"
        ).execute()
    return _counts(metrics, data.num_rows)


def merge_delete(
    dt: DeltaTable, tdef: TableDef, keys: pl.DataFrame, props: CommitProperties
) -> int:
    """Delete the rows whose key is in ``keys``; returns how many."""
    src = keys.select(list(tdef.key)).unique().to_arrow()
    on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in tdef.key)
    with lake_errors("delete from", tdef.name):
        metrics = (
            dt.merge(src, predicate=on, source_alias="s", target_alias="t", commit_properties=props)
            .when_matched_delete()
            .execute()
        )
    return int(metrics.get("num_target_rows_deleted", 0))
