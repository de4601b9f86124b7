"""The platform an index gives each manifest it lists, recorded with the index's rows on each
database (the ui reads it from there, never from storage): OCI indexes and Docker manifest lists,
values at their columns' limits, and odd ones that the push survives with NULL stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.support.oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, V2, descriptor, digest_of
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

NAME = "platforms/app"
UNKNOWN = (None, None, None, None)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=1)
    try:
        yield database
    finally:
        await database.close()


async def push_index(v2: V2, platforms: list[Any], *, media_type: str = OCI_INDEX) -> tuple[str, list[str]]:
    """An index over one new image per entry of `platforms` (the entry's `platform`; None: none);
    returns (index digest, the images' digests in order)."""
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    entries, digests = [], []
    for i, platform in enumerate(platforms):
        digest, body = await v2.push_image(NAME, None, seed=f"{media_type}-{i}", media_type=child_type)
        entry = descriptor(body, child_type)
        if platform is not None:
            entry["platform"] = platform
        entries.append(entry)
        digests.append(digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
    resp = await v2.push_manifest(NAME, "multi", index, media_type)
    assert resp.status == 201, await resp.text()
    return digest_of(index), digests


async def stored(db: Database, index: str) -> dict[str, tuple[str | None, ...]]:
    """(os, architecture, variant, os_version) of each child of `index`, by the child's digest."""
    c, child, parent = t.manifest_child.c, t.manifest.alias("child"), t.manifest.alias("parent")
    query = (
        select(child.c.digest, c.os, c.architecture, c.variant, c.os_version)
        .select_from(
            t.manifest_child.join(child, child.c.id == c.child_id).join(parent, parent.c.id == c.parent_id)
        )
        .where(parent.c.digest == index)
    )
    async with db.read() as conn:
        return {row.digest: tuple(row)[1:] for row in await conn.execute(query)}


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
async def test_an_index_records_its_childrens_platforms(v2: V2, db: Database, media_type: str) -> None:
    index, children = await push_index(
        v2,
        [
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"},
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2340", "os.features": ["x"]},
            # The longest values the columns hold.
            {"os": "o" * 64, "architecture": "a" * 64, "variant": "v" * 32, "os.version": "9" * 128},
            None,  # the spec makes `platform` optional
        ],
        media_type=media_type,
    )
    assert await stored(db, index) == {
        children[0]: ("linux", "amd64", None, None),
        children[1]: ("linux", "arm64", "v8", None),
        children[2]: ("windows", "amd64", None, "10.0.20348.2340"),
        children[3]: ("o" * 64, "a" * 64, "v" * 32, "9" * 128),
        children[4]: UNKNOWN,
    }


async def test_odd_platforms_are_stored_as_null_and_the_push_succeeds(v2: V2, db: Database) -> None:
    index, children = await push_index(
        v2,
        [
            {"os": "o" * 65, "architecture": "amd64"},  # too long
            {"os": "linux", "architecture": 64},  # not a string
            {"os": "linux"},  # no architecture
            "linux/amd64",  # not an object
            {"os": "lin\u0000ux", "architecture": "amd64"},  # a NUL PostgreSQL would refuse
            {"os": "línux", "architecture": "amd64"},  # not ASCII
            # Usable os and architecture, odd optional fields: those alone are dropped.
            {"os": "linux", "architecture": "arm", "variant": "v" * 33, "os.version": ["10"]},
            {"os": "linux", "architecture": "arm", "variant": {"v": 7}, "os.version": "1" * 129},
        ],
    )
    assert await stored(db, index) == {
        **dict.fromkeys(children[:6], UNKNOWN),
        children[6]: ("linux", "arm", None, None),
        children[7]: ("linux", "arm", None, None),
    }
    resp = await v2.request("GET", f"/v2/{NAME}/manifests/multi", headers={"Accept": OCI_INDEX})
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == index


async def test_a_manifest_listed_twice_keeps_the_first_platform_given(v2: V2, db: Database) -> None:
    digest, body = await v2.push_image(NAME, None, seed="twice")
    entries = [
        descriptor(body, OCI_MANIFEST),  # no platform first: the next one's is kept
        descriptor(body, OCI_MANIFEST, platform={"os": "linux", "architecture": "arm", "variant": "v6"}),
        descriptor(body, OCI_MANIFEST, platform={"os": "linux", "architecture": "arm", "variant": "v7"}),
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    resp = await v2.push_manifest(NAME, "twice", index, OCI_INDEX)
    assert resp.status == 201, await resp.text()
    assert await stored(db, digest_of(index)) == {digest: ("linux", "arm", "v6", None)}


async def test_pushing_an_index_again_fills_platforms_recorded_without(v2: V2, db: Database) -> None:
    # An index recorded before 0008 has NULL platforms; the same push again fills them in.
    platforms = [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    index, children = await push_index(v2, platforms)
    async with db.transaction() as conn:
        await conn.execute(
            update(t.manifest_child).values(os=None, architecture=None, variant=None, os_version=None)
        )
    assert set((await stored(db, index)).values()) == {UNKNOWN}
    index_again, _ = await push_index(v2, platforms)
    assert index_again == index
    assert await stored(db, index) == {
        children[0]: ("linux", "amd64", None, None),
        children[1]: ("linux", "arm64", "v8", None),
    }
