"""The one retry loop of every provider call (SPEC §6).

``Transient`` errors are retried at most ``settings.max_retries`` times: a
:class:`RateLimitedError` waits its ``retry_after`` (and pauses the whole provider through
``on_rate_limit``), anything else backs off exponentially with equal jitter. The last failure
is raised again, its message saying how many tries were made; other errors pass at once.
HTTP providers run it around each request, other providers around each fetch.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import TypeVar

from marketlake.errors import ProviderError, RateLimitedError, Transient
from marketlake.pipeline.config import ProviderSettings

T = TypeVar("T")


def backoff(settings: ProviderSettings, attempt: int, rng: random.Random | None = None) -> float:
    """Equal jitter: a delay in [d/2, d] with d = min(max, base * 2**attempt), so delays never
    shrink from one attempt to the next."""
    d = min(settings.backoff_max_s, settings.backoff_base_s * (2**attempt))
    return d / 2 + (rng or random).uniform(0, d / 2)


def retrying(
    call: Callable[[], T],
    settings: ProviderSettings,
    *,
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
    on_rate_limit: Callable[[float], None] | None = None,
) -> T:
    """``call()`` under the retry policy; see the module docstring."""
    tries = 1 + max(0, settings.max_retries)
    for attempt in range(tries):
        try:
            return call()
        except Exception as exc:
            if not isinstance(exc, Transient):
                raise
            if attempt == tries - 1:
                final = _gave_up(exc, tries)
                if final is exc:
                    raise
                raise final from (exc.__cause__ or exc)
            if isinstance(exc, RateLimitedError):
                wait = exc.retry_after
                if on_rate_limit is not None:
                    on_rate_limit(wait)
            else:
                wait = backoff(settings, attempt, rng)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _gave_up(exc: Exception, tries: int) -> Exception:
    """``exc`` again, its message saying how many tries were made."""
    if not isinstance(exc, ProviderError) or tries == 1:
        return exc
    where = f"{exc.provider} {exc.symbol}".strip()
    detail = str(exc).removeprefix(f"{where}: ") if where else str(exc)
    what = "rate limited" if isinstance(exc, RateLimitedError) else "gave up"
    out = copy.copy(exc)
    out.args = (f"{where}: {what} after {tries} tries; {detail}",)
    return out
