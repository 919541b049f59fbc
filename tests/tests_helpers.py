"""Small builders shared by tests."""

from datetime import UTC, datetime, timedelta

import polars as pl

from lake.tables import period_expr


def bars(symbols, days=3, start=datetime(2024, 1, 1, tzinfo=UTC), close=1.0, tf="1D"):
    rows = []
    for s in symbols:
        for d in range(days):
            rows.append({"symbol": s, "timeframe": tf, "ts": start + timedelta(days=d),
                         "open": close, "high": close + 1, "low": close, "close": close,
                         "volume": 10.0, "provider": "t", "is_final": True})
    return pl.DataFrame(rows).with_columns(period_expr())
