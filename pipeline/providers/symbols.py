"""Symbols on the way out: a provider's own spelling, and safe URL path segments.

A symbol is data. It reaches a URL only through :func:`path_segment` (percent-encoded, so
``/``, ``?``, ``#`` or ``..`` can never change the path) or as a query parameter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def provider_symbol(instrument: Mapping[str, Any] | None, provider: str) -> str | None:
    """The provider's spelling from the instrument's ``provider_symbols`` JSON, if any."""
    if not instrument:
        return None
    raw = instrument.get("provider_symbols")
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, Mapping):
        value = raw.get(provider)
        if isinstance(value, str) and value:
            return value
    return None


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: percent-encoded, never ``.`` or ``..``."""
    out = quote(value, safe="^=-._~")
    if out.strip(".") == "":
        out = out.replace(".", "%2E")
    return out
