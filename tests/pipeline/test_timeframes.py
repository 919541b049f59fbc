import pytest

from marketlake.errors import ConfigError
from marketlake.pipeline.timeframes import canonical, check


def test_timeframe_aliases_become_canonical():
    # regression: `--timeframes 1d` was rejected
    spellings = {
        "1d": "1D",
        "1wk": "1W",
        "1w": "1W",
        "60m": "1h",
        "1H": "1h",
        "4H": "4h",
        "240m": "4h",
        "15min": "15m",
        "1m": "1m",
        "daily": "1D",
        "1D": "1D",
    }
    for given, want in spellings.items():
        assert canonical(given) == want, given
    assert check(["1d", "1D", "60m"]) == ("1D", "1h")


def test_one_minute_stays_a_minute_and_months_are_refused():
    assert canonical("1m") == "1m"
    with pytest.raises(ConfigError, match="ambiguous"):
        canonical("1M")
    with pytest.raises(ConfigError, match="monthly bars are not supported"):
        canonical("1mo")
    with pytest.raises(ConfigError, match="--timeframes: unknown timeframe '7x'"):
        check(["7x"])
