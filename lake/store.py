"""Atomic writes, merges and reads of the lake's Delta tables.

Every write is one Delta commit carrying ``run_id`` and ``stage`` in its commit metadata.
Upserts are MERGEs on the table key that name the partitions they touch, and update a matched
row only when one of its value columns is distinct, so a re-run changes 0 rows and the
commit's metrics count real changes. Symbols are never interpolated into predicates: only
partition values, which come from fixed vocabularies and are checked, are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from lake.paths import ensure_home, table_path
from lake.tables import TABLES, TableDef
from pipeline.errors import LakeError

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

    # -- writes ---------------------------------------------------------------------
    def _commit(self, run_id: str, stage: str,
                extra: dict[str, str] | None = None) -> CommitProperties:
        return CommitProperties(custom_metadata={"run_id": run_id, "stage": stage,
                                                 **(extra or {})})

    def append(self, name: str, frame: pl.DataFrame, *, run_id: str, stage: str,
               metadata: dict[str, str] | None = None) -> WriteResult:
        """Blind append: only for rows provably absent from the table."""
        tdef = TABLES[name]
        if frame.is_empty():
            return WriteResult(name)
        data = self.to_arrow(tdef, frame)
        dt = self.table(name)
        try:
            write_deltalake(
                dt if dt is not None else str(self.path(name)),
                data,
                mode="append",
                partition_by=list(tdef.partitions) or None,
                configuration=TABLE_CONFIG if dt is None else None,
                schema_mode="merge" if tdef.evolving else None,
                commit_properties=self._commit(run_id, stage, metadata),
            )
        except DeltaError as exc:
            raise LakeError(f"append to {name} failed: {exc}") from exc
        return WriteResult(name, inserted=data.num_rows, version=self.version(name))

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
        frame = frame.unique(subset=list(tdef.key), keep="last", maintain_order=True)
        if tdef.partitions or "ts" in frame.columns:
            order = [c for c in (*tdef.partitions, *tdef.key) if c in frame.columns]
            frame = frame.sort(order)
        dt = self.table(name)
        if dt is None or assume_new:
            return self.append(name, frame, run_id=run_id, stage=stage, metadata=metadata)
        data = self.to_arrow(tdef, frame)
        on = [f"t.{_q(k)} = s.{_q(k)}" for k in tdef.key if k not in tdef.partitions]
        for p in tdef.partitions:
            values = sorted({str(v) for v in frame.get_column(p).unique().to_list()})
            on.append(f"t.{_q(p)} = s.{_q(p)}")
            on.append(f"t.{_q(p)} IN ({', '.join(_literal(v) for v in values)})")
        value_cols = [c for c in data.schema.names if c not in tdef.key and c not in tdef.partitions
                      and c not in tdef.bookkeeping]
        changed = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in value_cols)
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
                self.to_arrow(tdef, stale).append_column(flag, pa.array([True] * stale.height,
                                                                    type=pa.bool_())),
            ]
        )
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in key)
        cols = [c for c in data.schema.names]
        value_cols = [c for c in cols if c not in key and c not in tdef.partitions
                      and c not in tdef.bookkeeping]
        changed = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in value_cols)
        mapping = {_q(c): f"s.{_q(c)}" for c in cols}
        try:
            merger = dt.merge(src, predicate=on, source_alias="s", target_alias="t",
                              commit_properties=self._commit(run_id, stage))
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
        return WriteResult(name, inserted, updated, data.num_rows - inserted - updated, deleted,
                           self.version(name))

    def delete_keys(self, name: str, keys: pl.DataFrame, *, run_id: str, stage: str) -> int:
        """Delete the rows whose key is in ``keys`` (one commit, keys bound as data)."""
        tdef = TABLES[name]
        dt = self.table(name)
        if dt is None or keys.is_empty():
            return 0
        src = keys.select(list(tdef.key)).unique().to_arrow()
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in tdef.key)
        metrics = (
            dt.merge(src, predicate=on, source_alias="s", target_alias="t",
                     commit_properties=self._commit(run_id, stage))
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
        reader = dt.load_cdf(starting_version=starting_version, ending_version=ending_version,
                             allow_out_of_range=True)
        return pl.from_arrow(pa.table(reader))

    def mark(self, name: str, *, run_id: str, stage: str, metadata: dict[str, str]) -> None:
        """An empty commit that only records ``metadata`` (e.g. a watermark)."""
        dt = self.table(name)
        if dt is None:
            return
        try:
            dt.create_write_transaction([], "append", dt.metadata().partition_columns,
                                        dt.schema(),
                                        commit_properties=self._commit(run_id, stage, metadata))
        except DeltaError as exc:
            raise LakeError(f"cannot record metadata on {name}: {exc}") from exc

    def history(self, name: str, limit: int | None = None) -> list[dict]:
        dt = self.table(name)
        return [] if dt is None else dt.history(limit)
