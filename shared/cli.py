"""`wharf`: the admin command — migrate, init, config, token, run.

Each command imports what it uses when it runs: `wharf run` stays up as the supervisor of the
whole suite, and must not hold pydantic, SQLAlchemy or asyncio for the life of the suite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wharf_shared.config import Settings


def _print(*parts: object) -> None:
    print(*parts)  # noqa: T201 - a CLI talks on stdout


def _fail(message: str, code: int = 2) -> None:
    print(f"wharf: {message}", file=sys.stderr)  # noqa: T201
    sys.exit(code)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    import asyncio

    from wharf_shared.db.engine import Database
    from wharf_shared.db.migrate import upgrade

    async def go() -> tuple[str | None, str | None]:
        db = Database(settings.effective_database_url, pool_size=1)
        try:
            return await upgrade(db, args.revision)
        finally:
            await db.close()

    before, after = asyncio.run(go())
    if before == after:
        _print(f"schema is up to date ({after})")
    else:
        _print(f"schema upgraded: {before or 'empty'} -> {after}")


def cmd_init(settings: Settings, _args: argparse.Namespace) -> None:
    import asyncio

    from wharf_shared.setup import ensure_accounts, ensure_files

    report = ensure_files(settings)
    for path in report.created:
        _print(f"created {path}")
    for path in report.kept:
        _print(f"kept    {path}")
    accounts = asyncio.run(ensure_accounts(settings))
    if accounts.admin_created:
        if accounts.admin_password:
            _print(f"created user admin with password {accounts.admin_password}  (shown once: note it now)")
        else:
            _print("created user admin with the password in WHARF_ADMIN_PASSWORD")
    else:
        _print("kept    user admin")
    _print("created public project library" if accounts.library_created else "kept    project library")


def cmd_config(settings: Settings, args: argparse.Namespace) -> None:
    if args.markdown:
        from wharf_shared.docs import settings_table

        _print(settings_table())
        return
    import json

    from wharf_shared.config import mask_url, masked

    values = masked(settings)
    values["(effective) database"] = mask_url(settings.effective_database_url)
    values["(effective) storage root"] = str(settings.storage_root)
    values["(effective) token realm"] = settings.token_realm
    if args.json:
        _print(json.dumps(values, indent=2))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        _print(f"{key.ljust(width)}  {'' if value is None else value}")


def cmd_token(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared.tokens import Access, TokenError, TokenIssuer, load_private_key

    access = []
    for scope in args.scope:
        parts = scope.split(":")
        if len(parts) < 3:
            _fail(f"scope {scope!r} is not type:name:actions")
        access.append(
            Access(parts[0], ":".join(parts[1:-1]), frozenset(a for a in parts[-1].split(",") if a))
        )
    try:
        issuer = TokenIssuer(
            load_private_key(settings.token_private_key_path),
            service=settings.token.service,
            issuer=settings.token.issuer,
        )
    except TokenError as exc:
        _fail(f"{exc} (run `wharf init` first)")
        return
    token, _ = issuer.issue(args.subject, access, args.lifetime or settings.token.lifetime_seconds)
    _print(token)


def cmd_run(_args: argparse.Namespace) -> None:
    # Settings, migrations and `init` happen in a child of the supervisor (suite.py).
    from wharf_shared.suite import run_suite

    sys.exit(run_suite())


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("wharf")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class VersionAction(argparse.Action):
    """`--version`, looked up only when asked: `wharf run` stays up, and loads nothing it need not."""

    def __init__(self, option_strings: Sequence[str], dest: str) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        _print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wharf",
        description="Wharf admin command. Settings come from WHARF_* variables (see `wharf config`).",
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="upgrade the database schema (safe to run on many hosts at once)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("init", help="create the data dir, token keys and secret key when missing")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--markdown", action="store_true", help="the README's settings table")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "token", help="mint a registry token with this host's signing key (for admins and scripts)"
    )
    p.add_argument(
        "--scope", action="append", default=[], help="e.g. repository:library/app:pull,push (repeatable)"
    )
    p.add_argument("--subject", default="admin", help="the token's `sub` (default: admin)")
    p.add_argument("--lifetime", type=int, default=0, help="seconds (default: WHARF_TOKEN__LIFETIME_SECONDS)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser(
        "run", help="run every service on this host on embedded defaults (what `make run` does)"
    )
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.func is cmd_run:
        cmd_run(args)
    else:
        with_settings(lambda settings: args.func(settings, args))


def with_settings(command: Callable[[Settings], object]) -> None:
    """Load the settings and run `command` with them; a known failure exits with its message."""
    from wharf_shared.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
        return
    from wharf_shared.logging import configure_logging

    configure_logging("warning", "wharf")
    try:
        command(settings)
    except ConfigError as exc:
        _fail(str(exc))
    except Exception as exc:
        from wharf_shared.db.engine import DatabaseURLError
        from wharf_shared.db.schema import SchemaError

        if isinstance(exc, SchemaError | DatabaseURLError | OSError):
            _fail(str(exc), 1)
        raise


if __name__ == "__main__":
    main()
