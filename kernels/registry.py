"""Indicator registry: parses spec strings like ``"macd(12, 26, 9)"`` and knows, per indicator,
its parameters and defaults, its output column names, its inputs and its warm-up.

Column names join the name and the parameters with ``_``; a non-integer parameter writes its
``.`` as ``p`` (``bbands(20,2.5)`` -> ``bb_upper_20_2p5``). Warm-up = the number of leading NaN
rows the indicator has on a gap-free series. For recursive indicators (EMA, RSI, ATR, ADX, MACD,
Supertrend) the value at a row still depends, with decaying weight, on every earlier row, so
the warm-up is informational (how many rows are NaN), not a guarantee that a shorter history
would reproduce the same numbers; how many bars do is :func:`marketlake.kernels.resume.memory`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from marketlake.kernels.plan import FIB_LEVELS


class IndicatorSpecError(ValueError):
    """An unknown indicator name or invalid parameters in an indicator spec."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int or float
    default: float
    minimum: float
    maximum: float | None = None
    exclusive_min: bool = False  # True: value must be > minimum


@dataclass(frozen=True)
class Indicator:
    name: str
    params: tuple[Param, ...]
    inputs: tuple[str, ...]
    columns: Callable[[str], tuple[str, ...]]  # suffix -> column names
    warmup: Callable[..., int]
    description: str

    def signature(self) -> str:
        if not self.params:
            return self.name
        args = ", ".join(f"{p.name}={_fmt_default(p)}" for p in self.params)
        return f"{self.name}({args})"


@dataclass(frozen=True)
class IndicatorSpec:
    """A parsed, validated indicator spec: ``name`` plus normalised ``params``."""

    name: str
    params: tuple = field(default=())

    @property
    def definition(self) -> Indicator:
        return REGISTRY[self.name]

    @property
    def suffix(self) -> str:
        return "_".join(format_param(v) for v in self.params)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.definition.columns(self.suffix)

    @property
    def warmup(self) -> int:
        return self.definition.warmup(*self.params)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.definition.inputs

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(_spec_param(v) for v in self.params)})"


def format_param(value: float) -> str:
    """Column-name form of a parameter: ``20`` -> ``"20"``, ``2.5`` -> ``"2p5"``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(".", "p")


def _spec_param(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def _fmt_default(p: Param) -> str:
    return _spec_param(p.default)


def _cols(*names: str) -> Callable[[str], tuple[str, ...]]:
    return lambda sfx: tuple(f"{n}_{sfx}" if sfx else n for n in names)


_P = 100_000  # TA-Lib's upper bound for periods
_HLC = ("high", "low", "close")

REGISTRY: dict[str, Indicator] = {
    ind.name: ind
    for ind in (
        Indicator(
            "sma",
            (Param("period", int, 20, 1, _P),),
            ("close",),
            _cols("sma"),
            lambda n: n - 1,
            "simple moving average (TA-Lib SMA)",
        ),
        Indicator(
            "ema",
            (Param("period", int, 21, 1, _P),),
            ("close",),
            _cols("ema"),
            lambda n: n - 1,
            "exponential moving average, SMA-seeded (TA-Lib EMA)",
        ),
        Indicator(
            "rsi",
            (Param("period", int, 14, 2, _P),),
            ("close",),
            _cols("rsi"),
            lambda n: n,
            "Wilder RSI (TA-Lib RSI)",
        ),
        Indicator(
            "macd",
            (
                Param("fast", int, 12, 2, _P),
                Param("slow", int, 26, 2, _P),
                Param("signal", int, 9, 1, _P),
            ),
            ("close",),
            _cols("macd", "macd_signal", "macd_hist"),
            lambda f, s, g: s - 1 + g - 1,
            "MACD line, signal, histogram (TA-Lib MACD); fast < slow",
        ),
        Indicator(
            "bbands",
            (Param("period", int, 20, 2, _P), Param("k", float, 2.0, 0.0, exclusive_min=True)),
            ("close",),
            _cols("bb_upper", "bb_middle", "bb_lower"),
            lambda n, k: n - 1,
            "Bollinger Bands, SMA +/- k population sd (TA-Lib BBANDS, matype 0)",
        ),
        Indicator(
            "atr",
            (Param("period", int, 14, 1, _P),),
            _HLC,
            _cols("atr"),
            lambda n: n,
            "Wilder average true range (TA-Lib ATR)",
        ),
        Indicator(
            "adx",
            (Param("period", int, 14, 2, _P),),
            _HLC,
            _cols("adx", "plus_di", "minus_di"),
            lambda n: 2 * n - 1,
            "ADX with +DI/-DI (TA-Lib ADX, PLUS_DI, MINUS_DI); DI warm-up is n",
        ),
        Indicator(
            "supertrend",
            (
                Param("period", int, 10, 1, _P),
                Param("multiplier", float, 3.0, 0.0, exclusive_min=True),
            ),
            _HLC,
            _cols("supertrend", "supertrend_dir"),
            lambda n, m: n,
            "Supertrend line and direction (+1/-1) on TA-Lib ATR",
        ),
        Indicator("obv", (), ("close", "volume"), _cols("obv"), lambda: 0, "on-balance volume"),
        Indicator(
            "vwap",
            (),
            (*_HLC, "volume"),
            _cols("vwap"),
            lambda: 0,
            "session VWAP of (h+l+c)/3, reset each exchange-local date",
        ),
        Indicator(
            "pivots",
            (),
            _HLC,
            lambda sfx: tuple(f"pivot_{k}" for k in ("p", "r1", "r2", "r3", "s1", "s2", "s3")),
            # NaN for the whole first session: one bar for daily data, more for intraday
            lambda: 1,
            "classic floor pivots from the previous session",
        ),
        Indicator(
            "fib",
            (Param("period", int, 100, 1, None),),
            ("high", "low"),
            lambda sfx: tuple(f"fib_{sfx}_{k}" for k in FIB_LEVELS),
            lambda n: n - 1,
            "Fibonacci retracements of the rolling high-low range",
        ),
    )
}

DEFAULT_INDICATORS: tuple[str, ...] = (
    "sma(9)",
    "sma(20)",
    "sma(50)",
    "sma(200)",
    "ema(9)",
    "ema(21)",
    "ema(50)",
    "ema(200)",
    "rsi(14)",
    "macd(12,26,9)",
    "bbands(20,2)",
    "atr(14)",
    "adx(14)",
    "supertrend(10,3)",
    "obv",
    "vwap",
    "pivots",
    "fib(100)",
)

_SPEC_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_INT_RE = re.compile(r"^[+-]?\d+$")


def valid_signatures() -> str:
    return ", ".join(ind.signature() for ind in REGISTRY.values())


def _error(spec: object, why: str) -> IndicatorSpecError:
    return IndicatorSpecError(
        f"invalid indicator spec {spec!r}: {why}. Valid indicators: {valid_signatures()}"
    )


def _parse_value(spec: str, p: Param, text: str) -> float:
    if p.kind is int:
        if not _INT_RE.match(text):
            raise _error(spec, f"{p.name} must be an integer, got {text!r}")
        value: float = int(text)
    else:
        try:
            value = float(text)
        except ValueError:
            raise _error(spec, f"{p.name} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise _error(spec, f"{p.name} must be finite, got {text!r}")
    too_small = value <= p.minimum if p.exclusive_min else value < p.minimum
    if too_small:
        op = ">" if p.exclusive_min else ">="
        raise _error(spec, f"{p.name} must be {op} {_spec_param(p.minimum)}")
    if p.maximum is not None and value > p.maximum:
        raise _error(spec, f"{p.name} must be <= {p.maximum}")
    return value


def parse(spec: str | IndicatorSpec) -> IndicatorSpec:
    """Parse and validate one spec (``"sma(20)"``, ``"MACD(12, 26, 9)"``, ``"obv"``, ...).

    Names are case-insensitive; missing trailing parameters take their defaults. Raises
    :class:`IndicatorSpecError` on unknown names or bad parameters.
    """
    if isinstance(spec, IndicatorSpec):
        return parse(str(spec))  # re-validate specs built by hand
    if not isinstance(spec, str):
        raise _error(spec, "expected a string")
    m = _SPEC_RE.match(spec)
    if not m:
        raise _error(spec, "expected name or name(param, ...)")
    name = m.group(1).lower()
    ind = REGISTRY.get(name)
    if ind is None:
        raise _error(spec, f"unknown indicator {m.group(1)!r}")
    raw = m.group(2)
    args = [] if raw is None or not raw.strip() else [a.strip() for a in raw.split(",")]
    if len(args) > len(ind.params):
        raise _error(spec, f"{name} takes at most {len(ind.params)} parameter(s)")
    if any(a == "" for a in args):
        raise _error(spec, "empty parameter")
    values = []
    for i, p in enumerate(ind.params):
        values.append(_parse_value(spec, p, args[i]) if i < len(args) else p.kind(p.default))
    if name == "macd" and not values[0] < values[1]:
        raise _error(spec, "fast must be < slow")
    return IndicatorSpec(name, tuple(values))


def resolve(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> list[IndicatorSpec]:
    """Parse a list of specs (None -> the default set); duplicates are dropped, order kept."""
    if indicators is None:
        indicators = DEFAULT_INDICATORS
    elif isinstance(indicators, (str, IndicatorSpec)):
        indicators = [indicators]
    out: list[IndicatorSpec] = []
    seen: set[IndicatorSpec] = set()
    for item in indicators:
        spec = parse(item)
        if spec not in seen:
            seen.add(spec)
            out.append(spec)
    return out


def output_columns(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> list[str]:
    """Names of the columns ``compute`` appends for ``indicators`` (None -> default set)."""
    return [c for spec in resolve(indicators) for c in spec.columns]


def warmup(indicators: Iterable[str | IndicatorSpec] | str | None = None) -> int:
    """Largest warm-up (leading NaN rows) among ``indicators`` (None -> default set)."""
    return max((spec.warmup for spec in resolve(indicators)), default=0)


__all__ = [
    "DEFAULT_INDICATORS",
    "REGISTRY",
    "IndicatorSpec",
    "IndicatorSpecError",
    "output_columns",
    "parse",
    "resolve",
    "valid_signatures",
    "warmup",
]
