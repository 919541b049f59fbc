"""Starting the service: the ``[serve]`` section of ``marketlake.toml``, the bind checks, and
uvicorn."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketlake.errors import ConfigError
from marketlake.pipeline.config import Settings
from marketlake.pipeline.service.auth import check_bind, resolve_token
from marketlake.pipeline.service.settings_store import DEFAULTS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_SERVE_KEYS = {"host", "port", *DEFAULTS}


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    file_values: dict[str, Any]  # settings from [serve], applied to sync_settings


def serve_options(
    config_file: Path | None, cwd: Path, host: str | None, port: int | None
) -> ServeOptions:
    """Flags > ``[serve]`` in ``marketlake.toml`` > defaults; unknown keys are an error."""
    path = config_file or cwd / "marketlake.toml"
    section: dict[str, Any] = {}
    if path.exists():
        try:
            with path.open("rb") as fh:
                section = dict(tomllib.load(fh).get("serve", {}))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    unknown = sorted(set(section) - _SERVE_KEYS)
    if unknown:
        raise ConfigError(
            f"[serve] {unknown[0]}: unknown setting; known: {', '.join(sorted(_SERVE_KEYS))}"
        )
    port_value = port if port is not None else section.pop("port", DEFAULT_PORT)
    if not isinstance(port_value, int) or not 0 < port_value < 65536:
        raise ConfigError(f"[serve] port: expected 1-65535, got {port_value!r}")
    section.pop("port", None)
    host_value = host or section.pop("host", DEFAULT_HOST)
    section.pop("host", None)
    return ServeOptions(str(host_value), port_value, section)


def serve(
    settings: Settings,
    options: ServeOptions,
    *,
    token: str | None,
    announce=print,
) -> None:
    """Run the service until interrupted."""
    import uvicorn

    from marketlake.lake.paths import ensure_home
    from marketlake.pipeline.service.app import ServiceConfig, create_app

    check_bind(options.host, token)
    ensure_home(settings.home)
    tok = resolve_token(settings.home, token)
    app = create_app(ServiceConfig(settings, tok, file_values=options.file_values))
    where = "MARKETLAKE_API_TOKEN" if tok.source == "environment" else tok.source
    announce(f"marketlake serve: http://{options.host}:{options.port}/ (API token: {where})")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=options.host, port=options.port, log_level="info", access_log=False)
