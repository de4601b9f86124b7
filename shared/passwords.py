"""Password hashing: argon2id (memory-hard), with a dummy check for unknown users so that a
wrong username costs as much time as a wrong password."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106's second recommended option (64 MiB, t=3, p=4) is the library default; 19 MiB / t=2
# is OWASP's minimum and keeps a token burst from exhausting memory on small hosts.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; spends the same time when there is nothing to match."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def fingerprint(password_hash: str | None) -> str:
    """A short digest of a stored hash: what remembered logins and refresh tokens are bound to, so
    that a changed password (or a deleted user) voids them."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]


def generate_password() -> str:
    return secrets.token_urlsafe(18)


# A message, not a password (S105 reads the name).
PASSWORD_RULE = "the password must be 8 to 128 characters long with at least 1 uppercase letter, 1 lowercase letter and 1 number"  # noqa: E501, S105


def meets_policy(password: str) -> bool:
    """Harbor's rule for local passwords: 8-128 characters, an upper, a lower and a digit."""
    return (
        8 <= len(password) <= 128
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(c.isdigit() for c in password)
    )
