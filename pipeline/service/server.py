"""Starting the service: the ``[serve]`` section of ``marketlake.toml``, the bind checks, and
uvicorn."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from marketlake.errors import ConfigError
from marketlake.pipeline.config import Settings
from marketlake.pipeline.service.auth import check_bind, resolve_token

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    file_values: dict[str, Any]  # settings from [serve], applied to sync_settings


def serve_options(settings: Settings, host: str | None, port: int | None) -> ServeOptions:
    """Flags > ``[serve]`` in ``marketlake.toml`` > defaults."""
    section = dict(settings.serve)
    host_value = host or section.pop("host", None) or DEFAULT_HOST
    port_value = port or section.pop("port", None) or DEFAULT_PORT
    section.pop("host", None)
    section.pop("port", None)
    section.pop("pull", None)  # read by the pull route, not a runtime setting
    section.pop("push_memory_rows", None)  # read by the push route
    if not 0 < port_value < 65536:
        raise ConfigError(f"--port: expected 1-65535, got {port_value}")
    return ServeOptions(str(host_value), int(port_value), section)


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
