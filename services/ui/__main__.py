"""`wharf-ui` / `python -m wharf_ui`: serve Harbor's REST API v2.0."""

from __future__ import annotations

import asyncio
import sys

from wharf_shared.config import ConfigError, load_settings
from wharf_shared.db.engine import DatabaseURLError
from wharf_shared.db.schema import SchemaError, preflight
from wharf_shared.logging import configure_logging, get_logger
from wharf_shared.malloc import unmap_large_blocks
from wharf_shared.procmetrics import use_multiprocess_metrics


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wharf-ui: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    configure_logging(settings.log_level, "ui")
    log = get_logger("wharf_ui")
    # Basic auth runs argon2 (19 MiB a check): give the memory back after each.
    unmap_large_blocks(1024 * 1024)
    if not settings.secret_key_path.is_file():
        missing = f"the secret key {settings.secret_key_path} is missing: run `wharf init`"
        print(f"wharf-ui: {missing}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    if settings.ui.workers > 1:
        use_multiprocess_metrics("ui")
    from wharf_shared.serving import run
    from wharf_ui.app import create_app

    try:
        asyncio.run(preflight(settings))
    except (SchemaError, DatabaseURLError, OSError) as exc:
        log.error("startup_failed", error=str(exc))
        print(f"wharf-ui: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    ui = settings.ui
    run(lambda: create_app(settings), ui.host, ui.port, ui.workers)


if __name__ == "__main__":
    main()
