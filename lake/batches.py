"""A Delta table's rows at its version, read file by file in record batches of bounded size.

pyarrow's dataset scanner decodes a whole row group (and reads ahead several) before it slices
batches off it, and the lake writes a partition's rows as one large row group, so a scan held
a partition-sized table. ``ParquetFile.iter_batches`` without pre-buffering, reading column
chunks through a small buffer, decodes ``batch_rows`` rows at a time instead (page checksums
verified); each batch gets its file's partition values as columns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from marketlake.lake._errors import lake_errors

BATCH_ROWS = 65_536
READ_BUFFER = 1 << 20  # bytes read at a time from a column chunk (0 would read it whole)


def count_rows(dt: DeltaTable) -> int:
    """The table's row count (from the files' metadata)."""
    return dt.to_pyarrow_dataset().count_rows()


def iter_batches(
    dt: DeltaTable,
    name: str,
    columns: list[str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Every row of ``dt`` (at its version) in batches of at most ``batch_rows`` rows, with
    the partition columns (``columns`` only, when given). A file written before a column was
    added lacks it: callers cast by name (:func:`conform`)."""
    import pyarrow.dataset as pds  # imports pandas: only when a whole table is streamed

    with lake_errors("read", name):
        dataset = dt.to_pyarrow_dataset()
        schema = dataset.schema
        fragments = list(dataset.get_fragments())
    for fragment in fragments:
        keys = pds.get_partition_keys(fragment.partition_expression)
        with lake_errors("read", name):
            pf = pq.ParquetFile(
                fragment.path,
                filesystem=dataset.filesystem,
                pre_buffer=False,
                buffer_size=READ_BUFFER,
                page_checksum_verification=True,
            )
            have = set(pf.schema_arrow.names)
            wanted = None if columns is None else [c for c in columns if c in have]
            for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False):
                if not batch.num_rows:
                    continue
                for col, value in keys.items():
                    if batch.schema.get_field_index(col) < 0 and (
                        columns is None or col in columns
                    ):
                        field = schema.field(col)
                        value = pa.scalar(value).cast(field.type)
                        batch = batch.append_column(field, pa.repeat(value, batch.num_rows))
                yield _nullable_as(batch, schema)


def _nullable_as(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with its columns nullable where ``schema`` (the table's) has them so: a file
    stores a column that holds no null as required (:mod:`.writes`), and the batches of a
    table's files are to share one schema (no copy)."""
    fields = [
        f.with_nullable(True)
        if not f.nullable and (i := schema.get_field_index(f.name)) >= 0 and schema[i].nullable
        else f
        for f in batch.schema
    ]
    if all(f.nullable == g.nullable for f, g in zip(fields, batch.schema, strict=True)):
        return batch
    return pa.RecordBatch.from_arrays(
        batch.columns, schema=pa.schema(fields, batch.schema.metadata)
    )


def conform(batches, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Each batch in ``schema`` (columns by name; a column the batch lacks is null)."""
    for batch in batches:
        cols = []
        for field in schema:
            idx = batch.schema.get_field_index(field.name)
            col = batch.column(idx) if idx >= 0 else pa.nulls(batch.num_rows, field.type)
            if col.type != field.type:
                col = col.cast(field.type)
            cols.append(col)
        yield pa.RecordBatch.from_arrays(cols, schema=schema)


def reader(
    dt: DeltaTable, name: str, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> pa.RecordBatchReader:
    """:func:`iter_batches` as a RecordBatchReader in the table's schema (``columns`` only)."""
    schema = pa.schema(dt.schema().to_arrow())
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return pa.RecordBatchReader.from_batches(
        schema, conform(iter_batches(dt, name, columns, batch_rows), schema)
    )
