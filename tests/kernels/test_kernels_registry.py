"""Spec parsing, column names, defaults, warm-ups and errors of the indicator registry."""

from __future__ import annotations

import pytest

from marketlake import kernels
from marketlake.kernels import IndicatorSpecError

DEFAULT_COLUMNS = [
    "sma_9",
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_9",
    "ema_21",
    "ema_50",
    "ema_200",
    "rsi_14",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "macd_hist_12_26_9",
    "bb_upper_20_2",
    "bb_middle_20_2",
    "bb_lower_20_2",
    "atr_14",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "supertrend_10_3",
    "supertrend_dir_10_3",
    "obv",
    "vwap",
    "pivot_p",
    "pivot_r1",
    "pivot_r2",
    "pivot_r3",
    "pivot_s1",
    "pivot_s2",
    "pivot_s3",
    "fib_100_0",
    "fib_100_236",
    "fib_100_382",
    "fib_100_500",
    "fib_100_618",
    "fib_100_786",
    "fib_100_1000",
]


def test_default_set_and_its_columns():
    assert kernels.DEFAULT_INDICATORS[:4] == ("sma(9)", "sma(20)", "sma(50)", "sma(200)")
    assert len(kernels.DEFAULT_INDICATORS) == 18
    assert kernels.output_columns() == DEFAULT_COLUMNS
    assert kernels.output_columns(None) == kernels.output_columns(kernels.DEFAULT_INDICATORS)


@pytest.mark.parametrize(
    ("spec", "name", "params", "columns"),
    [
        ("sma(20)", "sma", (20,), ("sma_20",)),
        ("SMA( 20 )", "sma", (20,), ("sma_20",)),
        ("ema(21)", "ema", (21,), ("ema_21",)),
        ("rsi(14)", "rsi", (14,), ("rsi_14",)),
        (
            "macd(12, 26, 9)",
            "macd",
            (12, 26, 9),
            ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"),
        ),
        ("MACD", "macd", (12, 26, 9), ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9")),
        ("bbands(20,2)", "bbands", (20, 2.0), ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2")),
        (
            "bbands(20, 2.0)",
            "bbands",
            (20, 2.0),
            ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2"),
        ),
        (
            "bbands(20,2.5)",
            "bbands",
            (20, 2.5),
            ("bb_upper_20_2p5", "bb_middle_20_2p5", "bb_lower_20_2p5"),
        ),
        ("bbands(10)", "bbands", (10, 2.0), ("bb_upper_10_2", "bb_middle_10_2", "bb_lower_10_2")),
        ("atr(14)", "atr", (14,), ("atr_14",)),
        ("adx(14)", "adx", (14,), ("adx_14", "plus_di_14", "minus_di_14")),
        ("supertrend(10,3)", "supertrend", (10, 3.0), ("supertrend_10_3", "supertrend_dir_10_3")),
        (
            "Supertrend(7, 1.5)",
            "supertrend",
            (7, 1.5),
            ("supertrend_7_1p5", "supertrend_dir_7_1p5"),
        ),
        ("obv", "obv", (), ("obv",)),
        ("OBV()", "obv", (), ("obv",)),
        ("vwap", "vwap", (), ("vwap",)),
        (
            "pivots",
            "pivots",
            (),
            ("pivot_p", "pivot_r1", "pivot_r2", "pivot_r3", "pivot_s1", "pivot_s2", "pivot_s3"),
        ),
        (
            "fib(100)",
            "fib",
            (100,),
            (
                "fib_100_0",
                "fib_100_236",
                "fib_100_382",
                "fib_100_500",
                "fib_100_618",
                "fib_100_786",
                "fib_100_1000",
            ),
        ),
        ("fib(21)", "fib", (21,), tuple(f"fib_21_{k}" for k in (0, 236, 382, 500, 618, 786, 1000))),
    ],
)
def test_parse(spec, name, params, columns):
    s = kernels.parse(spec)
    assert s.name == name
    assert s.params == params
    assert s.columns == columns
    assert kernels.parse(s) == s  # a parsed spec is accepted (and re-validated) as is
    assert kernels.parse(str(s)) == s  # str() round-trips


@pytest.mark.parametrize(
    ("spec", "warmup"),
    [
        ("sma(20)", 19),
        ("ema(9)", 8),
        ("ema(200)", 199),
        ("rsi(14)", 14),
        ("macd(12,26,9)", 33),
        ("bbands(20,2)", 19),
        ("atr(14)", 14),
        ("adx(14)", 27),
        ("supertrend(10,3)", 10),
        ("obv", 0),
        ("vwap", 0),
        ("pivots", 1),
        ("fib(100)", 99),
    ],
)
def test_warmup_per_spec(spec, warmup):
    assert kernels.parse(spec).warmup == warmup
    assert kernels.warmup([spec]) == warmup


def test_warmup_of_a_set_is_the_max():
    assert kernels.warmup() == 199  # sma(200)
    assert kernels.warmup(["rsi(14)", "adx(14)", "obv"]) == 27
    assert kernels.warmup([]) == 0


def test_duplicates_are_dropped_in_order():
    assert kernels.output_columns(["sma(20)", "rsi", "SMA(20)", "sma( 20 )"]) == [
        "sma_20",
        "rsi_14",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo(3)", "unknown indicator 'foo'"),
        ("", "expected name or name(param, ...)"),
        ("sma(20", "expected name or name(param, ...)"),
        ("sma(2.5)", "period must be an integer"),
        ("sma(x)", "period must be an integer"),
        ("sma(0)", "period must be >= 1"),
        ("sma(-5)", "period must be >= 1"),
        ("sma(200000)", "period must be <= 100000"),
        ("rsi(1)", "period must be >= 2"),
        ("sma(1,2)", "at most 1 parameter"),
        ("obv(3)", "at most 0 parameter"),
        ("macd(12,,9)", "empty parameter"),
        ("macd(26,12,9)", "fast must be < slow"),
        ("macd(12,12,9)", "fast must be < slow"),
        ("bbands(20,0)", "k must be > 0"),
        ("bbands(20,nan)", "k must be finite"),
        ("bbands(20,two)", "k must be a number"),
        ("supertrend(10,-1)", "multiplier must be > 0"),
        ("adx(1)", "period must be >= 2"),
    ],
)
def test_bad_specs_raise_with_a_clear_message(spec, message):
    with pytest.raises(IndicatorSpecError) as exc:
        kernels.parse(spec)
    text = str(exc.value)
    assert message in text
    # the message lists every indicator with its signature
    for sig in ("sma(period=20)", "macd(fast=12, slow=26, signal=9)", "bbands(period=20, k=2)"):
        assert sig in text
    assert "obv" in text and "pivots" in text and "fib(period=100)" in text


def test_spec_error_is_a_value_error():
    assert issubclass(IndicatorSpecError, ValueError)
    with pytest.raises(ValueError):
        kernels.output_columns(["nope"])
    with pytest.raises(IndicatorSpecError):
        kernels.parse(20)  # type: ignore[arg-type]
