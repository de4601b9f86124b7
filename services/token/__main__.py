"""`wharf-token` / `python -m wharf_token`: serve Docker token auth."""

from __future__ import annotations

import asyncio
import sys

from wharf_shared.config import ConfigError, load_settings
from wharf_shared.db.engine import DatabaseURLError
from wharf_shared.db.schema import SchemaError, preflight
from wharf_shared.logging import configure_logging, get_logger
from wharf_shared.malloc import unmap_large_blocks
from wharf_shared.procmetrics import use_multiprocess_metrics
from wharf_shared.service_cli import parse_service_args
from wharf_shared.tokens import TokenError


def main() -> None:
    parse_service_args("token", "Serve Docker token auth (`/service/token`).")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wharf-token: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    configure_logging(settings.log_level, "token")
    log = get_logger("wharf_token")
    # Each argon2 check takes 19 MiB (wharf_shared.passwords): give it back after the check, or
    # the heap keeps ~20 MiB resident from the first logins on.
    unmap_large_blocks(1024 * 1024)
    for path, what in (
        (settings.token_private_key_path, "signing key"),
        (settings.secret_key_path, "secret key"),
    ):
        if not path.is_file():
            print(f"wharf-token: the {what} {path} is missing: run `wharf init`", file=sys.stderr)  # noqa: T201
            sys.exit(2)
    if settings.token.workers > 1:
        use_multiprocess_metrics("token")
    from wharf_shared.serving import run
    from wharf_token.app import create_app

    try:
        asyncio.run(preflight(settings))
        create_app(settings)  # reads the keys: fail here, once, not in every worker
    except (SchemaError, TokenError, DatabaseURLError, OSError) as exc:
        log.error("startup_failed", error=str(exc))
        print(f"wharf-token: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    token = settings.token
    run(lambda: create_app(settings), token.host, token.port, token.workers)


if __name__ == "__main__":
    main()
