"""`wharf user …` and `wharf project …` as scripts run them: the real CLI in a subprocess against
PostgreSQL and SQLite; passwords from stdin only, clear messages, exit codes 0 / 1 / 2."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, service_env
from wharf_shared.db import accounts
from wharf_shared.db.engine import Database
from wharf_shared.passwords import verify_password

WHARF = Path(sys.executable).parent / "wharf"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wharf(database_url: str, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = service_env({"WHARF_DATABASE_URL": database_url, "WHARF_DATA_DIR": str(tmp_path / "var")})
    return subprocess.run(
        [str(WHARF), *args], input=stdin, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def stored_hash(database_url: str, username: str) -> str | None:
    async def go() -> str | None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.read() as conn:
                user = await accounts.find_user(conn, username)
                return user.password_hash if user else None
        finally:
            await db.close()

    return asyncio.run(go())


def test_user_add_list_passwd_delete(database_url: str, tmp_path: Path) -> None:
    added = wharf(
        database_url,
        tmp_path,
        "user",
        "add",
        "dana",
        "--email",
        "dana@example.test",
        "--sysadmin",
        "--password-stdin",
        stdin="Dana-secret-1\n",
    )
    assert added.returncode == 0, added.stderr
    assert "created user dana" in added.stdout
    assert "Dana-secret-1" not in added.stdout + added.stderr
    assert verify_password(stored_hash(database_url, "dana"), "Dana-secret-1")

    listed = wharf(database_url, tmp_path, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(u["username"], u["sysadmin_flag"]) for u in json.loads(listed.stdout)] == [("dana", True)]

    again = wharf(database_url, tmp_path, "user", "add", "dana", "--password-stdin", stdin="Dana-secret-1\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr

    changed = wharf(
        database_url, tmp_path, "user", "passwd", "dana", "--password-stdin", stdin="Dana-secret-2\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert verify_password(stored_hash(database_url, "dana"), "Dana-secret-2")

    deleted = wharf(database_url, tmp_path, "user", "delete", "dana")
    assert deleted.returncode == 0, deleted.stderr
    assert stored_hash(database_url, "dana") is None
    gone = wharf(database_url, tmp_path, "user", "delete", "dana")
    assert (gone.returncode, "no user dana" in gone.stderr) == (1, True)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "erin", "--password-stdin"), "weak\n", "8 to 128 characters"),
        (("user", "add", "bad name", "--password-stdin"), "Erin-secret-1\n", "username"),
        (("user", "add", "erin", "--email", "nope", "--password-stdin"), "Erin-secret-1\n", "email"),
        (("user", "add", "erin", "--password-stdin"), "", "no password"),
        (("user", "add", "erin"), "", "--password-stdin"),  # no terminal: never a silent empty one
        (("project", "add", "Bad_Name"), "", "lower-case"),
    ],
    ids=["weak", "username", "email", "empty-stdin", "no-tty", "project-name"],
)
def test_unusable_values_are_usage_errors(
    database_url: str, tmp_path: Path, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = wharf(database_url, tmp_path, *args, stdin=stdin)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert stored_hash(database_url, "erin") is None


def test_password_is_never_an_argument(database_url: str, tmp_path: Path) -> None:
    result = wharf(database_url, tmp_path, "user", "add", "erin", "--password", "Erin-secret-1")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def test_project_add_and_list(database_url: str, tmp_path: Path) -> None:
    owner = wharf(database_url, tmp_path, "user", "add", "fay", "--password-stdin", stdin="Fay-secret-1\n")
    assert owner.returncode == 0, owner.stderr
    added = wharf(database_url, tmp_path, "project", "add", "team-a", "--public", "--owner", "fay")
    assert added.returncode == 0, added.stderr
    assert "created public project team-a" in added.stdout
    listed = wharf(database_url, tmp_path, "project", "list", "--json")
    assert [(p["name"], p["public"], p["owner_name"]) for p in json.loads(listed.stdout)] == [
        ("team-a", True, "fay")
    ]
    twice = wharf(database_url, tmp_path, "project", "add", "team-a", "--owner", "fay")
    assert (twice.returncode, "already exists" in twice.stderr) == (1, True)
    nobody = wharf(database_url, tmp_path, "project", "add", "team-b", "--owner", "ghost")
    assert (nobody.returncode, "no user ghost" in nobody.stderr) == (1, True)
    # A user who owns a project stays until the project is gone or handed over.
    kept = wharf(database_url, tmp_path, "user", "delete", "fay")
    assert kept.returncode == 1
    assert "owns projects (team-a)" in kept.stderr


def test_usage_errors_exit_2(database_url: str, tmp_path: Path) -> None:
    assert wharf(database_url, tmp_path, "user").returncode == 2
    assert wharf(database_url, tmp_path, "project", "add").returncode == 2


def test_init_accounts_only_writes_no_files(database_url: str, tmp_path: Path) -> None:
    """Split hosts get their keys from the rollout: `init --accounts-only` touches the database only."""
    env = service_env(
        {
            "WHARF_DATABASE_URL": database_url,
            "WHARF_DATA_DIR": str(tmp_path / "var"),
            "WHARF_ADMIN_PASSWORD": "Admin-secret-1",
        }
    )

    def init() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WHARF), "init", "--accounts-only"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = init()
    assert first.returncode == 0, first.stderr
    assert "created user admin with the password in WHARF_ADMIN_PASSWORD" in first.stdout
    assert "created public project library" in first.stdout
    assert not (tmp_path / "var").exists()
    admin_hash = stored_hash(database_url, "admin")
    assert admin_hash is not None
    assert verify_password(admin_hash, "Admin-secret-1")

    again = init()
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["kept", "user", "admin", "kept", "project", "library"]
    assert not (tmp_path / "var").exists()
