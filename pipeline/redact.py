"""Secret redaction for every log line, error message and ``sync_logs`` row.

Known secrets (API keys, the DSN password, session tokens) are replaced wherever they appear,
and so is any prefix of one that is 4 characters or longer: text cut short elsewhere (an
error body, a log line) may end inside a key. Patterns catch what looks like a credential
even when its value is unknown (``scheme://user:password@``, ``password=``, ``apikey=``,
``Bearer ...``). Redact first, then cut (:func:`clip`).

DSNs are read with libpq's rules (:func:`parse_dsn`: the ``keyword=value`` form with quoted
values and backslash escapes, and ``postgresql://`` URLs with percent-encoding), so every form
of a password is known (:func:`dsn_secrets`); a DSN that does not parse is described without
its text (:func:`describe_dsn`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote

MASK = "***"
MIN_PREFIX = 4

# (pattern, mark): the pattern can only match text in which its mark (a cheap search with the
# same flags) finds one of the pattern's literal words
_PATTERNS = [
    # scheme://user:password@host  -> scheme://user:***@host
    (
        re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<post>@)"),
        re.compile("://"),
    ),
    # password='quoted value' (libpq keyword form; backslash escapes inside)
    (
        re.compile(
            r"(?P<pre>\b(?:password|passwd|pwd)\s*=\s*')(?P<secret>(?:[^'\\]|\\.)*)(?P<post>'?)",
            re.IGNORECASE,
        ),
        re.compile("passw|pwd", re.IGNORECASE),
    ),
    # password=..., apikey=..., token=... in DSNs, query strings, headers and JSON
    (
        re.compile(
            r"(?P<pre>\b(?:password|passwd|pwd|api[_-]?key|apikey|token|access_token|secret"
            r"|x[_-]cg[_-](?:demo|pro)[_-]api[_-]key)['\"]?\s*[=:]\s*['\"]?)"
            r"(?P<secret>(?:\\.|[^\s&'\"\\])+)(?P<post>)",
            re.IGNORECASE,
        ),
        re.compile("passw|pwd|api|token|secret", re.IGNORECASE),
    ),
    (
        re.compile(r"(?P<pre>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)(?P<post>)"),
        re.compile("bearer", re.I),
    ),
]

# every mark in one search (each is a case-insensitive alternation of literals, or one that
# case folding does not widen): most text, such as a task's metadata, holds none
_ANY_MARK = re.compile("|".join(f"(?:{mark.pattern})" for _, mark in _PATTERNS), re.IGNORECASE)
# the marks' literals, lower case: in ASCII text a case-insensitive search for them is a
# search of the lower-cased text, six times quicker than the regex (2 against 12 us for a
# task's metadata, thousands of them a sync)
_MARK_WORDS = tuple(sorted({w.lower() for _, mark in _PATTERNS for w in mark.pattern.split("|")}))


def _has_mark(text: str) -> bool:
    """Whether ``text`` holds a mark (:data:`_ANY_MARK`); non-ASCII text is searched by the
    regex, whose case folding also matches letters such as the long s."""
    if text.isascii():
        low = text.lower()
        return any(w in low for w in _MARK_WORDS)
    return _ANY_MARK.search(text) is not None


@lru_cache(maxsize=256)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """The secret, or any prefix of it at least :data:`MIN_PREFIX` characters long."""
    head, rest = secret[:MIN_PREFIX], secret[MIN_PREFIX:]
    tail = ""
    for ch in reversed(rest):
        tail = f"(?:{re.escape(ch)}{tail})?"
    return re.compile(re.escape(head) + tail)


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with known secrets (and their prefixes) and credential-looking values
    replaced by ``***``."""
    out = str(text)
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_PREFIX}, key=len, reverse=True):
        if secret[:MIN_PREFIX] in out:  # every match starts with the secret's head
            out = out.replace(secret, MASK)
            out = _secret_pattern(secret).sub(MASK, out)
    if not _has_mark(out):
        return out
    for pattern, mark in _PATTERNS:
        if mark.search(out):
            out = pattern.sub(lambda m: m.group("pre") + MASK + m.group("post"), out)
    return out


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (``…`` marks a cut); redact before clipping."""
    return text[:limit] + ("…" if len(text) > limit else "")


# -- DSNs ------------------------------------------------------------------------------------
class DsnError(ValueError):
    """A DSN libpq would not parse; the message never contains the DSN's text."""


_URI_PREFIXES = ("postgresql://", "postgres://")


def parse_dsn(dsn: str) -> dict[str, str]:
    """The keywords of a libpq connection string (``keyword=value`` form or URL), parsed by
    libpq's rules; :class:`DsnError` (without the text) when libpq would reject its syntax."""
    if dsn.startswith(_URI_PREFIXES):
        return _parse_uri(dsn)
    return _parse_keywords(dsn)


def _parse_keywords(dsn: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and not dsn[i].isspace() and dsn[i] != "=":
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            raise DsnError(f"missing '=' after keyword #{len(out) + 1}")
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and dsn[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise DsnError(f"unterminated quoted value of {key!r}")
                if dsn[i] == "\\" and i + 1 < n:
                    value.append(dsn[i + 1])
                    i += 2
                elif dsn[i] == "'":
                    i += 1
                    break
                else:
                    value.append(dsn[i])
                    i += 1
        else:
            while i < n and not dsn[i].isspace():
                if dsn[i] == "\\" and i + 1 < n:
                    value.append(dsn[i + 1])
                    i += 2
                else:
                    value.append(dsn[i])
                    i += 1
        out[key] = "".join(value)
    return out


_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode(text: str, what: str) -> str:
    if _PERCENT.search(text):
        raise DsnError(f"invalid percent-encoding in the URL's {what}")
    return unquote(text)


def _parse_uri(dsn: str) -> dict[str, str]:
    rest = dsn.split("://", 1)[1]
    out: dict[str, str] = {}
    slash = rest.find("/")
    at = rest.find("@", 0, slash if slash >= 0 else len(rest))
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, password = userinfo.partition(":")
        if user:
            out["user"] = _decode(user, "user")
        if colon:
            out["password"] = _decode(password, "password")
    netloc, sep, tail = rest.partition("?") if "/" not in rest.split("?", 1)[0] else (None, "", "")
    if netloc is None:
        netloc, _, path = rest.partition("/")
        dbname, sep, tail = path.partition("?")
        if dbname:
            out["dbname"] = _decode(dbname, "database name")
    hosts, ports = [], []
    for part in netloc.split(",") if netloc else []:
        if part.startswith("["):
            end = part.find("]")
            if end < 0:
                raise DsnError("unterminated IPv6 address in the URL")
            host, port = part[1:end], part[end + 1 :].removeprefix(":")
        else:
            host, _, port = part.partition(":")
        hosts.append(_decode(host, "host"))
        ports.append(port)
    if any(hosts):
        out["host"] = ",".join(hosts)
    if any(ports):
        out["port"] = ",".join(ports)
    if sep:
        for pair in tail.split("&"):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq:
                raise DsnError("a URL parameter without '='")
            out[_decode(key, "parameters")] = _decode(value, "parameters")
    return out


def dsn_secrets(dsn: str | None) -> tuple[str, ...]:
    """Every form a DSN's password takes: as parsed and as written (quoted, escaped or
    percent-encoded). Empty for a DSN without a password or one that does not parse."""
    if not dsn:
        return ()
    try:
        password = parse_dsn(dsn).get("password")
    except DsnError:
        return ()
    forms = {password} if password else set()
    if dsn.startswith(_URI_PREFIXES):
        userinfo = dsn.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            raw = userinfo.partition(":")[2]
            forms |= {raw, unquote(raw)}
        for m in re.finditer(r"[?&]password=([^&]*)", dsn):
            forms |= {m.group(1), unquote(m.group(1))}
    elif password:
        forms.add(password.replace("\\", "\\\\").replace("'", "\\'"))
    return tuple(sorted(f for f in forms if f))


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its password: ``user@host:port/dbname``; a DSN that does
    not parse is described as such, never shown."""
    try:
        parts = parse_dsn(dsn)
    except DsnError as exc:
        return f"<a DSN that does not parse: {exc}>"
    user = parts.get("user")
    where = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    db = f"/{parts['dbname']}" if parts.get("dbname") else ""
    return redact(f"{user + '@' if user else ''}{where}{port}{db}", dsn_secrets(dsn))
