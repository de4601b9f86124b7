"""Make sure PostgreSQL has Wharf's login role (with this password) and its database (owned by it).

Run as root on the database host by roles/postgres (python3 -c, this file's text); reads
{"user", "password", "database", "port"} as JSON on stdin (the password never appears in an
argument list), runs psql as the postgres OS user over the local socket, and prints
{"changed": bool, "actions": [...]}. The password is sent as a SCRAM-SHA-256 verifier made here,
and an existing role's verifier is checked against it first: a second run changes nothing.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys

ITERATIONS = 4096


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_verifier(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(verifier: str, password: str) -> bool:
    try:
        method, rest = verifier.split("$", 1)
        params, _keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        return method == "SCRAM-SHA-256" and hmac.compare_digest(
            scram_verifier(password, base64.b64decode(salt), int(iterations)), verifier
        )
    except ValueError:
        return False


def literal(value: str) -> str:
    """A string literal (standard_conforming_strings: only quotes are special)."""
    return "'" + value.replace("'", "''") + "'"


def ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def psql(port: int, sql: str) -> str:
    result = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-p",
            str(port),
            "-d",
            "postgres",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    if result.returncode != 0:
        sys.exit(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def main() -> None:
    want = json.load(sys.stdin)
    user, password, database, port = want["user"], want["password"], want["database"], want["port"]
    if not (user and password and database):
        sys.exit("the database URL needs a user, a password and a database name")
    actions = []
    # every value below goes through literal() or ident()
    row = psql(
        port,
        f"SELECT rolcanlogin, coalesce(rolpassword, '') FROM pg_authid WHERE rolname = {literal(user)};",  # noqa: S608
    )
    verifier = scram_verifier(password, os.urandom(16))
    if not row:
        psql(port, f"CREATE ROLE {ident(user)} LOGIN PASSWORD {literal(verifier)};")
        actions.append(f"created role {user}")
    else:
        can_login, current = row.split("|", 1)
        if can_login != "t" or not verifier_matches(current, password):
            psql(port, f"ALTER ROLE {ident(user)} LOGIN PASSWORD {literal(verifier)};")
            actions.append(f"set the password of role {user}")
    owner = psql(
        port,
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {literal(database)};",  # noqa: S608
    )
    if not owner:
        psql(
            port,
            f"CREATE DATABASE {ident(database)} OWNER {ident(user)} ENCODING 'UTF8' TEMPLATE template0;",
        )
        actions.append(f"created database {database}")
    elif owner != user:
        psql(port, f"ALTER DATABASE {ident(database)} OWNER TO {ident(user)};")
        actions.append(f"gave database {database} to {user}")
    print(json.dumps({"changed": bool(actions), "actions": actions}))  # noqa: T201 - the result, for the task


main()
