"""Requests per symbol for Yahoo's 23 fundamentals types, and the nightly job's projected time.

A loopback server (a thread of this process) answers everything the real Yahoo provider asks
for while it fetches all 23 types of ``--symbols`` symbols: the session crumb, quoteSummary
(only the modules asked for, as Yahoo does; from the written sample
``tests/pipeline/providers/fixtures/yahoo/written_from_docs_quoteSummary_*``), the
fundamentals timeseries (one result per requested type, points shaped like the recorded
``fundamentals_timeseries_AAPL_financials_quarterly``), the chart (the recorded MSFT dividends)
and the earnings-calendar page. It counts what arrives. Printed: requests per symbol by
endpoint, the one-off session requests, the projected time for ``--project`` symbols at the
configured rate (``requests / rate``: a rate-limited job cannot beat it), and a digest of the
rows, so two runs that land the same ``fundamentals`` rows print the same digest.

A second pass models the nightly job, which syncs ``actions`` and ``fundamentals`` for each
symbol: the actions kind fetches the symbol's event chart first, then the 23 types; it prints
the requests the fundamentals added on top of that chart.

    python bench/fundamentals.py [--symbols 20] [--project 2600] [--rate 0 (provider default)]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures" / "providers" / "yahoo"
OWN = ROOT / "tests" / "pipeline" / "providers" / "fixtures" / "yahoo"
SUMMARY = OWN / "written_from_docs_quoteSummary_AAPL_fundamentals_modules.json"
TIMESERIES = SHARED / "fundamentals_timeseries_AAPL_financials_quarterly.cassette.json"
CHART = SHARED / "chart_MSFT_1d_2021-02-01_2022-01-31_dividends.cassette.json"
CRUMB = "haT3oykhHqZ"
EARNINGS_PAGE = """<html><body><table>
<tr><th>Symbol</th><th>Company</th><th>Earnings Date</th><th>EPS Estimate</th>
<th>Reported EPS</th><th>Surprise (%)</th></tr>
<tr><td>{s}</td><td>{s} Inc</td><td>January 30, 2025 at 4 PM EST</td><td>2.35</td><td>2.40</td>
<td>2.13</td></tr>
<tr><td>{s}</td><td>{s} Inc</td><td>October 31, 2024 at 4 PM EDT</td><td>1.60</td><td>1.64</td>
<td>2.50</td></tr></table></body></html>"""


def _recorded(path: Path):
    doc = json.loads(path.read_text())
    return doc["response"]["bodyJson"] if "response" in doc else doc


class Yahoo:
    """What the loopback server answers, and what it saw."""

    def __init__(self) -> None:
        self.modules = _recorded(SUMMARY)["quoteSummary"]["result"][0]
        points = _recorded(TIMESERIES)["timeseries"]["result"][0]
        self.points = points[points["meta"]["type"][0]]
        self.chart = json.dumps(_recorded(CHART)).encode()
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        if path.startswith("/v10/finance/quoteSummary/"):
            wanted = params.get("modules", "").split(",")
            found = {m: self.modules[m] for m in wanted if m in self.modules}
            if not found:
                body = {
                    "quoteSummary": {
                        "result": None,
                        "error": {"code": "Not Found", "description": "No fundamentals data"},
                    }
                }
                return 404, "application/json", json.dumps(body).encode()
            body = {"quoteSummary": {"result": [found], "error": None}}
            return 200, "application/json", json.dumps(body).encode()
        if path.startswith("/ws/fundamentals-timeseries/"):
            sym = path.rsplit("/", 1)[-1]
            result = []
            for t in params.get("type", "").split(","):
                entry = {"meta": {"symbol": [sym], "type": [t]}}
                if not t.startswith("trailing") or "CashFlow" in t or "Expenditure" in t:
                    entry["timestamp"] = [1711843200, 1719705600]
                    entry[t] = self.points[:2]
                result.append(entry)
            body = {"timeseries": {"result": result, "error": None}}
            return 200, "application/json", json.dumps(body).encode()
        if path.startswith("/v8/finance/chart/"):
            return 200, "application/json", self.chart
        if path == "/v1/test/getcrumb":
            return 200, "text/plain", CRUMB.encode()
        if path == "/calendar/earnings":
            sym = params.get("symbol", "X")
            return 200, "text/html", EARNINGS_PAGE.format(s=sym).encode()
        if path == "/":
            return 200, "text/html", b"<html></html>"
        return 404, "application/json", b'{"error": "not served"}'

    def serve(self) -> ThreadingHTTPServer:
        yahoo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                status, ctype, body = yahoo.answer(path, params)
                kind = path.split("/")[1] if path.count("/") > 1 else path
                if path.startswith(("/v10/", "/v8/", "/v1/", "/ws/")):
                    kind = "/".join(path.split("/")[:4])
                with yahoo.lock:
                    yahoo.seen[kind] += 1
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        return httpd


def digest(frames) -> str:
    """A hash of the landed rows without their fetch time (same rows, same digest)."""
    import polars as pl

    df = pl.concat(frames).drop("fetched_at")
    df = df.with_columns(pl.col("symbol").str.replace(r"^S\d+$", "S"))
    df = df.sort(df.columns)
    return hashlib.sha256(df.write_csv().encode()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--project", type=int, default=2600, help="symbols of the nightly job")
    ap.add_argument("--rate", type=float, default=0.0, help="req/s; 0: the provider's default")

    args = ap.parse_args()

    from marketlake.pipeline.config import ProviderSettings
    from marketlake.pipeline.providers.base import FetchRequest
    from marketlake.pipeline.providers.yahoo import YahooProvider

    warnings.filterwarnings("ignore")  # yfinance's pandas deprecations: not ours to fix
    rate = args.rate or YahooProvider.capabilities.rate_limit_per_s
    yahoo = Yahoo()
    httpd = yahoo.serve()
    url = f"http://127.0.0.1:{httpd.server_port}"
    with tempfile.TemporaryDirectory(prefix="marketlake-bench-fund-") as tmp:
        provider = YahooProvider(
            ProviderSettings("yahoo", base_url=url, rate_limit_per_s=1000.0),
            home=Path(tmp),
            clock=lambda: datetime(2025, 3, 3, 12, tzinfo=UTC),
        )
        frames = [provider.fetch(FetchRequest.fundamentals("S0000"))]  # opens the session
        setup = Counter(yahoo.seen)
        t0 = time.perf_counter()
        for i in range(1, args.symbols + 1):
            frames.append(provider.fetch(FetchRequest.fundamentals(f"S{i:04d}")))
        wall = time.perf_counter() - t0
        first = Counter(yahoo.seen)
        start = datetime(2025, 2, 24, tzinfo=UTC)  # the nightly's actions range: last days
        nightly = Counter()
        for i in range(1, args.symbols + 1):
            sym = f"N{i:04d}"
            provider.fetch(FetchRequest.actions(sym, start, datetime(2025, 3, 3, tzinfo=UTC)))
            before = Counter(yahoo.seen)
            provider.fetch(FetchRequest.fundamentals(sym))
            nightly.update(Counter(yahoo.seen) - before)
        provider.close()
    httpd.shutdown()
    per_kind = {k: (first[k] - setup[k]) / args.symbols for k in sorted(first)}
    per_symbol = sum(per_kind.values())
    once = sum(setup.values()) - per_symbol
    projected = (once + per_symbol * args.project) / rate
    types = frames[-1]["data_type"].n_unique()
    print(f"symbols             {args.symbols} (+1 that opens the session)")
    print(f"data types landed   {types} of 23, {frames[-1].height} rows per symbol")
    for kind, n in per_kind.items():
        if n:
            print(f"  {kind:<36} {n:5.2f} req/symbol")
    print(f"requests per symbol {per_symbol:.2f} (+{once:.0f} once per session)")
    print(
        f"projected           {projected:,.0f} s = {projected / 3600:.2f} h for "
        f"{args.project:,} symbols at {rate:g} req/s"
    )
    after_actions = sum(nightly.values()) / args.symbols
    print(
        f"beside actions      {after_actions:.2f} req/symbol for the 23 types after the actions "
        f"kind's chart ({', '.join(f'{k} {n / args.symbols:.2f}' for k, n in sorted(nightly.items()))})"
    )
    projected = (once + after_actions * args.project) / rate
    print(
        f"projected nightly   {projected:,.0f} s = {projected / 3600:.2f} h for the fundamentals of "
        f"{args.project:,} symbols at {rate:g} req/s"
    )
    print(f"client time         {wall / args.symbols * 1000:.0f} ms per symbol (loopback)")
    print(f"rows digest         {digest(frames)}")


if __name__ == "__main__":
    main()
