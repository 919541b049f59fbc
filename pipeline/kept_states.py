"""The indicators' states an incremental compute leaves behind, kept for the next one.

RSI, MACD, ADX and Supertrend cannot be continued from their stored outputs, so without their
state an increment recomputes each series over a window of 300-660 bars before its first new
bar (``kernels.resume.memory``): for a nightly of 2,600 daily series that read and compute is
most of the compute stage. An increment knows the state after each series' last rows
(``kernels.states``), and a full recompute computes it over each whole series
(``compute_increment.series_states``); either keeps those of the last :data:`ROWS` rows per
series in the home's cache, keyed by the ``indicators`` table's version and the bytes of
that version's commit (a Delta version never changes; a re-created table's commit differs).
The next increment continues from them only while the table is still at that version: any
other commit (compaction, a pull, another writer, a run that died before saving) leaves them
stale, and it recomputes the windows instead. Deleting the file is always safe.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from marketlake.lake.atomic import atomic_write_bytes
from marketlake.lake.store import Lake

log = logging.getLogger("marketlake.compute")

ROWS = 3  # states kept per series: its last rows (a revised provisional bar moves the seam)
_KEY = ["timeframe", "symbol", "ts"]
_META = b"marketlake.states"
_SEAL = 16  # bytes of the file's own hash, after its data


def path(home: Path) -> Path:
    return Path(home) / "cache" / "states" / "indicators.arrows"


def column(spec: str, k: int) -> str:
    """The column of the ``k``-th value of ``spec``'s state."""
    return f"{spec}#{k}"


class KeptStates:
    """The states after rows (timeframe, symbol, ts) of the indicator ``specs`` (spec text ->
    values per row); ``ts`` in microseconds since the epoch, UTC."""

    def __init__(self, specs: Mapping[str, int], frame: pl.DataFrame | None = None) -> None:
        self.specs = dict(specs)
        schema = {"timeframe": pl.String, "symbol": pl.String, "ts": pl.Int64}
        schema |= {column(s, k): pl.Float64 for s, w in self.specs.items() for k in range(w)}
        if frame is None:
            self.frame = pl.DataFrame(schema=schema)
        else:
            self.frame = frame.select(pl.col(c).cast(t) for c, t in schema.items())

    def serves(self, specs: Mapping[str, int]) -> bool:
        """Whether it holds states of every spec of ``specs``, of the same widths."""
        return all(self.specs.get(s) == w for s, w in specs.items())

    def holding(self, tf: str, symbols: Sequence[str]) -> list[str]:
        """Those of ``symbols`` with a state kept on ``tf``, in their order."""
        kept = set(self.frame.filter(pl.col("timeframe") == tf).get_column("symbol").to_list())
        return [s for s in symbols if s in kept]

    def seeds(self, tf: str, symbols: Sequence[str], ts: np.ndarray) -> dict[str, np.ndarray]:
        """Each spec's state after the row at ``ts[j]`` of each ``symbols[j]`` on ``tf`` (rows x
        its width, contiguous; NaN where none is kept), by spec text."""
        want = pl.DataFrame(
            {"symbol": list(symbols), "ts": np.asarray(ts, np.int64)},
            schema={"symbol": pl.String, "ts": pl.Int64},
        )
        found = want.join(
            self.frame.filter(pl.col("timeframe") == tf).drop("timeframe"),
            on=["symbol", "ts"],
            how="left",
            maintain_order="left",
        )
        out = {}
        for spec, w in self.specs.items():
            values = found.select(column(spec, k) for k in range(w)).fill_null(np.nan)
            out[spec] = np.ascontiguousarray(values.to_numpy(), dtype=np.float64)
        return out

    def updated(
        self, tf: str, touched: Collection[str], kept_before: Mapping[str, int], new: pl.DataFrame
    ) -> KeptStates:
        """These states with those of ``touched`` series on ``tf`` replaced: their rows before
        ``kept_before[symbol]`` (the first changed bar of a resumed series, in microseconds;
        a series missing from it keeps none) and ``new`` rows; the last :data:`ROWS` rows of
        each series kept."""
        old = self.frame
        if touched:
            floor = pl.DataFrame(
                {"symbol": list(kept_before), "floor": list(kept_before.values())},
                schema={"symbol": pl.String, "floor": pl.Int64},
            )
            mine = (pl.col("timeframe") == tf) & pl.col("symbol").is_in(list(touched))
            keep = old.filter(mine).join(floor, on="symbol", how="inner")
            keep = keep.filter(pl.col("ts") < pl.col("floor")).drop("floor")
            old = pl.concat([old.filter(~mine), keep])
        both = pl.concat([old, new.select(old.columns)]) if new.height else old
        both = both.sort(_KEY).group_by("timeframe", "symbol", maintain_order=True).tail(ROWS)
        return KeptStates(self.specs, both)


class Tracker:
    """The states of one compute run: those kept for the version it started from (``start``,
    None when there were none or they were stale), updated with each timeframe it commits
    (:meth:`update`) or rewrites (:meth:`drop`)."""

    def __init__(self, specs: Mapping[str, int], start: KeptStates | None) -> None:
        self.start = start
        self.now = start if start is not None else KeptStates(specs)
        self.broken = False  # an update failed: the states no longer follow the rows

    def update(
        self,
        tf: str,
        touched: Collection[str],
        kept_before: Mapping[str, int],
        new: Sequence[pl.DataFrame],
    ) -> None:
        """After a commit of ``tf`` that changed the rows of ``touched`` series: see
        :meth:`KeptStates.updated`. Never raises: the commit stands without them."""
        try:
            frame = pl.concat(new, how="vertical_relaxed") if new else self.now.frame.clear()
            self.now = self.now.updated(tf, touched, kept_before, frame)
        except Exception as exc:  # noqa: BLE001 - a cache: dropped, never the compute
            log.warning("could not update the indicator states of %s: %s", tf, exc)
            self.broken = True

    def drop(self, tf: str) -> None:
        """Forget every state of ``tf`` (its rows were all rewritten)."""
        self.now = KeptStates(self.now.specs, self.now.frame.filter(pl.col("timeframe") != tf))

    def rewritten(self, tf: str, new: Sequence[pl.DataFrame]) -> None:
        """Every state of ``tf`` replaced by ``new``: those a full recompute of its rows
        computed (``compute_increment.series_states``). Never raises."""
        self.drop(tf)
        try:
            frame = pl.concat(new, how="vertical_relaxed") if new else self.now.frame.clear()
            self.now = KeptStates(
                self.now.specs, pl.concat([self.now.frame, frame.select(self.now.frame.columns)])
            )
        except Exception as exc:  # noqa: BLE001 - a cache: dropped, never the compute
            log.warning("could not keep the indicator states of %s: %s", tf, exc)
            self.broken = True


def load(lake: Lake, specs: Mapping[str, int]) -> KeptStates | None:
    """The states kept for ``specs`` (spec text -> width) while ``indicators`` is still at
    the version they were kept for, else None."""
    try:
        table = _unsealed(path(lake.home).read_bytes())
        meta = table.schema.metadata or {}
        head = meta.get(_META, b"").decode().split("\n")
        version, digest, kept = int(head[0]), head[1], head[2:]
        if version != lake.version("indicators") or digest != _digest(lake, version):
            return None
        out = KeptStates(
            {s.rpartition("=")[0]: int(s.rpartition("=")[2]) for s in kept if s},
            pl.from_arrow(table),
        )
        return out if out.serves(specs) else None
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - damaged or foreign: the windows are recomputed
        log.warning("ignoring the kept indicator states: %s", exc)
        return None


def save(lake: Lake, kept: KeptStates) -> None:
    """Keep ``kept`` for ``indicators`` at its current version (called by the only writer,
    right after its commits). Written whole or not at all; a failure is logged, never
    raised (the next increment recomputes the windows)."""
    try:
        version = lake.version("indicators")
        if version is None:
            return
        head = [str(version), _digest(lake, version), *(f"{s}={w}" for s, w in kept.specs.items())]
        table = kept.frame.to_arrow()
        table = table.replace_schema_metadata({_META: "\n".join(head).encode()})
        atomic_write_bytes(path(lake.home), _sealed(table))
    except Exception as exc:  # noqa: BLE001 - a cache: the compute's commits stand without it
        log.warning("could not keep the indicator states for the next increment: %s", exc)


def forget(lake: Lake) -> None:
    """Drop the kept states (a run that cannot vouch for them; a commit it made already
    leaves them stale, this is for the reader of the cache). A failure is logged."""
    try:
        path(lake.home).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not drop the kept indicator states: %s", exc)


def _sealed(table: pa.Table) -> bytes:
    """``table`` as an Arrow IPC stream followed by the stream's hash."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    body = sink.getvalue().to_pybytes()
    return body + hashlib.blake2b(body, digest_size=_SEAL).digest()


def _unsealed(data: bytes) -> pa.Table:
    """The table of :func:`_sealed` bytes; ValueError when they are not what was written."""
    body, seal = data[:-_SEAL], data[-_SEAL:]
    if len(data) <= _SEAL or hashlib.blake2b(body, digest_size=_SEAL).digest() != seal:
        raise ValueError(f"{len(data)} bytes that are not the states written")
    return pa.ipc.open_stream(body).read_all()


def _digest(lake: Lake, version: int) -> str:
    """A hash of the bytes of ``indicators``' commit ``version``."""
    key = f"indicators/_delta_log/{version:020d}.json"
    if lake.location.is_local:
        body = (lake.location.path / key).read_bytes()
    else:
        body = lake.location.get(key)
    return hashlib.blake2b(body, digest_size=16).hexdigest()


__all__ = ["ROWS", "KeptStates", "Tracker", "column", "forget", "load", "path", "save"]
