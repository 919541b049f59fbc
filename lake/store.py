"""Atomic writes, merges and reads of the lake's Delta tables.

Every write is one Delta commit carrying ``run_id`` and ``stage`` in its commit metadata.
Upserts are MERGEs on the table key that name the partitions they touch, and update a matched
row only when one of its value columns is distinct, so a re-run changes 0 rows and the
commit's metrics count real changes. Symbols are never interpolated into predicates: only
partition values, which come from fixed vocabularies and are checked, are.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction

from marketlake.errors import LakeError
from marketlake.lake.paths import ensure_home, table_path
from marketlake.lake.tables import (
    TABLES,
    TableDef,
    period_of_code,
    single_timeframe,
    with_period,
    with_period_code,
)

_SAFE_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TABLE_CONFIG = {"delta.enableChangeDataFeed": "true"}


@dataclass(frozen=True)
class WriteResult:
    """What one write did to one table."""

    table: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    version: int | None = None

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.table,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
            other.version if other.version is not None else self.version,
        )

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


_POLARS_SCHEMAS: dict[str, dict[str, pl.DataType]] = {}


def _polars_type(t: pa.DataType) -> pl.DataType:
    if pa.types.is_timestamp(t):
        return pl.Datetime(t.unit, t.tz)
    simple = {
        pa.string(): pl.String(),
        pa.float64(): pl.Float64(),
        pa.bool_(): pl.Boolean(),
        pa.int64(): pl.Int64(),
        pa.date32(): pl.Date(),
    }
    return simple[t]


def _polars_schema(name: str) -> dict[str, pl.DataType]:
    if name not in _POLARS_SCHEMAS:
        _POLARS_SCHEMAS[name] = {f.name: _polars_type(f.type) for f in TABLES[name].schema}
    return _POLARS_SCHEMAS[name]


def dedupe(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Rows with a unique key, the last of duplicates winning (arrival order = fetch order).

    Fast path: bars arrive grouped by series with increasing ts, where no duplicate can
    exist; only otherwise is a hash-based unique run.
    """
    if "ts" in key and len(key) > 1 and frame.height > 1:
        series = [c for c in key if c != "ts"]
        same = pl.all_horizontal([pl.col(c) == pl.col(c).shift(1) for c in series])
        new_run = (~same).fill_null(True)
        probe = frame.select(
            pl.when(same)
            .then(pl.col("ts") > pl.col("ts").shift(1))
            .otherwise(True)
            .fill_null(True)
            .all()
            .alias("increasing"),
            new_run.sum().alias("runs"),
        )
        if probe["increasing"][0]:
            starts = frame.filter(new_run).select(series)
            if starts.height == probe["runs"][0] and starts.n_unique() == starts.height:
                return frame
    return frame.unique(subset=key, keep="last", maintain_order=True)


# columns whose min/max readers use to skip files (key-like and price columns)
_STATS_COLUMNS = {
    "symbol",
    "ts",
    "ex_date",
    "period_end",
    "key",
    "segment",
    "run_id",
    "open",
    "high",
    "low",
    "close",
    "volume",
}


def _stats(frame: pl.DataFrame) -> str:
    """Delta file statistics (record count, min/max of key-like columns, null counts)."""
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for c, dtype in frame.schema.items():
        if c not in _STATS_COLUMNS:
            continue
        col = frame.get_column(c)
        if col.null_count() == frame.height:
            continue
        if dtype == pl.String:
            lo, hi = col.min(), col.max()
            if len(hi) < 32:
                mins[c], maxs[c] = lo, hi
        elif isinstance(dtype, pl.Datetime):
            lo, hi = col.min(), col.max()
            mins[c] = lo.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lo.microsecond // 1000:03d}Z"
            hi_ms = -(-hi.microsecond // 1000)
            if hi_ms == 1000:
                maxs[c] = None
            else:
                maxs[c] = hi.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hi_ms:03d}Z"
            if maxs[c] is None:
                del maxs[c], mins[c]
        elif dtype.is_numeric():
            lo, hi = col.min(), col.max()
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                mins[c], maxs[c] = lo, hi
    nulls = {c: frame.get_column(c).null_count() for c in frame.columns}
    return json.dumps(
        {"numRecords": frame.height, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    if not _SAFE_PARTITION_VALUE.match(value):
        raise LakeError(f"refusing unsafe partition value {value!r}")
    return "'" + value + "'"


class Lake:
    """The lake under ``home/lake``: one Delta table per :data:`lake.tables.TABLES` entry."""

    def __init__(self, home: Path, *, create: bool = True) -> None:
        self.home = Path(home)
        if create:
            ensure_home(self.home)

    @property
    def root(self) -> Path:
        """The lake's directory (its tables and its writer lock live here)."""
        return self.home / "lake"

    # -- tables -----------------------------------------------------------------
    def path(self, name: str) -> Path:
        if name not in TABLES:
            raise LakeError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        return table_path(self.home, name)

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(str(self.path(name)))

    def table(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table, or None when nothing was ever written to it."""
        try:
            return DeltaTable(str(self.path(name)), version=version)
        except TableNotFoundError:
            return None
        except DeltaError as exc:
            raise LakeError(f"cannot open lake table {name}: {exc}") from exc

    def version(self, name: str) -> int | None:
        dt = self.table(name)
        return None if dt is None else dt.version()

    def _create(self, tdef: TableDef, schema: pa.Schema) -> DeltaTable:
        try:
            return DeltaTable.create(
                str(self.path(tdef.name)),
                schema=schema,
                mode="ignore",
                partition_by=list(tdef.partitions) or None,
                configuration=TABLE_CONFIG,
            )
        except DeltaError as exc:
            raise LakeError(f"cannot create lake table {tdef.name}: {exc}") from exc

    # -- conversion ---------------------------------------------------------------
    def to_arrow(self, tdef: TableDef, frame: pl.DataFrame) -> pa.Table:
        """The frame as an arrow table in the table's schema (extra float columns kept only
        for evolving tables)."""
        missing = [c for c in tdef.key if c not in frame.columns]
        if missing:
            raise LakeError(f"{tdef.name}: frame lacks key columns {missing}")
        cols = []
        fields = []
        for f in tdef.schema:
            if f.name in frame.columns:
                cols.append(f.name)
                fields.append(f)
            else:
                frame = frame.with_columns(pl.lit(None).alias(f.name))
                cols.append(f.name)
                fields.append(f)
        if tdef.evolving:
            for c in frame.columns:
                if c not in cols:
                    cols.append(c)
                    fields.append(pa.field(c, pa.float64()))
        table = frame.select(cols).to_arrow()
        try:
            return table.cast(pa.schema(fields))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise LakeError(f"{tdef.name}: frame does not fit the table schema: {exc}") from exc

    def to_polars(self, tdef: TableDef, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame with exactly the table's columns and types (cast in polars, no copy
        through arrow)."""
        schema = _polars_schema(tdef.name)
        missing = [c for c in tdef.key if c not in frame.columns]
        if missing:
            raise LakeError(f"{tdef.name}: frame lacks key columns {missing}")
        try:
            return frame.select(
                [
                    (pl.col(c) if frame.schema[c] == t else pl.col(c).cast(t))
                    if c in frame.columns
                    else pl.lit(None, t).alias(c)
                    for c, t in schema.items()
                ]
            )
        except pl.exceptions.PolarsError as exc:
            raise LakeError(f"{tdef.name}: frame does not fit the table schema: {exc}") from exc

    # -- writes ---------------------------------------------------------------------
    def _commit(
        self, run_id: str, stage: str, extra: dict[str, str] | None = None
    ) -> CommitProperties:
        return CommitProperties(custom_metadata={"run_id": run_id, "stage": stage, **(extra or {})})

    def append(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        run_id: str,
        stage: str,
        metadata: dict[str, str] | None = None,
    ) -> WriteResult:
        """Blind append (only for rows provably absent from the table), one commit.

        Files are written by polars (one per partition, in parallel) and then committed to the
        Delta log with their statistics: until that commit they are invisible, so a crash
        leaves only unreferenced files that ``maintain`` vacuums.
        """
        tdef = TABLES[name]
        if frame.is_empty():
            return WriteResult(name)
        if tdef.evolving:
            return self._append_deltars(tdef, frame, run_id, stage, metadata)
        dt = self.table(name) or self._create(tdef, tdef.schema)
        if "period" in tdef.partitions and "period" not in frame.columns:
            # partition on an integer code; the period string exists only in the paths
            frame = with_period_code(frame).with_columns(pl.lit("", pl.String).alias("period"))
            data = self.to_polars(tdef, frame).with_columns(frame.get_column("_pcode"))
            keys = [p if p != "period" else "_pcode" for p in tdef.partitions]
            one = single_timeframe(data) if "timeframe" in keys else None
            if one is not None:  # one timeframe: partition on the integer code only
                keys.remove("timeframe")
                parts = {
                    (one, period_of_code(k[0])): part
                    for k, part in data.partition_by(
                        keys, as_dict=True, maintain_order=True
                    ).items()
                }
                keys = []
            if keys:
                parts = {
                    tuple(
                        period_of_code(v) if k == "_pcode" else v
                        for k, v in zip(keys, key, strict=True)
                    ): part
                    for key, part in data.partition_by(
                        keys, as_dict=True, maintain_order=True
                    ).items()
                }
        else:
            data = self.to_polars(tdef, frame)
            parts = (
                data.partition_by(list(tdef.partitions), as_dict=True, maintain_order=True)
                if tdef.partitions
                else {(): data}
            )
        root = self.path(name)
        cols = [c for c in tdef.schema.names if c not in tdef.partitions]

        def write(item) -> AddAction:
            key, part = item
            values = {p: str(v) for p, v in zip(tdef.partitions, key, strict=True)}
            for v in values.values():
                _literal(v)
            rel = "/".join(f"{p}={v}" for p, v in values.items())
            rel = (rel + "/" if rel else "") + f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            body = part.select(cols)
            body.write_parquet(target, compression="zstd", statistics=True)
            return AddAction(
                rel, target.stat().st_size, values, int(time.time() * 1000), True, _stats(body)
            )

        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                adds = list(pool.map(write, parts.items()))
            dt.create_write_transaction(
                adds,
                "append",
                dt.schema(),
                list(tdef.partitions),
                commit_properties=self._commit(run_id, stage, metadata),
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"append to {name} failed: {exc}") from exc
        return WriteResult(name, inserted=data.height, version=self.version(name))

    def _append_deltars(
        self,
        tdef: TableDef,
        frame: pl.DataFrame,
        run_id: str,
        stage: str,
        metadata: dict[str, str] | None,
    ) -> WriteResult:
        data = self.to_arrow(tdef, frame)
        dt = self.table(tdef.name)
        try:
            write_deltalake(
                dt if dt is not None else str(self.path(tdef.name)),
                data,
                mode="append",
                partition_by=list(tdef.partitions) or None,
                configuration=TABLE_CONFIG if dt is None else None,
                schema_mode="merge",
                commit_properties=self._commit(run_id, stage, metadata),
            )
        except DeltaError as exc:
            raise LakeError(f"append to {tdef.name} failed: {exc}") from exc
        return WriteResult(tdef.name, inserted=data.num_rows, version=self.version(tdef.name))

    def may_overlap(self, name: str, frame: pl.DataFrame, timeframe: str | None = None) -> bool:
        """False only when the table's file statistics prove that no row of ``frame`` (by
        partition, symbol and ts range) can already exist: then a blind append is safe.
        ``timeframe``: the frame's only timeframe, when the caller knows it."""
        tdef = TABLES[name]
        dt = self.table(name)
        if dt is None:
            return False
        if not {"symbol", "ts"} <= set(frame.columns) or "ts" not in tdef.schema.names:
            return True
        files = pl.from_arrow(pa.table(dt.get_add_actions(flatten=True)))
        if files.is_empty():
            return False
        need = ["min.symbol", "max.symbol", "min.ts", "max.ts"]
        if (
            any(c not in files.columns for c in need)
            or files.select(pl.any_horizontal(pl.col(need).is_null()).any()).item()
        ):
            return True
        if files.select((pl.col("max.symbol").str.len_chars() >= 32).any()).item():
            return True  # string statistics may be truncated
        # partition keys of the batch; ``period`` as an integer code (cheap on big batches)
        coded = "period" in tdef.partitions and "period" not in frame.columns
        keys = [p for p in tdef.partitions if p in frame.columns]
        if "timeframe" in keys:
            timeframe = timeframe or single_timeframe(frame)
            if timeframe is not None:
                keys.remove("timeframe")
        if coded:
            frame = with_period_code(frame, timeframe)
            keys.append("_pcode")
        if not keys:
            frame, keys = frame.with_columns(pl.lit(1).alias("_all")), ["_all"]
        # ts ranges per partition; the symbol range of the whole batch (string aggregations
        # per group are the expensive part on millions of rows)
        symbols = frame.get_column("symbol")
        ranges = (
            frame.group_by(keys)
            .agg(pl.col("ts").min().alias("lo_ts"), pl.col("ts").max().alias("hi_ts"))
            .with_columns(
                pl.lit(symbols.min()).alias("lo_sym"), pl.lit(symbols.max()).alias("hi_sym")
            )
        )
        if timeframe is not None and "timeframe" in tdef.partitions:
            ranges = ranges.with_columns(pl.lit(timeframe).alias("timeframe"))
        if ranges.select(pl.any_horizontal(pl.all().is_null()).any()).item():
            return True
        if coded:  # back to the partition's string, on the few aggregated rows only
            ranges = ranges.with_columns(
                pl.col("_pcode")
                .map_elements(period_of_code, return_dtype=pl.String)
                .alias("period")
            )
        parts = [p for p in tdef.partitions if p in ranges.columns]
        files = files.rename({f"partition.{p}": p for p in parts})
        files = files.with_columns([pl.col(p).cast(ranges.schema[p]) for p in parts])
        cand = (
            files.join(ranges, on=parts, how="inner") if parts else files.join(ranges, how="cross")
        )
        cand = cand.filter(
            (pl.col("min.ts") <= pl.col("hi_ts"))
            & (pl.col("max.ts") >= pl.col("lo_ts"))
            & (pl.col("min.symbol") <= pl.col("hi_sym"))
            & (pl.col("max.symbol") >= pl.col("lo_sym"))
        )
        if cand.is_empty():
            return False
        # ranges intersect: does any batch symbol really fall inside a candidate file's range?
        for key, part in frame.group_by(keys):
            sel = cand
            for k, v in zip(keys, key, strict=True):
                if k == "_pcode":
                    sel = sel.filter(pl.col("period") == period_of_code(v))
                elif k != "_all":
                    sel = sel.filter(pl.col(k) == v)
            if sel.is_empty():
                continue
            syms = np.sort(part.get_column("symbol").unique().to_numpy().astype(str))
            lo = np.searchsorted(syms, sel.get_column("min.symbol").to_numpy().astype(str), "left")
            hi = np.searchsorted(syms, sel.get_column("max.symbol").to_numpy().astype(str), "right")
            if (hi > lo).any():
                return True
        return False

    def upsert(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        run_id: str,
        stage: str,
        assume_new: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> WriteResult:
        """MERGE ``frame`` on the table key as one commit.

        Rows whose value columns equal the stored ones are left untouched (and counted as
        unchanged). Duplicate keys inside ``frame`` keep the last row. ``assume_new`` is the
        caller's proof that no key exists yet (then a blind append is used).
        """
        tdef = TABLES[name]
        if frame.is_empty():
            return WriteResult(name)
        if not assume_new:  # the caller proved new keys, and they are unique
            frame = dedupe(frame, list(tdef.key))
        dt = self.table(name)
        if dt is None or assume_new or not self.may_overlap(name, frame):
            return self.append(name, frame, run_id=run_id, stage=stage, metadata=metadata)
        if "period" in tdef.partitions and "period" not in frame.columns:
            frame = with_period(frame)
        frame = frame.sort([c for c in (*tdef.partitions, *tdef.key) if c in frame.columns])
        data = self.to_arrow(tdef, frame)
        on = [f"t.{_q(k)} = s.{_q(k)}" for k in tdef.key if k not in tdef.partitions]
        for p in tdef.partitions:
            values = sorted({str(v) for v in frame.get_column(p).unique().to_list()})
            on.append(f"t.{_q(p)} = s.{_q(p)}")
            on.append(f"t.{_q(p)} IN ({', '.join(_literal(v) for v in values)})")
        value_cols = [
            c
            for c in data.schema.names
            if c not in tdef.key and c not in tdef.partitions and c not in tdef.bookkeeping
        ]
        existing = set(dt.schema().to_arrow().names) if tdef.evolving else set(data.schema.names)
        # a column the table does not have yet (a new indicator) changes every non-null row
        changed = " OR ".join(
            f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})"
            if c in existing
            else f"(s.{_q(c)} IS NOT NULL)"
            for c in value_cols
        )
        try:
            merger = dt.merge(
                data,
                predicate=" AND ".join(on),
                source_alias="s",
                target_alias="t",
                merge_schema=tdef.evolving,
                commit_properties=self._commit(run_id, stage, metadata),
            )
            if changed:
                merger = merger.when_matched_update_all(predicate=changed)
            metrics = merger.when_not_matched_insert_all().execute()
        except DeltaError as exc:
            raise LakeError(f"merge into {name} failed: {exc}") from exc
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        updated = int(metrics.get("num_target_rows_updated", 0))
        return WriteResult(
            name,
            inserted=inserted,
            updated=updated,
            unchanged=data.num_rows - inserted - updated,
            version=self.version(name),
        )

    def replace(
        self, name: str, frame: pl.DataFrame, *, scope: pl.DataFrame, run_id: str, stage: str
    ) -> WriteResult:
        """Make the rows matching ``scope`` (e.g. one symbol and timeframe) equal ``frame``,
        in one commit: new rows inserted, changed rows updated, rows ``frame`` lacks deleted.

        Used when a provider re-adjusted a symbol's whole history (a split or dividend).
        The scope travels as data (the keys to delete ride in the MERGE source), never as SQL.
        """
        tdef = TABLES[name]
        dt = self.table(name)
        if dt is None:
            return self.append(name, frame, run_id=run_id, stage=stage)
        key = list(tdef.key)
        frame = frame.unique(subset=key, keep="last", maintain_order=True)
        stale = (
            self.scan(name)
            .select([*key, *[p for p in tdef.partitions if p not in key]])
            .join(scope.lazy(), on=scope.columns, how="semi")
            .join(frame.select(key).lazy(), on=key, how="anti")
            .collect()
        )
        data = self.to_arrow(tdef, frame)
        flag = "_ml_delete"
        src = pa.concat_tables(
            [
                data.append_column(flag, pa.array([False] * data.num_rows, type=pa.bool_())),
                self.to_arrow(tdef, stale).append_column(
                    flag, pa.array([True] * stale.height, type=pa.bool_())
                ),
            ]
        )
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in key)
        cols = [c for c in data.schema.names]
        value_cols = [
            c
            for c in cols
            if c not in key and c not in tdef.partitions and c not in tdef.bookkeeping
        ]
        changed = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in value_cols)
        mapping = {_q(c): f"s.{_q(c)}" for c in cols}
        try:
            merger = dt.merge(
                src,
                predicate=on,
                source_alias="s",
                target_alias="t",
                commit_properties=self._commit(run_id, stage),
            )
            merger = merger.when_matched_delete(predicate=f"s.{flag}")
            if changed:
                merger = merger.when_matched_update(
                    updates={k: v for k, v in mapping.items()}, predicate=f"({changed})"
                )
            metrics = merger.when_not_matched_insert(
                updates=mapping, predicate=f"NOT s.{flag}"
            ).execute()
        except DeltaError as exc:
            raise LakeError(f"replace in {name} failed: {exc}") from exc
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        updated = int(metrics.get("num_target_rows_updated", 0))
        deleted = int(metrics.get("num_target_rows_deleted", 0))
        return WriteResult(
            name, inserted, updated, data.num_rows - inserted - updated, deleted, self.version(name)
        )

    def delete_keys(self, name: str, keys: pl.DataFrame, *, run_id: str, stage: str) -> int:
        """Delete the rows whose key is in ``keys`` (one commit, keys bound as data)."""
        tdef = TABLES[name]
        dt = self.table(name)
        if dt is None or keys.is_empty():
            return 0
        src = keys.select(list(tdef.key)).unique().to_arrow()
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in tdef.key)
        metrics = (
            dt.merge(
                src,
                predicate=on,
                source_alias="s",
                target_alias="t",
                commit_properties=self._commit(run_id, stage),
            )
            .when_matched_delete()
            .execute()
        )
        return int(metrics.get("num_target_rows_deleted", 0))

    # -- reads ------------------------------------------------------------------------
    def empty(self, name: str) -> pl.DataFrame:
        return pl.from_arrow(TABLES[name].schema.empty_table())

    def scan(self, name: str, version: int | None = None) -> pl.LazyFrame:
        """A lazy polars scan of the table (an empty frame of the right schema if absent)."""
        if not self.exists(name):
            return self.empty(name).lazy()
        try:
            return pl.scan_delta(str(self.path(name)), version=version)
        except Exception as exc:  # polars raises several foreign types here
            raise LakeError(f"cannot read lake table {name}: {exc}") from exc

    def read(self, name: str, version: int | None = None) -> pl.DataFrame:
        return self.scan(name, version).collect()

    def changes(
        self, name: str, starting_version: int, ending_version: int | None = None
    ) -> pl.DataFrame:
        """The change data feed between two versions (inclusive)."""
        dt = self.table(name)
        if dt is None:
            return self.empty(name)
        reader = dt.load_cdf(
            starting_version=starting_version,
            ending_version=ending_version,
            allow_out_of_range=True,
        )
        return pl.from_arrow(pa.table(reader))

    def mark(self, name: str, *, run_id: str, stage: str, metadata: dict[str, str]) -> None:
        """An empty commit that only records ``metadata`` (e.g. a watermark)."""
        dt = self.table(name)
        if dt is None:
            return
        try:
            dt.create_write_transaction(
                [],
                "append",
                dt.metadata().partition_columns,
                dt.schema(),
                commit_properties=self._commit(run_id, stage, metadata),
            )
        except DeltaError as exc:
            raise LakeError(f"cannot record metadata on {name}: {exc}") from exc

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        dt = self.table(name)
        return [] if dt is None else dt.history(limit)
