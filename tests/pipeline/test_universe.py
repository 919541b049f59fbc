from datetime import date

import polars as pl
import pytest

from marketlake.errors import UnknownSymbolError, ValidationError
from marketlake.lake import Lake
from marketlake.pipeline import universe


def test_import_russell_style_csv(home, tmp_path):
    path = tmp_path / "russell.csv"
    path.write_text(
        "Ticker,Company,Sector,ETF\nAAPL,Apple,Technology,no\n IWM ,iShares R2K,,yes\n"
        "BRK.B,Berkshire,Financials,\n,missing,,\nAAPL,Apple Inc,Technology,no\n"
    )
    lake = Lake(home)
    res, problems = universe.import_csv(lake, path, run_id="r")
    assert res.inserted == 3
    assert any(":5: symbol is missing" in p for p in problems)
    assert any("'AAPL' listed more than once" in p for p in problems)
    got = universe.load(lake)
    assert got["symbol"].to_list() == ["AAPL", "BRK.B", "IWM"]
    assert got.filter(pl.col("symbol") == "IWM")["is_etf"][0] is True
    assert got.filter(pl.col("symbol") == "AAPL")["name"][0] == "Apple Inc"
    assert set(got["provider"]) == {"yahoo"}
    again, _ = universe.import_csv(lake, path, run_id="r2")
    assert (again.inserted, again.updated) == (0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("name,sector\nApple,Tech\n", "no symbol column"),
        ("symbol,asset_type\nX,stonks\n", "unknown asset type"),
    ],
)
def test_bad_universe_files(home, tmp_path, content, message):
    path = tmp_path / "u.csv"
    path.write_text(content)
    with pytest.raises(ValidationError, match=message):
        universe.import_csv(Lake(home), path, run_id="r")


def test_add_and_unknown_symbols(home):
    lake = Lake(home)
    universe.add(lake, "NSE_INDEX|Nifty 50", run_id="r", asset_type="index", provider="upstox")
    with pytest.raises(ValidationError, match="control characters"):
        universe.add(lake, "BAD\nSYMBOL", run_id="r")
    with pytest.raises(UnknownSymbolError, match="'MISSING'"):
        universe.load(lake, symbols=["MISSING"])
    assert universe.load(lake, symbols=["NSE_INDEX|Nifty 50"]).height == 1


def test_csv_import_keeps_option_fields(home, tmp_path):
    # regression: universe import dropped underlying, expiry, strike, option_type, lot_size
    path = tmp_path / "options.csv"
    path.write_text(
        "symbol,asset_type,exchange,underlying,expiry,strike,option_type,lot_size\n"
        "NIFTY25JAN24000CE,option,NSE,NIFTY,2025-01-30,24000,CE,75\n"
        "NIFTY25JAN24000PE,option,NSE,NIFTY,2025-01-30,24000.5,PE,75.0\n"
        "BADOPT,option,NSE,NIFTY,someday,high,CE,7.5\n"
        "AAPL,equity,NMS,,,,,\n"
    )
    lake = Lake(home)
    res, problems = universe.import_csv(lake, path, run_id="r")
    assert res.inserted == 4
    got = {r["symbol"]: r for r in universe.load(lake).iter_rows(named=True)}
    ce = got["NIFTY25JAN24000CE"]
    assert (ce["underlying"], ce["expiry"], ce["strike"], ce["option_type"], ce["lot_size"]) == (
        "NIFTY",
        date(2025, 1, 30),
        24000.0,
        "CE",
        75,
    )
    assert got["NIFTY25JAN24000PE"]["strike"] == 24000.5
    assert got["NIFTY25JAN24000PE"]["lot_size"] == 75
    bad = got["BADOPT"]
    assert (bad["expiry"], bad["strike"], bad["lot_size"]) == (None, None, None)
    assert sorted(p.split(": ", 2)[2].split(" ")[0] for p in problems) == [
        "expiry",
        "lot_size",
        "strike",
    ]
    assert all(p.startswith(f"{path}:4: BADOPT:") for p in problems)
    assert got["AAPL"]["expiry"] is None and got["AAPL"]["lot_size"] is None
    again, _ = universe.import_csv(lake, path, run_id="r2")
    assert (again.inserted, again.updated) == (0, 0)
