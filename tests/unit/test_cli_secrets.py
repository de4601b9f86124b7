"""The CLI secret backend fails closed (no secret, a password user, no key, a key that cannot
decrypt it), takes only the exact secret, and a new secret always changes the login's mark."""

from __future__ import annotations

from wharf_shared.auth.cli_secrets import CliSecretBackend, credential_mark, generate_secret
from wharf_shared.db.projects import Caller
from wharf_shared.passwords import fingerprint, meets_policy
from wharf_shared.secrets import SecretBox

BOX = SecretBox(b"the right key")
OTHER = SecretBox(b"another key")


def sso_user(secret: str, box: SecretBox = BOX) -> Caller:
    return Caller(7, "olivia", False, None, box.encrypt(secret))


async def test_only_the_exact_secret_signs_in() -> None:
    backend = CliSecretBackend("oidc_auth", lambda: BOX)
    user = sso_user("Right-secret-1")
    assert await backend.authenticate("olivia", "Right-secret-1", user) is user
    for wrong in ("right-secret-1", "Right-secret-1 ", "", "Right-secret-"):
        assert await backend.authenticate("olivia", wrong, user) is None


async def test_it_fails_closed() -> None:
    backend = CliSecretBackend("cas_auth", lambda: BOX)
    assert await backend.authenticate("nobody", "x", None) is None
    assert await backend.authenticate("olivia", "x", Caller(7, "olivia", False, None, None)) is None
    with_password = Caller(7, "olivia", False, "$argon2id$…", BOX.encrypt("Right-secret-1"))
    assert await backend.authenticate("olivia", "Right-secret-1", with_password) is None
    undecryptable = sso_user("Right-secret-1", OTHER)
    assert await backend.authenticate("olivia", "Right-secret-1", undecryptable) is None
    keyless = CliSecretBackend("cas_auth", lambda: None)
    assert await keyless.authenticate("olivia", "Right-secret-1", sso_user("Right-secret-1")) is None


def test_the_mark_follows_the_secret_or_the_password() -> None:
    first, again = sso_user("Same-secret-1"), sso_user("Same-secret-1")
    assert credential_mark(first) != credential_mark(again)  # a new secret, even the same text
    assert credential_mark(Caller(1, "admin", True, "hash", None)) == fingerprint("hash")
    assert credential_mark(Caller(2, "ldap-user", False, None, None)) == fingerprint(None)


def test_generated_secrets_meet_the_rule() -> None:
    made = {generate_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(len(s) == 32 and meets_policy(s) for s in made)
