"""`wharf init`: the files a fresh installation needs, made once and never overwritten."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from wharf_shared.config import Settings
from wharf_shared.tokens import (
    generate_private_key,
    key_id,
    load_private_key,
    load_public_keys,
    private_key_pem,
    public_key_pem,
)


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def ensure_files(settings: Settings) -> InitReport:
    """Create the data dir, token signing key, trusted key bundle and secret key when missing."""
    report = InitReport()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    key_path = settings.token_private_key_path
    if key_path.exists():
        private_key = load_private_key(key_path)
        report.kept.append(str(key_path))
    else:
        private_key = generate_private_key()
        _write_private(key_path, private_key_pem(private_key))
        report.created.append(str(key_path))

    # The registry trusts the bundle; make sure it holds the signing key's public half.
    public_key = private_key.public_key()
    bundle = settings.token_keys_path
    existing = bundle.read_bytes() if bundle.exists() else b""
    if key_id(public_key) not in {key_id(k) for k in load_public_keys(existing)}:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        tmp = bundle.with_name(bundle.name + ".tmp")
        tmp.write_bytes(existing + public_key_pem(public_key))
        os.replace(tmp, bundle)
        report.created.append(str(bundle))
    else:
        report.kept.append(str(bundle))

    secret_path = settings.secret_key_path
    if secret_path.exists():
        report.kept.append(str(secret_path))
    else:
        _write_private(secret_path, secrets.token_urlsafe(32).encode())
        report.created.append(str(secret_path))
    return report


@dataclass
class AccountsReport:
    admin_created: bool = False
    admin_password: str | None = None  # set only when generated here: shown once, stored nowhere
    library_created: bool = False


async def ensure_accounts(settings: Settings) -> AccountsReport:
    """The first admin, the public `library` project, and the runtime settings' first values."""
    from wharf_shared import runtime
    from wharf_shared.db import accounts, projects
    from wharf_shared.db.engine import Database
    from wharf_shared.passwords import generate_password, hash_password

    report = AccountsReport()
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await runtime.seed(conn, runtime.defaults(settings))
            admin = await accounts.find_user(conn, "admin")
            if admin is None:
                given = settings.admin_password.get_secret_value() if settings.admin_password else None
                password = given or generate_password()
                admin = await accounts.create_user(
                    conn, "admin", hash_password(password), realname="system admin", sysadmin=True
                )
                report.admin_created = True
                report.admin_password = None if given else password
            if await projects.find_project(conn, "library") is None:
                await projects.create_project(conn, "library", admin.id, public=True)
                report.library_created = True
    finally:
        await db.close()
    return report
