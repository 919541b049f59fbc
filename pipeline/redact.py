"""Secret redaction for every log line, error message and ``sync_logs`` row."""

from __future__ import annotations

import re

_PATTERNS = [
    # scheme://user:password@host  -> scheme://user:***@host
    (
        re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<post>@)"),
        "***",
    ),
    # password=..., apikey=..., token=... in DSNs, query strings and headers
    (
        re.compile(
            r"(?P<pre>\b(?:password|passwd|pwd|api[_-]?key|apikey|token|access_token|secret"
            r"|x[_-]cg[_-](?:demo|pro)[_-]api[_-]key)\s*[=:]\s*['\"]?)(?P<secret>[^\s&'\",;]+)(?P<post>)",
            re.IGNORECASE,
        ),
        "***",
    ),
    (re.compile(r"(?P<pre>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)(?P<post>)"), "***"),
]


def redact(text: object, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Return ``text`` with passwords, API keys and tokens replaced by ``***``."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    for pattern, repl in _PATTERNS:
        out = pattern.sub(lambda m, r=repl: m.group("pre") + r + m.group("post"), out)
    return out
