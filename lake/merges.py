"""MERGEs: upserts that touch only changed rows, scoped replaces, key deletes.

Done here rather than by delta-rs' MERGE because delta-rs writes parquet without page
checksums. A merge reads the target files that may hold the source's keys (the partitions in
scope, pruned by the files' key statistics; pages verified), then in one commit pinned to
the snapshot it read (see :mod:`marketlake.lake.writes`): rewrites only the files holding a
row that changes or goes, and adds new files for new keys (page checksums on). A matched
row is updated only when a value column is distinct, so a re-run changes 0 rows and commits
nothing. Keys match as in SQL: a null never equals anything, so a row with a null key
column is always new. Files are swapped whole, so the change feed shows a rewritten file's unchanged rows
deleted and re-inserted with equal values: :func:`net_changes` drops those pairs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.schema import Field
from deltalake.transaction import AddAction

from marketlake.lake._errors import CommitConflict, lake_errors
from marketlake.lake.frames import typed
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import TableDef, with_period
from marketlake.lake.verified import damaged
from marketlake.lake.writes import (
    commit_swap,
    literal,
    remove_unless_committed,
    write_partitioned,
)

_FILE = "_ml_file"
_CDF = ("_change_type", "_commit_version", "_commit_timestamp")


def _frame(tdef: TableDef, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in the table's types (extra float columns kept for evolving tables), with
    its partition columns."""
    if "period" in tdef.partitions and "period" not in frame.columns:
        frame = with_period(frame)
    return typed(tdef, frame)


def _candidates(dt: DeltaTable, tdef: TableDef, src: pl.DataFrame) -> list[dict[str, Any]]:
    """Add actions of the files that may hold a key of ``src``: in its partitions, and with
    key statistics overlapping its range."""
    if src.is_empty():
        return []
    scope = {
        p: set(src.get_column(p).cast(pl.String).unique().to_list())
        for p in tdef.partitions
        if p in src.columns and src.get_column(p).null_count() == 0
    }
    ranges = {
        k: (src.get_column(k).min(), src.get_column(k).max())
        for k in tdef.key
        if k in src.columns and k not in tdef.partitions and src.get_column(k).null_count() == 0
    }
    return candidates(dt, scope, ranges)


def candidates(
    dt: DeltaTable, scope: dict[str, set[str]], ranges: dict[str, tuple[Any, Any]]
) -> list[dict[str, Any]]:
    """Add actions (flattened) of the files whose partition values are in ``scope`` (per
    partition column) and whose key statistics overlap ``ranges`` (per key column)."""
    # the log's actions through polars: pyarrow's ``table`` and its datetimes import pandas
    return [
        f
        for f in pl.DataFrame(dt.get_add_actions(flatten=True)).to_dicts()
        if all(f.get(f"partition.{p}") in values for p, values in scope.items())
        and not any(
            _outside(f.get(f"min.{k}"), f.get(f"max.{k}"), lo, hi) for k, (lo, hi) in ranges.items()
        )
    ]


def _outside(fmin: Any, fmax: Any, lo: Any, hi: Any) -> bool:
    """True when file statistics [fmin, fmax] prove no value in [lo, hi] is in the file
    (strings of 32+ characters may be truncated statistics: never trusted)."""
    if fmin is None or fmax is None or lo is None or hi is None:
        return False
    if any(isinstance(v, str) and len(v) >= 32 for v in (fmin, fmax)):
        return False
    try:
        return bool(fmax < lo or fmin > hi)
    except TypeError:
        return False


def read_file(
    location: LakeLocation, tdef: TableDef, f: dict[str, Any], index: int | None = None
) -> pl.DataFrame:
    """The data file of add action ``f`` (pages verified) with its partition values (and
    ``index`` in a ``_ml_file`` column, if given)."""
    rel = unquote(f["path"])
    key = f"{tdef.name}/{rel}"
    try:
        source = location.path / key if location.is_local else pa.BufferReader(location.get(key))
        # one file: ParquetFile, as read_table builds a dataset (importing pandas)
        data = pq.ParquetFile(source, page_checksum_verification=True).read()
    except (OSError, pa.ArrowException) as exc:
        raise damaged(tdef.name, rel, exc) from exc
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(
        [pl.lit(f.get(f"partition.{p}"), pl.String).alias(p) for p in tdef.partitions]
    )
    return frame if index is None else frame.with_columns(pl.lit(index, pl.Int32).alias(_FILE))


def _distinct(table_cols: set[str], cols: list[str]) -> pl.Expr:
    """A matched row changes when a value column is distinct (null-safe); a column the table
    lacks (a new indicator) changes every row where the source has a value."""
    terms = [
        pl.col(c).ne_missing(pl.col(f"{c}__t")) if c in table_cols else pl.col(c).is_not_null()
        for c in cols
    ]
    return pl.any_horizontal(terms) if terms else pl.lit(False)


def _merge(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    rows: pl.DataFrame,
    deletes: pl.DataFrame | None,
    props: CommitProperties,
    kind: str,
) -> tuple[int, int, int, int]:
    """Upsert ``rows`` (unique keys, in the table's types) and delete the keys of ``deletes``
    in one commit on top of ``dt``; (inserted, updated, unchanged, deleted). The commit
    records ``merge`` (``kind``) and its row counts in its metadata."""
    key = list(tdef.key)
    table_schema = pa.schema(dt.schema().to_arrow())
    table_cols = set(table_schema.names)
    skip = {*tdef.key, *tdef.partitions, *tdef.bookkeeping}
    value_cols = [c for c in rows.columns if c not in skip]
    probe = pl.concat(
        [rows.select(key + [p for p in tdef.partitions if p not in key])]
        + ([deletes.select(rows.select(key).columns)] if deletes is not None else []),
        how="diagonal_relaxed",
    )
    files = _candidates(dt, tdef, probe)
    target = (
        pl.concat(
            [read_file(location, tdef, f, i) for i, f in enumerate(files)], how="diagonal_relaxed"
        )
        if files
        else None
    )

    if target is None or target.is_empty():
        inserted, changed, gone = rows, rows.clear(), None
    else:
        tkeys = target.select([*key, _FILE])
        inserted = rows.join(tkeys, on=key, how="anti")
        present = set(target.columns)
        tvals = target.select(
            [*key, _FILE, *[pl.col(c).alias(f"{c}__t") for c in value_cols if c in present]]
        )
        matched = rows.join(tvals, on=key, how="inner")
        changed = matched.filter(_distinct(present, value_cols))
        gone = (
            tkeys.join(deletes.select(key), on=key, how="semi")
            if deletes is not None and not deletes.is_empty()
            else None
        )
    touched = set(changed.get_column(_FILE).to_list()) if _FILE in changed.columns else set()
    if gone is not None:
        touched |= set(gone.get_column(_FILE).to_list())
    n_gone = 0 if gone is None else gone.height
    if inserted.is_empty() and not touched:
        return 0, 0, rows.height, 0

    # columns the table lacks: a defined one (an older lake) with its type, a new
    # indicator as a float
    defined = {f.name: f.type for f in tdef.schema}
    new_cols = {c: defined.get(c, pa.float64()) for c in rows.columns if c not in table_cols}
    columns = {f.name: f.type for f in table_schema if f.name not in tdef.partitions}
    columns.update(new_cols)
    written: list[AddAction] = []
    try:
        if new_cols:  # nullable float columns only: no row changes, the swap stays pinned
            before = dt.version()
            fields = [Field.from_arrow(pa.field(c, t)) for c, t in new_cols.items()]
            dt.alter.add_columns(fields, commit_properties=props)
            dt = DeltaTable(location.table_uri(tdef.name), storage_options=location.storage_options)
            if dt.version() != before + 1:
                raise CommitConflict(f"merge into {tdef.name}: another writer committed")
        order = [c for c in ("symbol", "timeframe", "ts") if c in key] or key
        if touched:
            assert target is not None
            drop = changed.select(key)
            if gone is not None:
                drop = pl.concat([drop, gone.select(key)])
            kept = target.filter(pl.col(_FILE).is_in(list(touched))).join(drop, on=key, how="anti")
            updated = changed.drop([c for c in changed.columns if c.endswith("__t")])
            fill = [c for c in target.columns if c not in updated.columns]
            if fill:  # columns the source lacks keep the target's values
                updated = updated.join(target.select([*key, *fill]), on=key, how="left")
            body = pl.concat([kept, updated], how="diagonal_relaxed").drop(_FILE, strict=False)
            written += write_partitioned(location, tdef, body.sort(order), columns)
        if not inserted.is_empty():
            written += write_partitioned(location, tdef, inserted.sort(order), columns)
        counts = {
            "merge": kind,
            "merge_inserted": str(inserted.height),
            "merge_updated": str(changed.height),
            "merge_deleted": str(n_gone),
        }
        props = CommitProperties(
            custom_metadata={**(props.custom_metadata or {}), **counts},
            max_commit_retries=props.max_commit_retries,
        )
        commit_swap(dt, tdef, [files[i] for i in sorted(touched)], written, props)
    except BaseException as exc:
        remove_unless_committed(location, tdef.name, [a.path for a in written], exc)
        raise
    return inserted.height, changed.height, rows.height - inserted.height - changed.height, n_gone


def merge_upsert(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    frame: pl.DataFrame,
    props: CommitProperties,
) -> tuple[int, int, int, int]:
    """MERGE ``frame`` (unique keys) on the table key; (inserted, updated, unchanged, deleted)."""
    with lake_errors("merge into", tdef.name):
        return _merge(dt, location, tdef, _frame(tdef, frame), None, props, "upsert")


def merge_replace(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    frame: pl.DataFrame,
    stale: pl.DataFrame,
    props: CommitProperties,
) -> tuple[int, int, int, int]:
    """Insert/update ``frame`` and delete the ``stale`` keys in one commit."""
    with lake_errors("replace in", tdef.name):
        return _merge(dt, location, tdef, _frame(tdef, frame), stale, props, "replace")


def merge_delete(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    keys: pl.DataFrame,
    props: CommitProperties,
) -> int:
    """Delete the rows whose key is in ``keys``; returns how many."""
    empty = _frame(tdef, keys.head(0).select(list(tdef.key)))
    with lake_errors("delete from", tdef.name):
        deletes = keys.select(list(tdef.key)).unique()
        return _merge(dt, location, tdef, empty, deletes, props, "delete")[3]


def move_into_columns(
    dt: DeltaTable,
    location: LakeLocation,
    tdef: TableDef,
    table: pl.DataFrame,
    props: CommitProperties,
) -> None:
    """The one-time move of data into columns an older lake lacks (see
    :mod:`marketlake.lake.evolve`): ``table`` (the whole table at ``dt``'s version, in its
    new shape, the moved rows rewritten) replaces every file in ONE commit that also adds the
    columns (an overwrite carrying the new schema: a crash between two commits would leave
    the columns added and the data never moved), pinned to ``dt``'s version. Written with
    page checksums like every other write; only small tables (instruments) move data."""
    have = pa.schema(dt.schema().to_arrow())
    added = [f for f in tdef.schema if f.name not in have.names and f.nullable]
    schema = pa.schema([*have, *added])
    columns = {f.name: f.type for f in schema if f.name not in tdef.partitions}
    order = [c for c in ("symbol", "timeframe", "ts") if c in tdef.key] or list(tdef.key)
    body = table.with_columns([pl.col(p).cast(pl.String) for p in tdef.partitions])
    adds = write_partitioned(location, tdef, body.select(schema.names).sort(order), columns)
    try:
        with lake_errors("move data into new columns of", tdef.name):
            dt.create_write_transaction(
                adds, "overwrite", schema, list(tdef.partitions), commit_properties=props
            )
    except BaseException as exc:
        remove_unless_committed(location, tdef.name, [a.path for a in adds], exc)
        raise


def net_changes(feed: pl.DataFrame) -> pl.DataFrame:
    """A change feed without the rows a merge deleted and re-inserted unchanged (a file
    swapped whole): within one commit, an insert equal in every column to a delete cancels
    it."""
    if feed.is_empty() or "_change_type" not in feed.columns:
        return feed
    cols = [c for c in feed.columns if c not in _CDF]
    on = [*cols, "_commit_version"]
    ins = feed.filter(pl.col("_change_type") == "insert")
    dels = feed.filter(pl.col("_change_type") == "delete")
    if ins.is_empty() or dels.is_empty():
        return feed
    rest = feed.filter(~pl.col("_change_type").is_in(["insert", "delete"]))
    return pl.concat(
        [
            rest,
            ins.join(dels.select(on), on=on, how="anti", nulls_equal=True),
            dels.join(ins.select(on), on=on, how="anti", nulls_equal=True),
        ]
    )


__all__ = [
    "candidates",
    "literal",
    "merge_delete",
    "move_into_columns",
    "merge_replace",
    "merge_upsert",
    "net_changes",
    "read_file",
]
