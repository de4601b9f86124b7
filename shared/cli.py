"""`wharf`: the admin command — migrate, init, config, drain, token, user, project, run.

Each command imports what it uses when it runs: `wharf run` stays up as the supervisor of the
whole suite, and must not hold pydantic, SQLAlchemy or asyncio for the life of the suite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

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


def cmd_init(settings: Settings, args: argparse.Namespace) -> None:
    import asyncio

    from wharf_shared.setup import ensure_accounts, ensure_files

    if not args.accounts_only:
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


def cmd_drain(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared import drain

    path = settings.drain_path
    proxy = settings.proxy
    if args.state == "on":
        if not path.parent.is_dir():
            _fail(f"cannot drain: {path.parent} does not exist (WHARF_DRAIN_FILE, WHARF_DATA_DIR)", 1)
        made = drain.start(path)
        _print(f"{'draining' if made else 'already draining'} ({path})")
        eject = proxy.eject_after_failures * proxy.health_interval_seconds
        _print(
            f"proxies take this host's services out of rotation within about {eject:g} s "
            f"({proxy.eject_after_failures} failed readiness checks, "
            f"{proxy.health_interval_seconds:g} s apart); requests still sent to them are served"
        )
    elif args.state == "off":
        removed = drain.stop(path)
        _print(f"not draining ({path} {'removed' if removed else 'was not there'})")
        if removed:
            _print(
                "proxies put this host's services back at their next passing readiness check, "
                f"no sooner than {proxy.eject_seconds:g} s after they left"
            )
    else:
        began = drain.since(path)
        if began is None:
            _print(f"not draining (no {path})")
        else:
            _print(f"draining since {began.isoformat(timespec='seconds')} ({path})")


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


def _read_password(args: argparse.Namespace, prompt: str) -> str:
    """From stdin (`--password-stdin`: the first line) or typed twice at a prompt; never argv."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            _fail("--password-stdin: no password on standard input")
        return password
    import getpass

    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} (again): ") != first:
        _fail("the passwords differ", 1)
    return first


def _accounts_command(settings: Settings, work: Callable[[Any], Awaitable[object]]) -> None:
    """Run `work(conn)` in one transaction; a refusal exits with its message (2 for a value that
    cannot be used, 1 for anything the database's state refuses)."""
    import asyncio

    from wharf_shared.db.engine import Database
    from wharf_shared.db.schema import check_schema
    from wharf_shared.errors.domain import DomainError, InvalidInput

    async def go() -> None:
        db = Database(settings.effective_database_url, pool_size=1)
        try:
            await check_schema(db)
            async with db.transaction() as conn:
                await work(conn)
        finally:
            await db.close()

    try:
        asyncio.run(go())
    except DomainError as exc:
        _fail(exc.message, 2 if isinstance(exc, InvalidInput) else 1)


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared.accounts import check_password, check_profile, check_username
    from wharf_shared.db import accounts
    from wharf_shared.errors.domain import Conflict, InvalidInput
    from wharf_shared.passwords import hash_password

    try:
        check_username(args.username)
        check_profile(args.email, args.realname, args.comment)
    except InvalidInput as exc:
        _fail(exc.message)
    password = _read_password(args, f"password for {args.username}")
    try:
        check_password(password)
    except InvalidInput as exc:
        _fail(exc.message)
    password_hash = hash_password(password)

    async def work(conn: Any) -> None:
        if await accounts.find_user(conn, args.username) is not None:
            raise Conflict(f"user {args.username} already exists")
        if args.email and await accounts.find_user_by_email(conn, args.email) is not None:
            raise Conflict(f"email {args.email} is already taken")
        user = await accounts.create_user(
            conn,
            args.username,
            password_hash,
            email=args.email or None,
            realname=args.realname,
            comment=args.comment,
            sysadmin=args.sysadmin,
        )
        _print(f"created user {user.username} (id {user.id}{', system admin' if user.sysadmin else ''})")

    _accounts_command(settings, work)


def cmd_user_passwd(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared.accounts import check_password
    from wharf_shared.db import accounts
    from wharf_shared.errors.domain import InvalidInput, NotFound
    from wharf_shared.passwords import hash_password

    password = _read_password(args, f"new password for {args.username}")
    try:
        check_password(password)
    except InvalidInput as exc:
        _fail(exc.message)
    password_hash = hash_password(password)

    async def work(conn: Any) -> None:
        user = await accounts.find_user(conn, args.username)
        if user is None or not await accounts.set_password(conn, user.id, password_hash):
            raise NotFound(f"no user {args.username}")
        _print(f"password of {args.username} changed")

    _accounts_command(settings, work)


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> None:
    import json

    from wharf_shared.db import accounts

    async def work(conn: Any) -> None:
        users = await accounts.list_all(conn)
        if args.json:
            rows = [
                {"user_id": u.id, "username": u.username, "email": u.email or "", "sysadmin_flag": u.sysadmin}
                for u in users
            ]
            _print(json.dumps(rows, indent=2))
            return
        for u in users:
            _print(f"{u.id:>6}  {u.username:<32} {'sysadmin' if u.sysadmin else '-':<9} {u.email or ''}")

    _accounts_command(settings, work)


def cmd_user_delete(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared.db import accounts
    from wharf_shared.errors.domain import NotFound

    async def work(conn: Any) -> None:
        user = await accounts.find_user(conn, args.username)
        if user is None:
            raise NotFound(f"no user {args.username}")
        await accounts.delete_user(conn, user.id)
        _print(f"deleted user {args.username}")

    _accounts_command(settings, work)


def cmd_project_add(settings: Settings, args: argparse.Namespace) -> None:
    from wharf_shared.accounts import check_project_name
    from wharf_shared.db import accounts, projects
    from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound

    try:
        check_project_name(args.name)
    except InvalidInput as exc:
        _fail(exc.message)

    async def work(conn: Any) -> None:
        owner = await accounts.find_user(conn, args.owner)
        if owner is None:
            raise NotFound(f"no user {args.owner} to own the project")
        if await projects.find_project(conn, args.name) is not None:
            raise Conflict(f"project {args.name} already exists")
        project = await projects.create_project(conn, args.name, owner.id, public=args.public)
        visibility = "public" if project.public else "private"
        _print(f"created {visibility} project {project.name} (id {project.id}), owner {owner.username}")

    _accounts_command(settings, work)


def cmd_project_list(settings: Settings, args: argparse.Namespace) -> None:
    import json

    from wharf_shared.db import projects

    async def work(conn: Any) -> None:
        found = await projects.list_all(conn)
        if args.json:
            rows = [
                {"project_id": p.id, "name": p.name, "public": p.public, "owner_name": owner}
                for p, owner in found
            ]
            _print(json.dumps(rows, indent=2))
            return
        for p, owner in found:
            _print(f"{p.id:>6}  {p.name:<32} {'public' if p.public else 'private':<8} {owner}")

    _accounts_command(settings, work)


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

    p = sub.add_parser(
        "init",
        help="create the data dir, token keys and secret key when missing, the first admin and `library`",
    )
    p.add_argument(
        "--accounts-only",
        action="store_true",
        help="only the first admin, the library project and the runtime settings: no files "
        "(split hosts, where keys are installed by the rollout)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--markdown", action="store_true", help="the README's settings table")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "drain", help="take this host's services out of the proxies' rotation before stopping them"
    )
    p.add_argument(
        "state",
        choices=["on", "off", "status"],
        help="on: readiness answers 503 (requests are still served); off: ready again; status",
    )
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser(
        "token", help="mint a registry token with this host's signing key (for admins and scripts)"
    )
    p.add_argument(
        "--scope", action="append", default=[], help="e.g. repository:library/app:pull,push (repeatable)"
    )
    p.add_argument("--subject", default="admin", help="the token's `sub` (default: admin)")
    p.add_argument("--lifetime", type=int, default=0, help="seconds (default: WHARF_TOKEN__LIFETIME_SECONDS)")
    p.set_defaults(func=cmd_token)

    user = sub.add_parser("user", help="add, list, change or delete users (scripts, first set-up)")
    users = user.add_subparsers(dest="user_command", required=True)
    p = users.add_parser("add", help="create a local user (password prompted, or --password-stdin)")
    p.add_argument("username")
    p.add_argument("--email", default=None)
    p.add_argument("--realname", default="")
    p.add_argument("--comment", default="")
    p.add_argument("--sysadmin", action="store_true", help="a system admin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_add)
    p = users.add_parser("passwd", help="set a user's password (prompted, or --password-stdin)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_passwd)
    p = users.add_parser("list", help="list users")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_user_list)
    p = users.add_parser("delete", help="delete a user (refused while they own projects)")
    p.add_argument("username")
    p.set_defaults(func=cmd_user_delete)

    project = sub.add_parser("project", help="add or list projects")
    project_commands = project.add_subparsers(dest="project_command", required=True)
    p = project_commands.add_parser("add", help="create a project")
    p.add_argument("name")
    p.add_argument("--public", action="store_true", help="anyone may pull (default: private)")
    p.add_argument("--owner", default="admin", help="the owning user, its project admin (default: admin)")
    p.set_defaults(func=cmd_project_add)
    p = project_commands.add_parser("list", help="list projects")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_project_list)

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
