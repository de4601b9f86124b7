"""`wharf-registry` / `python -m wharf_registry`: serve the OCI Distribution API."""

from __future__ import annotations

import asyncio
import sys

from wharf_shared.config import ConfigError, load_settings
from wharf_shared.db.engine import DatabaseURLError
from wharf_shared.db.schema import SchemaError, preflight
from wharf_shared.logging import configure_logging, get_logger
from wharf_shared.procmetrics import use_multiprocess_metrics
from wharf_shared.service_cli import parse_service_args
from wharf_shared.tokens import TokenError


def main() -> None:
    parse_service_args("registry", "Serve the OCI Distribution API (`/v2/`).")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wharf-registry: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    configure_logging(settings.log_level, "registry")
    log = get_logger("wharf_registry")
    if settings.registry.workers > 1:
        use_multiprocess_metrics("registry")
    from wharf_registry.app import create_app
    from wharf_shared.serving import run
    from wharf_shared.storage.base import StorageError
    from wharf_shared.storage.factory import check_storage

    reg = settings.registry
    if reg.auth == "token" and not settings.token_keys_path.is_file():
        print(  # noqa: T201
            f"wharf-registry: token auth needs the trusted key bundle {settings.token_keys_path}: "
            "run `wharf init` or set WHARF_REGISTRY__TOKEN_KEYS_FILE (or WHARF_REGISTRY__AUTH=none)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        # Fail fast, once, with a clear message, before any worker starts.
        asyncio.run(preflight(settings))
        asyncio.run(check_storage(settings))
    except (SchemaError, TokenError, DatabaseURLError, StorageError, OSError) as exc:
        log.error("startup_failed", error=str(exc))
        print(f"wharf-registry: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    run(lambda: create_app(settings), reg.host, reg.port, reg.workers)


if __name__ == "__main__":
    main()
