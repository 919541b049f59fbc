"""The wire format of push and pull: Arrow IPC streams with zstd-compressed buffers, written and
read one record batch at a time so no side ever holds a whole body."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from marketlake.errors import ConfigError

ARROW = "application/vnd.apache.arrow.stream"
FLAG = "_ml_delete"  # a pushed row whose key the source deleted
BATCH_ROWS = 65_536
CHUNK_BYTES = 1 << 20
_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_table_name(name: str, what: str = "table") -> str:
    """A table name that is safe as a directory and an SQL identifier, or a ConfigError."""
    if not _TABLE_NAME.match(name):
        raise ConfigError(f"{what} {name!r}: expected lower-case letters, digits and _")
    return name


def encode(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The IPC stream of ``batches`` as byte chunks (about one per batch)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, schema, options=_OPTIONS) as writer:
        for batch in batches:
            writer.write_batch(batch)
            if sink.tell() >= CHUNK_BYTES:
                yield sink.getvalue()
                sink.seek(0)
                sink.truncate()
    yield sink.getvalue()  # the rest and the end-of-stream marker


def read_file(path: Path) -> pa.RecordBatchStreamReader:
    """A reader over an IPC stream spooled to ``path``, read batch by batch (plain reads: a
    memory map would count the whole spool as resident)."""
    return pa.ipc.open_stream(pa.OSFile(str(path), "rb"))
