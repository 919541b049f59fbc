"""A stream of record batches written as a Delta table's parquet data files in bounded memory.

delta-rs' writer keeps each partition's rows in memory until a file is full, so a large push
into many partitions held most of the push at once. Here each partition's rows are buffered
only up to a row group (``GROUP_ROWS``), all partitions together at most ``BUFFER_ROWS`` (the
largest buffer is written out first), and a file is closed at ``FILE_ROWS`` rows or when more
than ``OPEN_FILES`` are open. Files are written with the lake's parquet options (page
checksums, and the footer mark saying so) and stay invisible until the caller commits their add
actions in one transaction. On an object store a file is written to a local scratch file first
(:mod:`marketlake.lake.scratch`: removed even after a kill), then uploaded in parts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from marketlake.errors import ValidationError
from marketlake.lake.frames import stats
from marketlake.lake.location import LakeLocation, storage_errors
from marketlake.lake.scratch import Scratch
from marketlake.lake.tables import TableDef
from marketlake.lake.writes import CHECKSUM_MARK, PARQUET_OPTIONS, literal, remove_files


@dataclass(frozen=True)
class Bounds:
    """How many rows the writer holds: per row group, in all buffers, per file; open files."""

    group_rows: int = 131_072
    buffer_rows: int = 262_144
    file_rows: int = 4_194_304
    open_files: int = 16


BOUNDS = Bounds()


@dataclass
class _File:
    rel: str
    values: dict[str, str]
    local: Path
    writer: pq.ParquetWriter
    rows: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    used: float = 0.0


@dataclass
class _Buffer:
    values: dict[str, str]
    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0


@dataclass
class FileWriter:
    """Writes batches in the table's ``schema`` (partition columns included) as data files of
    ``tdef`` at ``location``; :meth:`finish` returns the add actions, :meth:`abort` removes
    every file written."""

    location: LakeLocation
    tdef: TableDef
    schema: pa.Schema
    bounds: Bounds = BOUNDS
    rows: int = 0
    peak_buffered: int = 0  # the most rows held at once (the memory bound, observable)
    _buffers: dict[tuple, _Buffer] = field(default_factory=dict)
    _open: dict[tuple, _File] = field(default_factory=dict)
    _done: list[AddAction] = field(default_factory=list)
    _written: list[str] = field(default_factory=list)
    staging: Path | None = None  # where object-store uploads are staged (None: own scratch)
    _tmp: Scratch | None = None

    def __post_init__(self) -> None:
        parts = self.tdef.partitions
        self._data = pa.schema([f for f in self.schema if f.name not in parts])
        self._text = [
            f.name
            for f in self._data
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        if not self.location.is_local:
            if self.staging is None:
                self._tmp = Scratch("files")
                self.staging = self._tmp.path
            else:
                self.staging.mkdir(parents=True, exist_ok=True)

    # -- input --------------------------------------------------------------------------
    def write_all(self, batches: Iterable[pa.RecordBatch]) -> list[AddAction]:
        try:
            for batch in batches:
                self.write(batch)
            return self.finish()
        except BaseException:
            self.abort()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        parts = list(self.tdef.partitions)
        table = pa.Table.from_batches([batch])
        if parts:
            groups = pl.from_arrow(table.select(parts)).with_row_index("_i")
            split = groups.group_by(parts, maintain_order=True).agg(pl.col("_i"))
            items = [
                (tuple(row[:-1]), table.take(pa.array(row[-1], pa.uint32())))
                for row in split.iter_rows()
            ]
        else:
            items = [((), table)]
        for key, part in items:
            buf = self._buffers.get(key)
            if buf is None:
                values = {p: str(v) for p, v in zip(parts, key, strict=True)}
                for p, v in zip(parts, key, strict=True):
                    if v is None:
                        raise ValidationError(f"{self.tdef.name}: a row has no {p}")
                    literal(str(v))
                buf = self._buffers[key] = _Buffer(values)
            buf.parts.append(part.select(self._data.names))
            buf.rows += part.num_rows
            self.rows += part.num_rows
            held = sum(b.rows for b in self._buffers.values())
            self.peak_buffered = max(self.peak_buffered, held)
            if buf.rows >= self.bounds.group_rows:
                self._flush(key)
            elif held > self.bounds.buffer_rows:
                self._flush(max(self._buffers, key=lambda k: self._buffers[k].rows))

    # -- output -------------------------------------------------------------------------
    def _flush(self, key: tuple) -> None:
        buf = self._buffers.pop(key)
        data = pa.concat_tables(buf.parts).cast(self._data)
        buf.parts.clear()
        out = self._open.get(key)
        if out is None:
            if len(self._open) >= self.bounds.open_files:
                self._close(min(self._open, key=lambda k: self._open[k].used))
            out = self._open[key] = self._new_file(buf.values)
        out.writer.write_table(data, row_group_size=self.bounds.group_rows)
        out.rows += data.num_rows
        out.used = time.monotonic()
        _merge_stats(out.stats, json.loads(stats(pl.from_arrow(data))))
        if out.rows >= self.bounds.file_rows:
            self._close(key)

    def _new_file(self, values: dict[str, str]) -> _File:
        rel = "/".join(f"{p}={v}" for p, v in values.items())
        rel = (rel + "/" if rel else "") + f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
        if self.location.is_local:
            local = self.location.path / self.tdef.name / rel
            local.parent.mkdir(parents=True, exist_ok=True)
        else:
            assert self.staging is not None
            local = self.staging / rel.replace("/", "_")
        self._written.append(rel)
        writer = pq.ParquetWriter(
            str(local), self._data, **{**PARQUET_OPTIONS, "use_dictionary": self._text}
        )
        return _File(rel, values, local, writer)

    def _close(self, key: tuple) -> None:
        out = self._open.pop(key)
        out.writer.add_key_value_metadata(CHECKSUM_MARK)
        out.writer.close()
        if self.location.is_local:
            size = out.local.stat().st_size
        else:
            import obstore

            size = out.local.stat().st_size
            with storage_errors("write", f"{self.tdef.name}/{out.rel}"):
                obstore.put(self.location.store(), f"{self.tdef.name}/{out.rel}", out.local)
            out.local.unlink()
        self._done.append(
            AddAction(
                out.rel,
                size,
                out.values,
                int(time.time() * 1000),
                True,
                _stats_json(out.stats),
            )
        )

    def finish(self) -> list[AddAction]:
        """Write what is buffered, close every file; the add actions of all files."""
        for key in list(self._buffers):
            self._flush(key)
        for key in list(self._open):
            self._close(key)
        self._cleanup()
        return self._done

    def abort(self) -> None:
        """Close and remove every file this writer made (nothing was committed)."""
        for out in self._open.values():
            try:
                out.writer.close()
            except Exception:  # noqa: S110 (the file is removed next)
                pass
            if not self.location.is_local:
                out.local.unlink(missing_ok=True)
        self._open.clear()
        self._buffers.clear()
        remove_files(self.location, self.tdef.name, self._written)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None


def _merge_stats(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Fold one row group's Delta statistics into the file's: record and null counts add up;
    a column keeps a min/max only while every row group with values had one."""
    rows = part["numRecords"]
    if not into:
        into.update(numRecords=0, minValues={}, maxValues={}, nullCount={}, dropped=set())
    into["numRecords"] += rows
    for c, nulls in part["nullCount"].items():
        into["nullCount"][c] = into["nullCount"].get(c, 0) + nulls
        if nulls == rows or c in into["dropped"]:
            continue  # all null here: says nothing about the range
        if c not in part["minValues"]:
            into["dropped"].add(c)
            into["minValues"].pop(c, None)
            into["maxValues"].pop(c, None)
        elif c in into["minValues"]:
            into["minValues"][c] = min(into["minValues"][c], part["minValues"][c])
            into["maxValues"][c] = max(into["maxValues"][c], part["maxValues"][c])
        else:
            into["minValues"][c] = part["minValues"][c]
            into["maxValues"][c] = part["maxValues"][c]


def _stats_json(merged: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in merged.items() if k != "dropped"})
