"""OAuth2 refresh tokens: their own audience, refused by the registry as bearer tokens, refused
at the token endpoint when they are not ours, not current, or from before they had their own
audience, and always in our words, never the JWT library's."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import sqlalchemy as sa

from tests.service.token.conftest import ADMIN_PASSWORD, Suite
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.tokens import algorithm_for, key_id, load_private_key

SCOPE = "repository:library/app:pull"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"


async def refresh_token(suite: Suite) -> str:
    form = {
        "grant_type": "password",
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "scope": SCOPE,
        "access_type": "offline",
    }
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["refresh_token"])


async def redeem(suite: Suite, token: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "refresh_token", "refresh_token": token, "scope": SCOPE}
    resp = await suite.token.post("/service/token", data=form)
    return resp.status, await resp.json()


def assert_invalid_grant(answer: tuple[int, dict[str, Any]], message: str) -> None:
    status, body = answer
    assert status == 400, body
    assert body["error"] == "invalid_grant"
    assert body["error_description"] == message
    assert body["errors"][0]["message"] == message
    assert body["errors"][0]["detail"] == {}  # nothing of the library's reasons


async def test_refresh_tokens_have_their_own_audience(suite: Suite) -> None:
    token = await refresh_token(suite)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "wharf-registry:refresh"
    assert claims["typ"] == "wharf-refresh"
    status, body = await redeem(suite, token)
    assert status == 200, body
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["aud"] == "wharf-registry"


async def test_a_refresh_token_is_no_bearer_token_for_the_registry(suite: Suite) -> None:
    token = await refresh_token(suite)
    resp = await suite.registry.get("/v2/", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def signed(suite: Suite, **overrides: Any) -> str:
    """A refresh token as the token service's key would sign it, with some claims changed."""
    key = load_private_key(suite.settings.token_private_key_path)
    now = int(suite.clock())
    claims = {
        "iss": "wharf-token-issuer",
        "aud": "wharf-registry:refresh",
        "sub": "admin",
        "uid": 1,
        "typ": "wharf-refresh",
        "pwd": "0" * 32,
        "iat": now,
        "exp": now + 3600,
        "jti": "x",
        **overrides,
    }
    return jwt.encode(claims, key, algorithm=algorithm_for(key), headers={"kid": key_id(key.public_key())})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case",
    ["garbage", "tampered", "before-own-audience", "wrong-type", "registry-token", "expired"],
)
async def test_tokens_that_are_not_current_refresh_tokens(suite: Suite, case: str) -> None:
    genuine = await refresh_token(suite)
    if case == "garbage":
        token = "not-a-token"
    elif case == "tampered":
        head, payload, signature = genuine.split(".")
        token = f"{head}.{payload}.{signature[:-4]}AAAA"
    elif case == "before-own-audience":
        # As issued before refresh tokens had their own audience: the registry's.
        claims = jwt.decode(genuine, options={"verify_signature": False})
        token = signed(suite, aud="wharf-registry", uid=claims["uid"], pwd=claims["pwd"])
    elif case == "wrong-type":
        claims = jwt.decode(genuine, options={"verify_signature": False})
        token = signed(suite, typ="something-else", uid=claims["uid"], pwd=claims["pwd"])
    elif case == "registry-token":
        token = await suite.token_for(SCOPE, credentials=("admin", ADMIN_PASSWORD))
    else:
        suite.clock.advance(30 * 24 * 3600 + 60)
        token = genuine
    assert_invalid_grant(await redeem(suite, token), "the refresh token is not valid")


async def test_a_password_change_ends_refresh_tokens(suite: Suite) -> None:
    token = await refresh_token(suite)
    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await conn.execute(
                sa.update(t.user_account)
                .where(t.user_account.c.username == "admin")
                .values(password_hash=hash_password("new-password-1"))
            )
    finally:
        await db.close()
    assert_invalid_grant(await redeem(suite, token), "the refresh token is no longer valid: sign in again")
