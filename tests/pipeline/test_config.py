from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketlake.errors import ConfigError
from marketlake.pipeline.config import load_settings
from marketlake.pipeline.redact import redact


def test_precedence_flag_env_file_default(tmp_path):
    (tmp_path / "marketlake.toml").write_text(
        'home = "/from/file"\n[sync]\nconcurrency = 3\n[providers.yahoo]\nbase_url = "http://file"\n'
    )
    s = load_settings(env={}, cwd=tmp_path)
    assert s.home == Path("/from/file") and s.concurrency == 3
    assert s.provider("yahoo").base_url == "http://file"
    env = {"MARKETLAKE_HOME": "/from/env", "MARKETLAKE_YAHOO_BASE_URL": "http://127.0.0.1:9"}
    s = load_settings(env=env, cwd=tmp_path)
    assert s.home == Path("/from/env") and s.provider("yahoo").base_url == "http://127.0.0.1:9"
    s = load_settings(home="/from/flag", env=env, cwd=tmp_path, concurrency=5)
    assert s.home == Path("/from/flag") and s.concurrency == 5
    assert load_settings(env={}, cwd=tmp_path / "nowhere").home.name == "marketlake"


def test_bad_config_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="http"):
        load_settings(env={"MARKETLAKE_FMP_BASE_URL": "file:///etc/passwd"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(config_file=tmp_path / "missing.toml", env={})
    (tmp_path / "bad.toml").write_text("[sync\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=tmp_path / "bad.toml", env={})


def test_secrets_are_redacted(tmp_path):
    env = {
        "MARKETLAKE_FMP_API_KEY": "sekrit-key-123",
        "MARKETLAKE_DSN": "postgresql://app:hunter22@db:5432/x",
    }
    s = load_settings(env=env, cwd=tmp_path)
    text = f"GET /dcf?apikey=sekrit-key-123 failed; dsn={s.dsn}; token: abc.def"
    out = redact(text, s.secrets())
    assert "sekrit" not in out and "hunter22" not in out and "abc.def" not in out
    assert "postgresql://app:***@db:5432/x" in out
    assert "sekrit" not in repr(s) and "hunter22" not in repr(s)


def settings_from(tmp_path, text, **kw):
    (tmp_path / "marketlake.toml").write_text(text)
    return load_settings(cwd=tmp_path, env=kw.pop("env", {}), **kw)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[sync]\nconcurrancy = 3\n", "sync.concurrancy: unknown setting 'concurrancy' in [sync]"),
        ('[segments.eq]\nprovder = "yahoo"\n', "unknown setting 'provder' in [segments.eq]"),
        ("[providers.yahoo]\nrate_limt_per_s = 5\n", "'rate_limt_per_s' in [providers.yahoo]"),
        ('homme = "/x"\n', "unknown setting 'homme' in the top level"),
    ],
)
def test_unknown_settings_key_is_named_with_its_section(tmp_path, text, named):
    # regression: a misspelt key such as `concurrancy` was silently ignored
    with pytest.raises(ConfigError, match="did you mean") as info:
        settings_from(tmp_path, text)
    assert named in str(info.value) and str(tmp_path / "marketlake.toml") in str(info.value)


def test_wrong_type_names_the_key_and_value(tmp_path):
    # regression: `concurrency = "many"` ended in a traceback
    with pytest.raises(ConfigError, match=r"sync\.concurrency: .*integer.*'many'"):
        settings_from(tmp_path, '[sync]\nconcurrency = "many"\n')
    with pytest.raises(ConfigError, match=r"sync\.concurrency: .*greater than or equal to 1"):
        settings_from(tmp_path, "[sync]\nconcurrency = 0\n")
    with pytest.raises(ConfigError, match="--concurrency must be >= 1"):
        load_settings(cwd=tmp_path / "none", env={}, concurrency=0)


def test_segment_timeframe_7x_is_rejected_and_aliases_become_canonical(tmp_path):
    # regression: a segment with timeframe `7x` silently planned nothing
    with pytest.raises(ConfigError, match=r"segments\.eq\.timeframes: unknown timeframe '7x'"):
        settings_from(tmp_path, '[segments.eq]\ntimeframes = ["1D", "7x"]\n')
    s = settings_from(tmp_path, '[segments.eq]\ntimeframes = ["1d", "60m", "1wk"]\n')
    assert s.segments["eq"].timeframes == ("1D", "1h", "1W")


def test_empty_home_and_bad_now_are_rejected(tmp_path):
    # regression: MARKETLAKE_HOME="" silently meant the platform default
    with pytest.raises(ConfigError, match="MARKETLAKE_HOME is set but empty"):
        load_settings(cwd=tmp_path, env={"MARKETLAKE_HOME": ""})
    # regression: a bad MARKETLAKE_NOW was a traceback
    with pytest.raises(ConfigError, match="MARKETLAKE_NOW: expected an ISO date"):
        load_settings(cwd=tmp_path, env={"MARKETLAKE_NOW": "yesterday"})
    s = load_settings(cwd=tmp_path, env={"MARKETLAKE_NOW": "2026-01-02"})
    assert s.clock() == datetime(2026, 1, 2, tzinfo=UTC) == s.now


def test_non_http_base_url_is_rejected_without_its_secret(tmp_path):
    # regression: file:// and ftp:// base URLs were tracebacks (and could print the password)
    env = {"MARKETLAKE_YAHOO_BASE_URL": "ftp://u:SECRET@host/x"}
    with pytest.raises(ConfigError, match="MARKETLAKE_YAHOO_BASE_URL: base URL must be") as info:
        load_settings(cwd=tmp_path, env=env)
    assert "SECRET" not in str(info.value)
    with pytest.raises(ConfigError, match=r"providers\.yahoo\.base_url"):
        settings_from(tmp_path, '[providers.yahoo]\nbase_url = "file:///etc/passwd"\n')


def test_provider_options_pass_through(tmp_path):
    s = settings_from(
        tmp_path, '[providers.files]\npath = "/data"\n[providers.synthetic]\nseed = 7\n'
    )
    assert dict(s.provider("files").options) == {"path": "/data"}
    assert dict(s.provider("synthetic").options) == {"seed": 7}


def test_settings_without_a_file_import_no_toml_parser_nor_difflib(tmp_path):
    """A scheduled run without ``marketlake.toml`` pays for none of the TOML parser, difflib,
    pydantic and the file's models (they serve only a file and its misspelt keys)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from marketlake.pipeline.config import load_settings\n"
        "load_settings(home=sys.argv[1], env={}, cwd=__import__('pathlib').Path(sys.argv[1]))\n"
        "mods = ('tomllib', 'difflib', 'pydantic', 'marketlake.pipeline.config_file')\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    (tmp_path / "marketlake.toml").write_text("[sync]\nconcurrancy = 2\n")
    with pytest.raises(ConfigError, match="did you mean 'concurrency'"):
        load_settings(home=tmp_path, env={}, cwd=tmp_path)


def test_no_file_gives_the_settings_of_an_empty_file(tmp_path):
    """Without a file every setting is the dataclasses' default: the same settings, one for
    one, as an empty file's, whose defaults come from its models."""
    env = {"MARKETLAKE_DSN": "postgresql://u@h/db", "MARKETLAKE_FMP_API_KEY": "k"}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "marketlake.toml").write_text("")
    none = load_settings(home=tmp_path, env=env, cwd=tmp_path)
    empty = load_settings(home=tmp_path, env=env, cwd=tmp_path / "empty")
    assert none == empty
    for name in none.providers:
        assert none.provider(name) == empty.provider(name)
    assert dict(none.serve) == dict(empty.serve) == {}
