"""Redaction: known secrets and their prefixes, every DSN password form, DSNs that do not parse."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from marketlake.errors import ConfigError
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.redact import (
    DsnError,
    clip,
    describe_dsn,
    dsn_secrets,
    parse_dsn,
    redact,
)
from marketlake.pipeline.serving.dsn import dsn_with

SECRET = "s3cr3t-Canary-0042"

DSNS = [
    f"host=127.0.0.1 password=x;{SECRET} dbname=test",
    f"host=h password='a {SECRET}' dbname=d",
    f"host=h password = 'it\\'s {SECRET}'  user=u",
    f"host=h password=esc\\ aped{SECRET}",
    f"postgresql://u:{SECRET}%40x@h:5432/db?sslmode=disable",
    f"postgres://u@h/db?password={SECRET}%20y&application_name=a",
    "postgresql://[::1]:5432,h2:6/db",
    "postgresql:///db",
    "dbname = test  user=x",
]


@pytest.mark.parametrize("dsn", DSNS)
def test_dsns_parse_as_libpq_parses_them(dsn):
    assert parse_dsn(dsn) == {k: str(v) for k, v in conninfo_to_dict(dsn).items()}


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql//user:{SECRET}@host/db",
        f"host=h password='{SECRET}",
        "postgresql://h/db?sslmode",
        "postgresql://u:%zz@h",
    ],
)
def test_a_dsn_libpq_rejects_is_rejected_and_never_shown(dsn):
    # regression: a malformed URL DSN was printed and stored in full, password included
    with pytest.raises(Exception):  # noqa: B017 - psycopg's own error type
        conninfo_to_dict(dsn)
    with pytest.raises(DsnError) as err:
        parse_dsn(dsn)
    assert SECRET not in str(err.value) and "%zz" not in str(err.value)
    assert SECRET not in describe_dsn(dsn) and "does not parse" in describe_dsn(dsn)
    with pytest.raises(ConfigError) as err:
        dsn_with(dsn, application_name="x")
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("dsn", DSNS[:6])
def test_every_password_form_is_a_secret(dsn):
    # regression: keyword-form passwords (x;SECRET, a quoted one with a space) were printed
    settings = load_settings(dsn=dsn, env={"MARKETLAKE_HOME": "/tmp/h"})
    assert dsn_secrets(dsn) and set(dsn_secrets(dsn)) <= set(settings.secrets())
    shown = redact(f"connecting with {dsn} failed", settings.secrets())
    assert SECRET[:4] not in shown, shown
    assert SECRET not in describe_dsn(dsn)


def test_keyword_passwords_are_redacted_even_when_unknown():
    text = "password='two words' password=x;tail pwd=ok"
    assert redact(text) == "password='***' password=*** pwd=***"


def test_prefixes_of_known_secrets_are_redacted():
    # regression: text cut inside a key kept the key's first characters
    out = redact(f"key {SECRET} cut {SECRET[:9]}… and {SECRET[:4]}", [SECRET])
    assert out == "key *** cut ***… and ***"
    assert redact("abc", ["abc"]) == "abc"  # shorter than 4: never matched


def test_redact_then_clip_never_shows_part_of_a_key():
    text = "e" * 190 + " " + SECRET
    assert SECRET[:4] not in clip(redact(text, [SECRET]), 200)


def test_a_base_url_with_credentials_is_never_shown(tmp_path):
    # regression: an ftp:// base URL with a password reached a traceback
    with pytest.raises(ConfigError) as err:
        load_settings(
            env={
                "MARKETLAKE_HOME": str(tmp_path),
                "MARKETLAKE_YAHOO_BASE_URL": f"ftp://u:{SECRET}@h/",
            }
        )
    assert SECRET not in str(err.value) and "base URL" in str(err.value)
    settings = load_settings(
        env={"MARKETLAKE_HOME": str(tmp_path), "MARKETLAKE_YAHOO_BASE_URL": f"http://u:{SECRET}@h"}
    )
    assert SECRET in settings.secrets()


def test_the_quick_mark_search_agrees_with_the_regex():
    import random
    import re

    from marketlake.pipeline.redact import _ANY_MARK, _MARK_WORDS, _has_mark

    assert all(re.escape(w) == w for w in _MARK_WORDS)  # literals, split off the marks
    rng = random.Random(7)
    pieces = [*_MARK_WORDS, "pas", "sw", "to", "ken", "a", "p", "i", ":/", "/", " ", "=", "x"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        text = "".join(c.upper() if rng.random() < 0.3 else c for c in text)
        assert _has_mark(text) == bool(_ANY_MARK.search(text)), text
    for text in ("paſsword=1", "TOKEN ünïcode", "bearer ✓", "naïve"):  # the regex's folding
        assert _has_mark(text) == bool(_ANY_MARK.search(text)), text
    assert (
        redact('{"segment": "x", "password": "hunter22"}') == '{"segment": "x", "password": "***"}'
    )
