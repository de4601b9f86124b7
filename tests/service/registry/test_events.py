"""Push, pull and delete are appended to the event stream, each with its own id."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.support.grants import allow_push
from tests.support.oci import V2
from wharf_shared.config import Settings
from wharf_shared.events import decode
from wharf_shared.tokens import Access, TokenIssuer


async def _events(settings: Settings, want: int, wait_seconds: float = 3.0) -> list[dict[str, Any]]:
    redis = Redis.from_url(settings.redis_url)  # counts events, not stream entries
    try:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            entries = await redis.xrange(settings.events_stream)
            if (
                sum(len(decode(fields)) for _id, fields in entries) >= want
                or asyncio.get_running_loop().time() > deadline
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    out = []
    for _id, fields in entries:
        out.extend(decode(fields))
    return out


async def test_push_pull_delete_events(v2: V2, settings: Settings) -> None:
    digest, _ = await v2.push_image("library/app", "v1")
    resp = await v2.request("GET", "/v2/library/app/manifests/v1")
    assert resp.status == 200
    resp = await v2.request("HEAD", "/v2/library/app/manifests/v1")  # a HEAD is not a pull
    assert resp.status == 200
    resp = await v2.request("DELETE", "/v2/library/app/manifests/v1")
    assert resp.status == 202

    events = await _events(settings, 3)
    kinds = [(e["type"], e["data"].get("kind")) for e in events]
    assert ("push", None) in kinds
    assert ("pull", None) in kinds
    assert ("delete", "tag") in kinds
    assert len(events) == 3
    assert len({e["id"] for e in events}) == 3
    push = next(e for e in events if e["type"] == "push")
    assert push["data"] == {
        "repository": "library/app",
        "digest": digest,
        "tag": "v1",
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": push["data"]["size"],
        "operator": "",  # no auth: anonymous
    }
    assert push["request_id"]
    pull = next(e for e in events if e["type"] == "pull")
    assert pull["data"]["digest"] == digest
    assert pull["data"]["tag"] == "v1"


async def test_pulls_are_appended_in_batches(v2: V2, settings: Settings) -> None:
    await v2.push_image("library/app", "v1")
    for _ in range(30):
        resp = await v2.request("GET", "/v2/library/app/manifests/v1")
        assert resp.status == 200
    events = await _events(settings, 31)
    pulls = [e for e in events if e["type"] == "pull"]
    assert len(pulls) == 30
    assert len({e["id"] for e in pulls}) == 30
    redis = Redis.from_url(settings.redis_url)
    try:
        entries = await redis.xrange(settings.events_stream)
    finally:
        await redis.aclose()
    assert len(entries) < 31  # one entry for the push, the pulls shared a few


async def test_events_name_the_tokens_subject_as_operator(
    token_client: TestClient,  # type: ignore[type-arg]
    token_settings: Settings,
    issuer: TokenIssuer,
    database_url: str,
) -> None:
    allow_push(database_url, "alice", ["library/app"])
    token, _ = issuer.issue("alice", [Access("repository", "library/app", frozenset({"pull", "push"}))], 300)
    await V2(token_client, {"Authorization": f"Bearer {token}"}).push_image("library/app", "v1")
    reader, _ = issuer.issue("bob", [Access("repository", "library/app", frozenset({"pull"}))], 300)
    pulled = await V2(token_client, {"Authorization": f"Bearer {reader}"}).request(
        "GET", "/v2/library/app/manifests/v1"
    )
    assert pulled.status == 200
    deleter, _ = issuer.issue("carol", [Access("repository", "library/app", frozenset({"delete"}))], 300)
    deleted = await V2(token_client, {"Authorization": f"Bearer {deleter}"}).request(
        "DELETE", "/v2/library/app/manifests/v1"
    )
    assert deleted.status == 202
    events = await _events(token_settings, 3)
    assert sorted((e["type"], e["data"]["operator"]) for e in events) == [
        ("delete", "carol"),
        ("pull", "bob"),
        ("push", "alice"),
    ]
