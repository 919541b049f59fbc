"""Every SQL text of marketlake, shipped as package data and read with :func:`load_sql`."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sql(relpath: str) -> str:
    """The text of ``sql/<relpath>`` (e.g. ``"postgres/queries/watermark_get.sql"``)."""
    parts = [p for p in relpath.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or not parts[-1].endswith(".sql"):
        raise ValueError(f"not an SQL file path inside the sql package: {relpath!r}")
    node = resources.files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def list_sql(reldir: str) -> list[str]:
    """Names of the ``.sql`` files directly under ``sql/<reldir>``, sorted."""
    node = resources.files(__name__)
    for part in [p for p in reldir.split("/") if p]:
        node = node.joinpath(part)
    return sorted(e.name for e in node.iterdir() if e.is_file() and e.name.endswith(".sql"))
