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
    with pytest.raises(ConfigError, match="cannot read"):
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
