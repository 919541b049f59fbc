"""Yahoo Finance: the provider (:mod:`.provider`), its chart parser (:mod:`.chart`), its
extended data types (:mod:`.fundamentals`) and the yfinance bridge (:mod:`.yfbridge`)."""

from marketlake.pipeline.providers.yahoo.provider import YahooProvider, yahoo_symbol

__all__ = ["YahooProvider", "yahoo_symbol"]
