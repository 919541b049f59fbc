"""Yahoo's 23 extended data types → the ``fundamentals`` table (tidy long form).

One row per (symbol, data_type, period_end, item): ``value`` for numbers, ``text`` for words
and dates, ``raw`` JSON where a type is not tabular (filings, calendar entries). Types without a
period of their own (recommendations, holders, estimates, ESG) use the fetch date as
``period_end``, so each fetch keeps a dated snapshot.

The seven financial-statement types are read straight from the fundamentals-timeseries
endpoint (the same type keys yfinance uses), one request per statement family with every
timescale's keys listed; the others come from yfinance's accessors, which read one batched
quoteSummary answer carrying every module they need (:data:`MODULES`), and are flattened here
by :func:`tidy`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from marketlake.pipeline.providers.base import rows_frame

DATA_TYPES = (
    "financials", "quarterly_financials", "balance_sheet", "quarterly_balance_sheet",
    "cash_flow", "quarterly_cash_flow", "ttm_cash_flow", "recommendations",
    "recommendations_summary", "analyst_price_targets", "earnings_dates", "dividends",
    "insider_purchases", "institutional_holders", "major_holders", "growth_estimates",
    "revenue_estimate", "earnings_estimate", "eps_trend", "eps_revisions", "calendar",
    "sec_filings", "esg_scores",
)  # fmt: skip

# data_type -> (yfinance fundamentals_keys table, timeseries timescale prefix)
STATEMENTS: dict[str, tuple[str, str]] = {
    "financials": ("financials", "annual"),
    "quarterly_financials": ("financials", "quarterly"),
    "balance_sheet": ("balance-sheet", "annual"),
    "quarterly_balance_sheet": ("balance-sheet", "quarterly"),
    "cash_flow": ("cash-flow", "annual"),
    "quarterly_cash_flow": ("cash-flow", "quarterly"),
    "ttm_cash_flow": ("cash-flow", "trailing"),
}

# data_type -> (yfinance Ticker method, column naming each row, column/"index" dating each row)
ACCESSORS: dict[str, tuple[str, str | None, str | None]] = {
    "recommendations": ("get_recommendations", "period", None),
    "recommendations_summary": ("get_recommendations_summary", "period", None),
    "analyst_price_targets": ("get_analyst_price_targets", None, None),
    "earnings_dates": ("get_earnings_dates", None, "index"),
    "insider_purchases": ("get_insider_purchases", "Insider Purchases Last 6m", None),
    "institutional_holders": ("get_institutional_holders", "Holder", "Date Reported"),
    "major_holders": ("get_major_holders", None, None),
    "growth_estimates": ("get_growth_estimates", None, None),
    "revenue_estimate": ("get_revenue_estimate", None, None),
    "earnings_estimate": ("get_earnings_estimate", None, None),
    "eps_trend": ("get_eps_trend", None, None),
    "eps_revisions": ("get_eps_revisions", None, None),
    "calendar": ("get_calendar", None, None),
    "sec_filings": ("get_sec_filings", None, None),
    "esg_scores": ("get_sustainability", None, None),
}

# data_type -> the quoteSummary modules its yfinance accessor reads (yfinance scrapers/quote.py,
# holders.py, analysis.py); earnings_dates reads Yahoo's earnings-calendar page instead
_HOLDERS = (
    "institutionOwnership",
    "fundOwnership",
    "majorDirectHolders",
    "majorHoldersBreakdown",
    "insiderTransactions",
    "insiderHolders",
    "netSharePurchaseActivity",
)
MODULES: dict[str, tuple[str, ...]] = {
    "recommendations": ("recommendationTrend",),
    "recommendations_summary": ("recommendationTrend",),
    "analyst_price_targets": ("financialData",),
    "earnings_dates": (),
    "insider_purchases": _HOLDERS,
    "institutional_holders": _HOLDERS,
    "major_holders": _HOLDERS,
    "growth_estimates": ("earningsTrend", "industryTrend", "sectorTrend", "indexTrend"),
    "revenue_estimate": ("earningsTrend",),
    "earnings_estimate": ("earningsTrend",),
    "eps_trend": ("earningsTrend",),
    "eps_revisions": ("earningsTrend",),
    "calendar": ("calendarEvents",),
    "sec_filings": ("secFilings",),
    "esg_scores": ("esgScores",),
}

TIMESERIES_CHUNK = 60  # keys per request: keeps the URL under ~2 KB (yfinance does the same)


def quote_summary_modules(data_types: Iterable[str]) -> tuple[str, ...]:
    """Every quoteSummary module the accessors of ``data_types`` read, each once."""
    return tuple(dict.fromkeys(m for t in data_types for m in MODULES.get(t, ())))


def statement_families(data_types: Iterable[str]) -> dict[str, list[str]]:
    """The statement types among ``data_types`` grouped by the key table (statement family)
    they share, so one timeseries request can list every timescale of a family."""
    families: dict[str, list[str]] = {}
    for t in data_types:
        if t in STATEMENTS:
            families.setdefault(STATEMENTS[t][0], []).append(t)
    return families


def statement_keys(data_type: str) -> tuple[str, list[str]]:
    """(timescale, [type keys]) of a statement data type, from yfinance's own key table."""
    from yfinance.const import fundamentals_keys

    table, timescale = STATEMENTS[data_type]
    return timescale, list(fundamentals_keys[table])


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows as a ``fundamentals`` frame, one per key (the last wins)."""
    out = rows_frame("fundamentals", rows)
    return out.unique(
        subset=["symbol", "data_type", "period_end", "item"], keep="last", maintain_order=True
    )


def parse_timeseries(
    body: Any,
    *,
    symbol: str,
    data_type: str,
    timescale: str,
    wanted: Iterable[str],
    fetched_at: datetime,
    provider: str = "yahoo",
) -> list[dict[str, Any]]:
    """Rows from one fundamentals-timeseries answer; only the requested ``wanted`` types.

    Results that carry only ``meta`` (no data for the symbol, e.g. ^VXAPL) give no rows.
    """
    wanted_types = {timescale + k for k in wanted}
    results = ((body or {}).get("timeseries") or {}).get("result") or []
    rows: list[dict[str, Any]] = []
    for res in results:
        if not isinstance(res, dict):
            continue
        types = (res.get("meta") or {}).get("type") or []
        if not types or types[0] not in wanted_types:
            continue
        key = types[0]
        for point in res.get(key) or []:
            if not isinstance(point, dict) or not point.get("asOfDate"):
                continue
            raw_value = (point.get("reportedValue") or {}).get("raw")
            rows.append(
                {
                    "symbol": symbol,
                    "data_type": data_type,
                    "period_end": date.fromisoformat(point["asOfDate"]),
                    "item": key[len(timescale) :],
                    "value": float(raw_value) if isinstance(raw_value, int | float) else None,
                    "text": point.get("currencyCode"),
                    "raw": None,
                    "provider": provider,
                    "fetched_at": fetched_at,
                }
            )
    if timescale == "trailing" and rows:  # trailing twelve months: the latest period only
        latest = max(r["period_end"] for r in rows)
        rows = [r for r in rows if r["period_end"] == latest]
    return rows


# -- yfinance accessor results ---------------------------------------------------------------
def _scalar(value: Any) -> tuple[float | None, str | None]:
    """(value, text) of one cell: finite numbers as value, everything else as text."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return float(value), None
    if isinstance(value, int | float):
        f = float(value)
        return (f, None) if math.isfinite(f) else (None, None)
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        try:
            return _scalar(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, datetime | date):
        return None, value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        try:
            return None, value.isoformat()
        except (TypeError, ValueError):
            return None, None
    if isinstance(value, list | tuple | dict):
        return None, json.dumps(value, default=str)
    text = str(value)
    return (None, text) if text and text.lower() not in ("nan", "nat", "none") else (None, None)


def _as_date(value: Any, default: date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if hasattr(value, "date") and callable(value.date):
        try:
            d = value.date()
            if isinstance(d, date):
                return d
        except (TypeError, ValueError):
            pass
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return datetime.fromtimestamp(value, UTC).date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    return default


def tidy(
    data_type: str,
    obj: Any,
    *,
    symbol: str,
    fetched_at: datetime,
    provider: str = "yahoo",
) -> list[dict[str, Any]]:
    """Flatten what a yfinance accessor returned (DataFrame, dict or list) into rows."""
    _, label_col, date_col = ACCESSORS.get(data_type, ("", None, None))
    today = fetched_at.date()
    base = {
        "symbol": symbol,
        "data_type": data_type,
        "provider": provider,
        "fetched_at": fetched_at,
    }
    rows: list[dict[str, Any]] = []

    def add(period_end: date, item: str, cell: Any, raw: str | None = None) -> None:
        value, text = _scalar(cell)
        if value is None and text is None and raw is None:
            return
        rows.append(
            {
                **base,
                "period_end": period_end,
                "item": item,
                "value": value,
                "text": text,
                "raw": raw,
            }
        )

    if obj is None:
        return rows
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        df = obj
        if len(df) == 0:
            return rows
        columns = [c for c in df.columns if c not in (label_col, date_col)]
        use_index_label = label_col is None or label_col not in df.columns
        single = len(columns) == 1
        for idx, record in zip(df.index, df.to_dict("records"), strict=True):
            label = str(idx) if use_index_label else str(record.get(label_col))
            if date_col == "index":
                period_end, label = _as_date(idx, today), ""
            elif date_col and date_col in record:
                period_end = _as_date(record[date_col], today)
            else:
                period_end = today
            for col in columns:
                item = str(col) if not label else label if single else f"{label}.{col}"
                add(period_end, item, record[col])
        return rows
    if isinstance(obj, dict):
        if data_type == "sec_filings" and "filings" in obj:
            obj = obj["filings"]
        else:
            for key, value in obj.items():
                raw = json.dumps(value, default=str) if isinstance(value, list | dict) else None
                add(today, str(key), value if raw is None else None, raw)
            return rows
    if isinstance(obj, list):  # SEC filings: one row per filing, numbered per day and type
        seen: dict[tuple[date, str], int] = {}
        for entry in obj:
            if not isinstance(entry, dict):
                continue
            when = _as_date(entry.get("date") or entry.get("epochDate"), today)
            kind = str(entry.get("type") or "filing")
            n = seen.get((when, kind), 0) + 1
            seen[(when, kind)] = n
            rows.append(
                {
                    **base,
                    "period_end": when,
                    "item": f"{kind}#{n}",
                    "value": None,
                    "text": entry.get("title"),
                    "raw": json.dumps(entry, default=str, sort_keys=True),
                }
            )
    return rows


def dividends_rows(
    actions: pl.DataFrame, *, symbol: str, fetched_at: datetime, provider: str = "yahoo"
) -> list[dict[str, Any]]:
    """The ``dividends`` data type from corporate actions (one row per ex-date)."""
    out = []
    for ex_date, amount, currency in (
        actions.filter(pl.col("kind") == "dividend")
        .select("ex_date", "amount", "currency")
        .iter_rows()
    ):
        out.append(
            {
                "symbol": symbol,
                "data_type": "dividends",
                "period_end": ex_date,
                "item": "dividend",
                "value": amount,
                "text": currency,
                "raw": None,
                "provider": provider,
                "fetched_at": fetched_at,
            }
        )
    return out
