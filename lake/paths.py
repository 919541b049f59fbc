"""Where things live under ``$MARKETLAKE_HOME``.

Symbols never become path components: they reach disk only as values inside parquet files
(Delta partitions are by timeframe, period and data type, which come from fixed vocabularies).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from marketlake.errors import HomeNotWritableError


def ensure_home(home: Path) -> Path:
    """Create ``home`` (and ``home/lake``) and prove it is writable, or raise one clear error."""
    try:
        (home / "lake").mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HomeNotWritableError(
            f"MARKETLAKE_HOME {home} is not writable ({exc.strerror or exc}); "
            "set --home or MARKETLAKE_HOME to a writable directory"
        ) from exc
    return home


def table_path(home: Path, table: str) -> Path:
    return home / "lake" / table


def media_path(home: Path) -> Path:
    return home / "media"


def inside(root: Path, candidate: Path) -> bool:
    """True when ``candidate`` resolves to a path under ``root``."""
    root = root.resolve()
    cand = candidate.resolve()
    return cand == root or root in cand.parents


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
