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
