"""Rewrites: replace every row of some partitions by new files, in one commit.

A full recompute rewrites whole series; MERGEing millions of changed rows one by one is the
slow way to do that. A :class:`Rewrite` instead streams batches into new parquet files (the
table's schema plus any new float columns, page checksums, file statistics), invisible until
:meth:`Rewrite.commit` removes every file of the scoped partitions and adds the new ones in
one commit pinned to the version it read (another writer in between is a conflict, never a
silent overwrite). The change feed shows the old rows deleted and the new ones inserted.
:meth:`Rewrite.abandon` (also on an error) deletes the written files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.schema import Field
from deltalake.transaction import AddAction

from marketlake.lake._errors import CommitConflict, lake_errors
from marketlake.lake.frames import file_stats
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import TableDef, period_of_code
from marketlake.lake.writes import (
    commit_properties,
    commit_swap,
    create,
    literal,
    live_files,
    partition_file,
    remove_files,
    remove_unless_committed,
    split_rows,
    to_file_arrow,
    write_file,
)


def _arrow_of(take: Callable[[], pl.DataFrame], body: list[str], schema: pa.Schema) -> pa.Table:
    """A partition's rows (``take()``) as the Arrow table of its file."""
    return to_file_arrow(take().select(body), schema)


def _checked_body(build: Callable[[], pa.Table], schema: pa.Schema) -> pa.Table:
    """``build()``, refused unless it has ``schema``'s columns and types (text may come as
    a dictionary of its type)."""
    table = build()
    for got, want in zip(table.schema, schema, strict=False):
        typ = got.type.value_type if pa.types.is_dictionary(got.type) else got.type
        if got.name != want.name or typ != want.type:
            break
    else:
        if len(table.schema) == len(schema):
            return table
    raise ValueError(f"a file's columns {table.schema} are not {schema}")


class Rewrite:
    """New contents for the partitions of ``tdef`` whose ``column`` equals ``value`` (e.g.
    every ``timeframe=1D`` partition); batches go to disk as they come."""

    def __init__(
        self,
        dt: DeltaTable | None,
        location: LakeLocation,
        tdef: TableDef,
        column: str,
        value: str,
    ):
        if column not in tdef.partitions:
            raise ValueError(f"{tdef.name}: {column} is not a partition column")
        literal(value)
        self.dt, self.location, self.tdef = dt, location, tdef
        self.uri = location.table_uri(tdef.name)
        self.column, self.value = column, value
        self.adds: list[AddAction] = []
        self.written: list[str] = []
        self.columns: dict[str, pa.DataType] = {}
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Write ``frame`` (its partition columns included, all in this rewrite's scope; a
        ``period`` partition may come as the integer ``_pcode`` of
        :func:`~marketlake.lake.tables.with_period_code` instead: no per-row strings).

        Each partition's rows are taken by its writer thread (a slice when contiguous, else
        one gather), not split all at once first; file statistics come from the written
        footer; a text column holding one value goes as a one-entry dictionary
        (:func:`~marketlake.lake.writes.to_file_arrow`)."""
        if frame.is_empty():
            return
        parts = list(self.tdef.partitions)
        if frame.select((pl.col(self.column) != self.value).any()).item():
            raise ValueError(f"{self.tdef.name}: a row outside {self.column}={self.value}")
        coded = "_pcode" in frame.columns and "period" in parts and "period" not in frame.columns
        # the scope column is the same on every row (checked above): not split on
        keys = ["_pcode" if coded and p == "period" else p for p in parts if p != self.column]
        body = [c for c in frame.columns if c not in parts and c != "_pcode"]
        schema = self._schema(body)
        items = []
        for key, take in split_rows(frame, keys):
            got = dict(zip(keys, key, strict=True))
            if coded:
                got["period"] = period_of_code(got.pop("_pcode"))
            got[self.column] = self.value
            items.append((got, partial(_arrow_of, take, body, schema)))
        self._write(items)

    def write_arrow(
        self, body: list[str], parts: list[tuple[dict[str, str], Callable[[], pa.Table]]]
    ) -> None:
        """Write one file per item of ``parts``: its partition values (every partition
        column, this rewrite's scope included) and a function building its rows, an Arrow
        table of the ``body`` columns (text may come as dictionaries; a float column the table
        lacks is added to its schema at :meth:`commit`). For writers that lay out their
        columns themselves (a full recompute: ``kernels.layout``)."""
        schema = self._schema(body)
        for values, _ in parts:
            if values.get(self.column) != self.value:
                raise ValueError(f"{self.tdef.name}: a file outside {self.column}={self.value}")
        self._write([(values, partial(_checked_body, build, schema)) for values, build in parts])

    def _schema(self, body: list[str]) -> pa.Schema:
        """The file schema of ``body`` (the table's types, new columns float64), each column
        recorded for the commit."""
        fields = {f.name: f.type for f in self.tdef.schema if f.name not in self.tdef.partitions}
        extra = {c: pa.float64() for c in body if c not in fields}
        for c, t in {**fields, **extra}.items():
            self.columns.setdefault(c, t)
        return pa.schema([(c, self.columns[c]) for c in body])

    def _write(self, items: list[tuple[dict[str, str], Callable[[], pa.Table]]]) -> None:
        """Build and write each item's file, two at a time (pyarrow's writer releases the
        GIL); file statistics come from the written footer."""
        parts = list(self.tdef.partitions)

        def one(item: tuple[dict[str, str], Callable[[], pa.Table]]) -> tuple[AddAction, int]:
            got, build = item
            values, rel = partition_file(self.tdef.name, parts, tuple(got[p] for p in parts))
            self.written.append(rel)
            table = build()
            size, meta = write_file(self.location, self.tdef.name, rel, table)
            add = AddAction(
                rel, size, values, int(time.time() * 1000), True, file_stats(meta, table)
            )
            return add, table.num_rows

        with ThreadPoolExecutor(max_workers=2) as pool:
            for add, rows in pool.map(one, items):
                self.adds.append(add)
                self.rows += rows

    def replaces_nothing(self) -> bool:
        """Whether the snapshot this rewrite swaps holds no file in its scope: every row it
        writes is new (a first compute of a timeframe)."""
        if self.dt is None:
            return True
        col = f"partition.{self.column}"
        return not any(f.get(col) == self.value for f in live_files(self.dt))

    def commit(self, *, run_id: str, stage: str, metadata: dict[str, str] | None = None) -> int:
        """Swap the scoped partitions' files for the written ones in one commit; returns the
        number of files removed. New columns are added to the table's schema first."""
        name = self.tdef.name
        props = commit_properties(run_id, stage, metadata)
        try:
            with lake_errors("rewrite", name):
                options = self.location.storage_options
                dt = self.dt or create(self.uri, self.tdef, options)
                have = set(dt.schema().to_arrow().names)
                new = [Field.from_arrow(pa.field(c, t)) for c, t in self.columns.items()]
                new = [f for f in new if f.name not in have]
                if new:  # nullable columns only: no row changes, the swap below still pinned
                    before = dt.version()
                    dt.alter.add_columns(new, commit_properties=props)
                    dt = DeltaTable(self.uri, storage_options=options)
                    if dt.version() != before + 1:
                        raise CommitConflict(f"rewrite {name}: another writer committed")
                col = f"partition.{self.column}"
                gone = [f for f in live_files(dt) if f.get(col) == self.value]
                if not gone and not self.adds:
                    return 0
                commit_swap(dt, self.tdef, gone, self.adds, props)
        except BaseException as exc:  # the files, unless the swap landed before the error
            remove_unless_committed(self.location, name, self.written, exc)
            self.written, self.adds = [], []
            raise
        self.written = []
        return len(gone)

    def abandon(self) -> None:
        """Delete the files written so far (never committed, nothing references them)."""
        remove_files(self.location, self.tdef.name, self.written)
        self.written, self.adds = [], []


__all__ = ["Rewrite"]
