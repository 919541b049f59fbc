"""A parquet file of many symbols' bars, read a block of row groups at a time as asked.

An export holds each symbol's rows together (sorted or grouped by symbol). Read whole, a file
of 100M bars is 10 GB of memory before the first row lands. A file whose rows would take more
than :data:`MEMORY_SHARE` of the memory available is read here instead: only its symbol column
up front (each symbol's first row and row count); a request decodes the block of row groups
holding its symbol's rows, which stays decoded until every symbol it holds has been asked for
(the next requests, in the plan's order, are that file's next symbols), and at most
:data:`KEPT_ROWS` rows of such blocks at once beyond that. A 30M-row import peaked at half the
memory (1.7 GB against 3.2 GB) and took 5-10% longer (the blocks' decoding contends with the
batches' checks and writes, where one whole read runs while the sync plans), so a file that
fits comfortably is read whole.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from itertools import accumulate
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from marketlake.errors import ValidationError

#: a file whose bars would take more than this share of the available memory is streamed
MEMORY_SHARE = 0.25
#: the memory of one bar read whole (thirteen columns of the provider's frame)
ROW_BYTES = 100
#: decoded rows kept for symbols not asked yet (beyond the blocks a request needs now)
KEPT_ROWS = 2_000_000
#: consecutive row groups decoded together up to this many rows (one parallel read each)
BLOCK_ROWS = 1_000_000


def streams(rows: int) -> bool:
    """Whether a file of ``rows`` bars is read a block at a time: read whole, it would take
    more than :data:`MEMORY_SHARE` of the memory available now."""
    return rows * ROW_BYTES > MEMORY_SHARE * available_memory()


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux's ``MemAvailable``: free memory
    and caches it can drop), else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class GroupedParquet:
    """The rows of one parquet file whose symbols each hold one run of rows.

    ``spans``: per symbol its first row and number of rows; ``shape``: decoded rows (the
    file's columns) to the provider's frame. Safe to use from many threads."""

    def __init__(
        self,
        path: Path,
        metadata: pq.FileMetaData,
        spans: dict[str, tuple[int, int]],
        shape: Callable[[pl.DataFrame], pl.DataFrame],
    ) -> None:
        self.path = path
        self.spans = spans
        self._shape = shape
        blocks: list[int] = []  # rows of consecutive row groups decoded together
        for g in range(metadata.num_row_groups):
            n = metadata.row_group(g).num_rows
            if blocks and blocks[-1] < BLOCK_ROWS:
                blocks[-1] += n
            else:
                blocks.append(n)
        self._starts = [0, *accumulate(blocks)]  # a block's first row; the last: all rows
        self._lock = threading.Lock()
        # each block's rows, decoded once however many threads ask; least recently used first
        self._decoded: OrderedDict[int, Future[pl.DataFrame]] = OrderedDict()
        # per block, the symbols holding rows there that no request has had yet
        self._waiting: dict[int, set[str]] = {}
        for symbol, (start, n) in spans.items():
            for b in self._blocks(start, n):
                self._waiting.setdefault(b, set()).add(symbol)

    def _blocks(self, start: int, n: int) -> range:
        """The blocks holding rows ``start`` to ``start + n - 1``."""
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_right(self._starts, start + n - 1) - 1
        return range(first, last + 1)

    def rows(self, symbol: str) -> pl.DataFrame:
        """``symbol``'s rows in the file's order (slices of the decoded blocks)."""
        start, n = self.spans[symbol]
        blocks = self._blocks(start, n)
        parts = []
        for b in blocks:
            lo, hi = max(start, self._starts[b]), min(start + n, self._starts[b + 1])
            parts.append(self._block(b).slice(lo - self._starts[b], hi - lo))
        with self._lock:
            for b in blocks:
                waiting = self._waiting.get(b, set())
                waiting.discard(symbol)
                if not waiting:  # every symbol it holds has had its rows
                    self._decoded.pop(b, None)
        return parts[0] if len(parts) == 1 else pl.concat(parts)

    def warm(self) -> None:
        """Decode the first blocks (up to :data:`KEPT_ROWS` rows) now: a sync does it while it
        plans, so its first batch finds them decoded."""
        for b in range(len(self._starts) - 1):
            if self._starts[b] >= KEPT_ROWS:
                break
            self._block(b)

    def decoded_blocks(self) -> list[int]:
        """The blocks held decoded now."""
        with self._lock:
            return sorted(self._decoded)

    def _block(self, b: int) -> pl.DataFrame:
        """Block ``b`` shaped, decoded by the first thread to ask for it."""
        with self._lock:
            entry = self._decoded.get(b)
            mine = entry is None
            if entry is None:
                entry = self._decoded[b] = Future()
            self._decoded.move_to_end(b)
        if mine:
            try:
                entry.set_result(self._decode(b))
            except BaseException as exc:
                entry.set_exception(exc)
                with self._lock:  # the next request tries again
                    if self._decoded.get(b) is entry:
                        del self._decoded[b]
                raise
            self._trim(keep=b)
        return entry.result()

    def _decode(self, b: int) -> pl.DataFrame:
        start, end = self._starts[b], self._starts[b + 1]
        try:
            raw = pl.scan_parquet(self.path, glob=False).slice(start, end - start).collect()
        except Exception as exc:  # polars raises many types for a damaged file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValidationError(
                f"{self.path.name}: unreadable rows {start}-{end - 1} ({first})"
            ) from exc
        return self._shape(raw)

    def _trim(self, keep: int) -> None:
        """Drop the least recently used decoded blocks beyond :data:`KEPT_ROWS` rows."""
        with self._lock:
            rows = sum(self._starts[b + 1] - self._starts[b] for b in self._decoded)
            for b in list(self._decoded):
                if rows <= KEPT_ROWS:
                    break
                if b != keep and self._decoded[b].done():
                    del self._decoded[b]
                    rows -= self._starts[b + 1] - self._starts[b]


def symbol_spans(path: Path, column: str) -> dict[str, tuple[int, int]] | None:
    """Per symbol of ``path``'s ``column`` its first row and row count, when each symbol's
    rows are one run (else None: the file is read whole)."""
    symbols = pl.read_parquet(path, columns=[column], glob=False).get_column(column)
    runs = symbols.cast(pl.String).rle().struct.unnest()
    values = runs.get_column("value")
    if values.null_count() or values.n_unique() != runs.height:
        return None
    lengths = runs.get_column("len")
    starts = lengths.cum_sum() - lengths
    return {
        s: (a, n)
        for s, a, n in zip(values.to_list(), starts.to_list(), lengths.to_list(), strict=True)
    }
