"""Small builders shared by tests, and the one place that finds the recorded fixtures."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketlake.lake.tables import period_expr
from marketlake.pipeline.providers import synthetic

ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """``$MARKETLAKE_FIXTURES``, else ``../shared/fixtures`` beside the checkout."""
    return Path(os.environ.get("MARKETLAKE_FIXTURES") or ROOT.parent / "shared" / "fixtures")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise skip locally, but fail under CI (never a silent skip)."""
    if path.exists():
        return path
    msg = f"{what} not found at {path} (set MARKETLAKE_FIXTURES)"
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


_WITHOUT_POLARS = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("polars", "pyarrow"):
            raise ImportError(name)

sys.meta_path.insert(0, Missing())
"""


def run_without_polars(code: str) -> str:
    """The output of ``code`` run in a new interpreter where polars and pyarrow cannot be
    imported (as in the build environment, which has numba and numpy only)."""
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_POLARS + code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def split_case(minutes: int, level: int, longest: int, sessions: int = 300):
    """Random parent bars, the layout and the draws of one level of the synthetic market's
    split (``synthetic._split``'s arguments), with bars without volume and flat bars."""
    rng = np.random.default_rng(level * 10_000 + minutes)
    lay = synthetic._layout(minutes, level, longest)
    parents, r = lay["sqrt_frac"].shape
    o = 100 * np.exp(rng.normal(0, 0.02, (sessions, parents)))
    c = o * np.exp(rng.normal(0, 0.02, (sessions, parents)))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.01, (sessions, parents))))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.01, (sessions, parents))))
    v = np.round(rng.uniform(0, 1e6, (sessions, parents)))
    v[:3] = 0.0  # no volume to share
    h[3:6] = lo[3:6] = o[3:6] = c[3:6]  # a flat bar: no range to walk in
    draws = rng.random((4, sessions, parents * r), dtype=np.float32)
    return (o, h, lo, c, v), lay, draws


def bars(symbols, days=3, start=datetime(2024, 1, 1, tzinfo=UTC), close=1.0, tf="1D"):
    rows = []
    for s in symbols:
        for d in range(days):
            rows.append(
                {
                    "symbol": s,
                    "timeframe": tf,
                    "ts": start + timedelta(days=d),
                    "open": close,
                    "high": close + 1,
                    "low": close,
                    "close": close,
                    "volume": 10.0,
                    "provider": "t",
                    "is_final": True,
                }
            )
    return pl.DataFrame(rows).with_columns(period_expr())


def has_page_crcs(path: Path) -> bool:
    """Flip the last byte of the first column chunk (page data, not its header) in a copy:
    only a file with page CRCs then fails verification with a checksum error."""
    col = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + col.total_compressed_size - 1] ^= 0xFF
    copy = path.with_name("copy-" + path.name)
    copy.write_bytes(bytes(data))
    try:
        pq.read_table(copy, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        return "CRC" in str(exc)
    finally:
        copy.unlink()
    return False


def old_instruments(lake) -> None:
    """``instruments`` as a release before the ``routes`` and ``listed_by`` columns kept them:
    reserved keys of ``provider_symbols``, written by delta-rs' own writer."""
    import json

    from deltalake import write_deltalake

    from marketlake.lake.frames import to_arrow
    from marketlake.lake.tables import INSTRUMENTS, TableDef
    from marketlake.lake.writes import TABLE_CONFIG

    old = TableDef(
        "instruments",
        pa.schema([f for f in INSTRUMENTS.schema if f.name not in ("routes", "listed_by")]),
        INSTRUMENTS.key,
        bookkeeping=INSTRUMENTS.bookkeeping,
    )
    rows = pl.DataFrame(
        {
            "symbol": ["BTC/IDR", "AAPL"],
            "asset_type": ["crypto", "equity"],
            "provider": ["indodax", "yahoo"],
            "provider_symbols": [
                json.dumps(
                    {
                        "indodax": "btcidr",
                        "coingecko": "bitcoin",
                        "routes": {"profile": "coingecko"},
                    }
                ),
                json.dumps({"source": "file"}),
            ],
        }
    )
    write_deltalake(lake.uri("instruments"), to_arrow(old, rows), configuration=TABLE_CONFIG)


def sorted_pieces(
    rng: np.random.Generator, symbols: int, files: int
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, ts) of ``files`` pieces, each sorted by (code, ts), in a shuffled file order."""
    ts0 = 1_700_000_000_000_000
    day = 86_400_000_000
    parts = []
    for f in rng.permutation(files):
        codes = np.repeat(np.arange(symbols), 5)
        ts = ts0 + (f * 5 + np.tile(np.arange(5), symbols)) * day
        keep = rng.random(len(codes)) > 0.2  # some series missing from some files
        parts.append((codes[keep], ts[keep]))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
