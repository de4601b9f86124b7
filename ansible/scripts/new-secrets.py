#!/usr/bin/env python3
"""Write a site's secrets as an Ansible vault file: a fresh token signing key (EC P-256) and its
public half, the secret key, the metrics token, the first admin's password, the password of
Wharf's own Redis (roles/redis), and the database URL you give (its password included).

    python3 scripts/new-secrets.py --database-url postgresql://wharf:PW@db:5432/wharf \\
        --vault-password-file ~/.wharf-vault-pass inventory/mysite/group_vars/all/vault.yml

Runs with the Python that runs Ansible (ansible-core brings `cryptography`); encrypts with
`ansible-vault` from the same place. Refuses to overwrite an existing file unless --force.
To rotate the token key later, add the new public key to vault_wharf_token_public_keys, roll,
then switch vault_wharf_token_private_key, roll, and drop the old public key.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def literal_block(text: str, indent: str = "  ") -> str:
    return "|\n" + "".join(f"{indent}{line}\n" for line in text.strip().splitlines())


def secrets_yaml(database_url: str, admin_password: str | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    password = admin_password or secrets.token_urlsafe(18)
    quoted = database_url.replace("'", "''")
    return (
        "# Wharf's secrets (ansible/scripts/new-secrets.py). Keep this file encrypted.\n"
        f"vault_wharf_database_url: '{quoted}'\n"
        f"vault_wharf_token_private_key: {literal_block(private_pem)}"
        f"vault_wharf_token_public_keys: {literal_block(public_pem)}"
        f"vault_wharf_secret_key: {secrets.token_urlsafe(32)}\n"
        f"vault_wharf_metrics_token: {secrets.token_urlsafe(32)}\n"
        f"vault_wharf_admin_password: '{password}'\n"
        # hex: it goes into redis:// URLs and redis.conf as it is
        f"vault_wharf_redis_password: {secrets.token_hex(24)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="vault file to write (group_vars/all/vault.yml)")
    parser.add_argument("--database-url", required=True, help="postgresql://user:password@host:5432/db")
    parser.add_argument("--admin-password", help="the first admin's password (default: generated)")
    parser.add_argument("--vault-password-file", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args()
    if args.output.exists() and not args.force:
        sys.exit(f"new-secrets: {args.output} exists (--force replaces it, and every key in it)")
    vault = shutil.which("ansible-vault", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if vault is None:
        sys.exit("new-secrets: ansible-vault not found (pip install ansible-core)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.output.parent, prefix=".vault-", delete=False) as tmp:
        tmp.write(secrets_yaml(args.database_url, args.admin_password))
    try:
        subprocess.run(
            [vault, "encrypt", "--vault-password-file", str(args.vault_password_file), tmp.name],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.replace(tmp.name, args.output)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    print(f"wrote {args.output} (encrypted)")  # noqa: T201


if __name__ == "__main__":
    main()
