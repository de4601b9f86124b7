"""A push that outlives its token: the registry honours, for the rest of an upload, a token that
was valid when the upload started; nothing else accepts it once expired."""

from __future__ import annotations

import asyncio
import hashlib
import time

from tests.service.token.conftest import Suite
from tests.support.oci import V2, digest_of
from wharf_shared.tokens import LEEWAY_SECONDS, Access
from wharf_token.keys import ISSUER

REPO = "library/big"


def token_expiring_in(
    suite: Suite, seconds: float, actions: frozenset[str] = frozenset({"pull", "push"})
) -> str:
    """A token from the token service's own issuer whose validity (leeway included) ends soon."""
    lifetime = 1800
    issued = time.time() - lifetime - LEEWAY_SECONDS + seconds
    token, _ = suite.token.app[ISSUER].issue(
        "admin", [Access("repository", REPO, actions)], lifetime, now=issued
    )
    return token


async def test_upload_continues_after_its_token_expires(suite: Suite) -> None:
    chunks = [hashlib.sha256(bytes([i])).digest() * 4096 for i in range(3)]
    data = b"".join(chunks)
    token = token_expiring_in(suite, 3)
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

    await asyncio.sleep(4)  # the token has now expired, leeway included

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
