"""A push that outlives its token: the registry honours, for a bounded while after its expiry,
a token that was valid when the upload started, for that upload only; and whoever completes a
push must still hold push on the project then, whatever the token says.

The registry's clock is the test's: time passes by `clock.advance`, never by sleeping.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, suite_settings
from tests.support.oci import V2, digest_of, error_code, image_manifest
from wharf_registry.app import create_app as create_registry
from wharf_shared import rbac
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.setup import ensure_accounts
from wharf_shared.tokens import LEEWAY_SECONDS, Access
from wharf_token.app import create_app as create_token
from wharf_token.keys import ISSUER

REPO = "library/big"
VALID = 30  # what is left of a token when the test starts using it: ample for a slow machine


class Clock:
    """Wall-clock time, moved forward on demand (the registry's; the token service issues on
    real time here, so that its tokens start valid)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return suite_settings(tmp_path, database_url, redis_url)


@pytest.fixture
async def suite(aiohttp_client: Any, settings: Settings, clock: Clock) -> Suite:
    """The token service and a registry whose token checks run on `clock`."""
    await ensure_accounts(settings)
    token = await aiohttp_client(create_token(settings))
    registry = await aiohttp_client(create_registry(settings, clock=clock))
    return Suite(settings, token, registry, clock)  # type: ignore[arg-type]


def token_expiring_in(
    suite: Suite, seconds: float, actions: frozenset[str] = frozenset({"pull", "push"}), lifetime: int = 1800
) -> str:
    """A token from the token service's own issuer whose validity (leeway included) ends soon."""
    issued = time.time() - lifetime - LEEWAY_SECONDS + seconds
    token, _ = suite.token.app[ISSUER].issue(
        "admin", [Access("repository", REPO, actions)], lifetime, now=issued
    )
    return token


async def test_upload_continues_after_its_token_expires(suite: Suite, clock: Clock) -> None:
    chunks = [hashlib.sha256(bytes([i])).digest() * 4096 for i in range(3)]
    data = b"".join(chunks)
    token = token_expiring_in(suite, VALID)
    v2 = V2(suite.registry, {"Authorization": f"Bearer {token}"})
    resp = await v2.request("POST", f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    offset = 0
    resp = await v2.request(
        "PATCH",
        location,
        data=chunks[0],
        headers={"Content-Range": f"0-{len(chunks[0]) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 202
    offset += len(chunks[0])

    clock.advance(VALID + 1)  # the token has now expired, leeway included

    # Expired for everything that does not continue this upload...
    resp = await v2.request("POST", f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    resp = await v2.request("GET", f"/v2/{REPO}/tags/list")
    assert resp.status == 401
    # ...but the upload it began goes on to the end.
    resp = await v2.request(
        "PATCH",
        location,
        data=chunks[1],
        headers={
            "Content-Range": f"{offset}-{offset + len(chunks[1]) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert resp.status == 202, await resp.text()
    offset += len(chunks[1])
    resp = await v2.request("GET", location)
    assert resp.status == 204
    assert resp.headers["Range"] == f"0-{offset - 1}"
    digest = digest_of(data)
    resp = await v2.request(
        "PUT",
        f"{location}?digest={digest}",
        data=chunks[2],
        headers={"Content-Range": f"{offset}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest

    fresh = V2(suite.registry, {"Authorization": f"Bearer {token_expiring_in(suite, 600)}"})
    resp = await fresh.request("GET", f"/v2/{REPO}/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == data


async def test_a_token_expired_before_the_upload_began_cannot_take_it_over(suite: Suite) -> None:
    stale = token_expiring_in(suite, -5)
    fresh = V2(suite.registry, {"Authorization": f"Bearer {token_expiring_in(suite, 600)}"})
    resp = await fresh.request("POST", f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    old = V2(suite.registry, {"Authorization": f"Bearer {stale}"})
    for method in ("GET", "PATCH", "DELETE"):
        resp = await old.request(method, location, data=b"x" if method == "PATCH" else None)
        assert resp.status == 401, (method, resp.status)
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    resp = await fresh.request("GET", location)
    assert resp.status == 204


async def test_the_grace_gives_no_action_the_token_lacked(suite: Suite) -> None:
    pull_only = token_expiring_in(suite, 3, frozenset({"pull"}))
    pusher = V2(suite.registry, {"Authorization": f"Bearer {token_expiring_in(suite, 600)}"})
    resp = await pusher.request("POST", f"/v2/{REPO}/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await V2(suite.registry, {"Authorization": f"Bearer {pull_only}"}).request(
        "PATCH", location, data=b"abc", headers={"Content-Type": "application/octet-stream"}
    )
    assert resp.status == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


# -- how long the grace lasts ----------------------------------------------------------------------


async def patch_after(suite: Suite, clock: Clock, lifetime: int, seconds: float) -> int:
    """Start an upload with a token of `lifetime` seconds that expires (leeway included) VALID
    seconds from now, then PATCH it `seconds` after that; the PATCH's status."""
    clock.skew = 0.0
    token = token_expiring_in(suite, VALID, lifetime=lifetime)
    v2 = V2(suite.registry, {"Authorization": f"Bearer {token}"})
    resp = await v2.request("POST", f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    clock.advance(VALID + seconds)
    resp = await v2.request("PATCH", resp.headers["Location"], data=b"chunk")
    if resp.status == 401:
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    return resp.status


@pytest.mark.parametrize(
    ("lifetime", "within", "past"),
    [(60, 50, 70), (7200, 3590, 3610)],
    ids=["the-token-lifetime", "at-most-an-hour"],
)
async def test_the_grace_is_the_token_lifetime_at_most_an_hour(
    suite: Suite, clock: Clock, lifetime: int, within: float, past: float
) -> None:
    assert await patch_after(suite, clock, lifetime, within) == 202
    assert await patch_after(suite, clock, lifetime, past) == 401


async def test_the_grace_is_bounded_by_its_setting(
    aiohttp_client: Any, settings: Settings, clock: Clock
) -> None:
    bounded = settings.model_copy(
        update={"registry": settings.registry.model_copy(update={"upload_token_grace_seconds": 10})}
    )
    await ensure_accounts(bounded)
    suite = Suite(
        bounded,
        await aiohttp_client(create_token(bounded)),
        await aiohttp_client(create_registry(bounded, clock=clock)),
        clock,  # type: ignore[arg-type]
    )
    assert await patch_after(suite, clock, 1800, 5) == 202
    assert await patch_after(suite, clock, 1800, 15) == 401


# -- a member removed while pushing ----------------------------------------------------------------

DEV = ("dev", "dev-secret-1")
TEAM_REPO = "team/app"


async def developer_token(suite: Suite) -> tuple[V2, int]:
    """A developer of the private project `team`, with a token from the token service."""
    user_id = await suite.add_user(*DEV)
    await suite.add_project("team", public=False, members={user_id: rbac.Role.DEVELOPER})
    token = await suite.token_for(f"repository:{TEAM_REPO}:pull,push", credentials=DEV)
    return V2(suite.registry, {"Authorization": f"Bearer {token}"}), user_id


async def remove_member(suite: Suite, user_id: int) -> None:
    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await conn.execute(delete(t.project_member).where(t.project_member.c.user_id == user_id))
    finally:
        await db.close()


async def admin(suite: Suite) -> V2:
    token = await suite.token_for(f"repository:{TEAM_REPO}:pull", credentials=("admin", ADMIN_PASSWORD))
    return V2(suite.registry, {"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("expired", [False, True], ids=["token-still-valid", "token-expired"])
async def test_a_member_removed_mid_upload_cannot_complete_it(
    suite: Suite, clock: Clock, expired: bool
) -> None:
    v2, user_id = await developer_token(suite)
    first, last = b"first chunk " * 100, b"last chunk " * 100
    resp = await v2.request("POST", f"/v2/{TEAM_REPO}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    resp = await v2.request("PATCH", location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert resp.status == 202, await resp.text()

    await remove_member(suite, user_id)
    if expired:
        clock.advance(1800 + LEEWAY_SECONDS + 60)  # past the token's expiry, within the grace
    resp = await v2.request(
        "PATCH", location, data=last, headers={"Content-Range": f"{len(first)}-{len(first + last) - 1}"}
    )
    assert resp.status == 202, await resp.text()  # nothing visible yet: no query
    resp = await v2.request("PUT", location, params={"digest": digest_of(first + last)})
    assert (resp.status, await error_code(resp)) == (403, "DENIED")
    clock.skew = 0.0
    resp = await (await admin(suite)).request("HEAD", f"/v2/{TEAM_REPO}/blobs/{digest_of(first + last)}")
    assert resp.status == 404


async def test_a_member_removed_cannot_put_a_manifest_with_a_valid_token(suite: Suite) -> None:
    v2, user_id = await developer_token(suite)
    await v2.push_image(TEAM_REPO, "v1")  # a member pushes whole images
    config, layer = b'{"architecture":"arm64","os":"linux"}', b"another layer"
    for blob in (config, layer):
        assert await v2.push_blob(TEAM_REPO, blob) == digest_of(blob)

    await remove_member(suite, user_id)
    manifest = image_manifest(config, [layer])
    resp = await v2.push_manifest(TEAM_REPO, "v2", manifest)
    assert (resp.status, await error_code(resp)) == (403, "DENIED")
    viewer = await admin(suite)
    assert (await viewer.request("GET", f"/v2/{TEAM_REPO}/manifests/v2")).status == 404
    assert (await viewer.request("GET", f"/v2/{TEAM_REPO}/manifests/v1")).status == 200
