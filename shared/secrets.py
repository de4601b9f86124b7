"""Secrets at rest: replication registries' passwords, encrypted with a key derived from the secret
key (`WHARF_SECRET_KEY` or its file), and the job service's own credential for the token service.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`): a stored secret is unreadable and
tamper-evident without the key. The Fernet key and the job service's password are derived from the
secret key with HMAC under distinct labels, so neither reveals the other or the key itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from wharf_shared.rbac import JOBSERVICE

# The token service's account for the job service: a username no user can take (account rules refuse
# `$`; Basic auth carries it, unlike `:`), with a password derived from the secret key every host shares.
JOBSERVICE_USERNAME = JOBSERVICE.username


class SecretError(Exception):
    """A stored secret that this key cannot decrypt (the key changed, or the value was altered)."""


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the secret key is empty")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(key, b"wharf credentials v1")))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretError("a stored secret cannot be decrypted with this secret key") from exc


def jobservice_password(key: bytes) -> str:
    """The job service's password at the token service, the same on every host with this key."""
    return (
        base64.urlsafe_b64encode(_derive(key, b"wharf jobservice token login v1")).decode("ascii").rstrip("=")
    )


def is_jobservice_password(key: bytes, password: str) -> bool:
    return hmac.compare_digest(jobservice_password(key).encode(), password.encode())
