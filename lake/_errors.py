"""One mapping from the lake's foreign errors (deltalake, pyarrow, polars, DuckDB, the OS and
the Rust panics of polars and delta-rs) to :class:`LakeError` and its subclasses, applied
where those libraries are called (modelled on httpx's ``map_exceptions``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
import pyarrow as pa
from deltalake.exceptions import CommitFailedError, DeltaError

from marketlake.errors import LakeCorruptError, LakeError, MarketlakeError

_FOREIGN = (DeltaError, pa.ArrowException, pl.exceptions.PolarsError, OSError)
_DAMAGE = re.compile(
    r"checksum|crc|corrupt|truncat|out of (range|bounds)|eof|magic|footer|range\.end|"
    r"invalid parquet|parquet error|couldn't deserialize thrift|not a parquet",
    re.IGNORECASE,
)
_PARQUET_FILE = re.compile(r"[\w=./:%+-]*\.parquet")


class CommitConflict(LakeError):
    """A commit found versions it did not read (retried by the caller from a fresh read)."""


def _panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def convert(exc: BaseException, action: str, table: str) -> LakeError:
    """The LakeError for ``exc`` raised while doing ``action`` on ``table``."""
    reason = first_line(exc)
    if _DAMAGE.search(str(exc)) or _panic(exc):
        m = _PARQUET_FILE.search(str(exc))
        file = m.group(0).rsplit(f"/{table}/", 1)[-1] if m else ""
        where = f" (file {file})" if file else ""
        return LakeCorruptError(
            f"lake table {table}: a data file is damaged{where}: {reason}; "
            "run `marketlake maintain --verify`",
            table=table,
            file=file,
        )
    return LakeError(f"{action} {table} failed: {reason}")


@contextmanager
def lake_errors(action: str, table: str) -> Iterator[None]:
    """Convert what the lake's libraries raise inside the block into one-line LakeErrors."""
    try:
        yield
    except MarketlakeError:
        raise
    except CommitFailedError as exc:
        raise CommitConflict(f"{action} {table}: {first_line(exc)}") from exc
    except _FOREIGN as exc:
        raise convert(exc, action, table) from exc
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if _panic(exc) or _duckdb_error(exc):
            raise convert(exc, action, table) from exc
        raise


def _duckdb_error(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's; only a loaded DuckDB can have raised one, so importing it
    (0.4 s) is left to the code that queries."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)
