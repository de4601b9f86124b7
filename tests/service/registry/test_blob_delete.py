"""`DELETE /v2/<name>/blobs/<digest>` refuses a blob a manifest in the repository references.

An image whose config or layer was unlinked no longer pulls, so the registry answers 409 DENIED
(saying why) while any manifest in the repository, tagged or not, references the blob; an
unreferenced blob deletes as before (202). The rule holds in the database (a foreign key from
manifest references to the repository's blob links), so a manifest push racing the delete
either commits first (the delete is refused) or fails MANIFEST_BLOB_UNKNOWN (never a dangling
reference).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from tests.support.oci import OCI_INDEX, OCI_MANIFEST, V2, digest_of, image_manifest, index_manifest
from wharf_registry import metadata
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.keys import DB

NAME = "library/app"


async def _error(resp: Any) -> dict[str, Any]:
    body = await resp.json(content_type=None)
    return dict(body["errors"][0])


async def _pulls(v2: V2, reference: str, blobs: Iterable[bytes]) -> None:
    resp = await v2.request("GET", f"/v2/{NAME}/manifests/{reference}")
    assert resp.status == 200
    for data in blobs:
        resp = await v2.request("GET", f"/v2/{NAME}/blobs/{digest_of(data)}")
        assert resp.status == 200
        assert await resp.read() == data


async def test_referenced_blob_is_refused_until_its_manifests_are_gone(v2: V2) -> None:
    config, layer = b'{"os":"linux"}', b"layer bytes" * 100
    await v2.push_blob(NAME, config)
    await v2.push_blob(NAME, layer)
    tagged = image_manifest(config, [layer])
    untagged = image_manifest(config, [layer], annotations={"second": "image"})
    assert (await v2.push_manifest(NAME, "v1", tagged)).status == 201
    assert (await v2.push_manifest(NAME, digest_of(untagged), untagged)).status == 201
    for data in (config, layer):
        resp = await v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(data)}")
        assert resp.status == 409
        error = await _error(resp)
        assert error["code"] == "DENIED"
        assert "referenced by a manifest" in error["message"]
        assert error["detail"] == {"digest": digest_of(data), "manifests": 2}
    await _pulls(v2, "v1", (config, layer))
    # The tagged image goes; the untagged one still holds both blobs.
    assert (await v2.request("DELETE", f"/v2/{NAME}/manifests/{digest_of(tagged)}")).status == 202
    resp = await v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(layer)}")
    assert resp.status == 409
    assert (await _error(resp))["detail"]["manifests"] == 1
    await _pulls(v2, digest_of(untagged), (config, layer))
    assert (await v2.request("DELETE", f"/v2/{NAME}/manifests/{digest_of(untagged)}")).status == 202
    for data in (config, layer):
        assert (await v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(data)}")).status == 202
        assert (await v2.request("GET", f"/v2/{NAME}/blobs/{digest_of(data)}")).status == 404


async def test_unreferenced_blobs_delete_as_before(v2: V2) -> None:
    config, layer, loose = b'{"os":"linux"}', b"layer", b"referenced by nothing"
    for data in (config, layer, loose):
        await v2.push_blob(NAME, data)
    assert (await v2.push_manifest(NAME, "v1", image_manifest(config, [layer]))).status == 201
    resp = await v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(loose)}")
    assert resp.status == 202
    assert resp.headers["Docker-Content-Digest"] == digest_of(loose)
    # A manifest elsewhere referencing the same bytes does not hold this repository's link.
    await v2.push_blob("library/other", config)
    await v2.push_blob("library/other", layer)
    assert (await v2.push_manifest("library/other", "v1", image_manifest(config, [layer]))).status == 201
    await v2.push_blob("library/third", layer)
    assert (await v2.request("DELETE", f"/v2/library/third/blobs/{digest_of(layer)}")).status == 202
    # An index references manifests, not blobs: deleting a child's blobs is still refused by the
    # child itself, and an index alone holds no blob.
    child = image_manifest(config, [layer])
    index = index_manifest([(child, OCI_MANIFEST)])
    assert (await v2.push_manifest(NAME, "multi", index, OCI_INDEX)).status == 201
    assert (await v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(layer)}")).status == 409


async def test_the_database_refuses_a_dangling_reference(client: TestClient) -> None:  # type: ignore[type-arg]
    # Whatever the code above it does: no manifest reference without the repository's link, and
    # no unlink under a reference, on every backend.
    v2 = V2(client)
    config, layer = b'{"os":"linux"}', b"layer"
    await v2.push_blob(NAME, config)
    await v2.push_blob(NAME, layer)
    body = image_manifest(config, [layer])
    assert (await v2.push_manifest(NAME, "v1", body)).status == 201
    db: Database = client.server.app[DB]
    async with db.read() as conn:
        repo = await metadata.get_repository(conn, NAME)
        manifest = await metadata.find_manifest(conn, NAME, "v1", by_digest=False)
        layer_id = (
            await conn.execute(sa.select(t.blob.c.id).where(t.blob.c.digest == digest_of(layer)))
        ).scalar_one()
    assert repo is not None
    assert manifest is not None
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(
                sa.delete(t.repository_blob).where(
                    t.repository_blob.c.repository_id == repo.id, t.repository_blob.c.blob_id == layer_id
                )
            )
    other = await _other_repository(db)
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(
                sa.insert(t.manifest_blob).values(
                    manifest_id=manifest.id, repository_id=other, blob_id=layer_id
                )
            )


async def _other_repository(db: Database) -> int:
    async with db.transaction() as conn:
        repo = await metadata.ensure_repository(conn, "library/empty")
    return repo.id


async def test_manifest_push_racing_a_blob_delete(
    client: TestClient,  # type: ignore[type-arg]
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The push's write transaction has begun (its first statement ran); the delete runs right then.
    # PostgreSQL and MariaDB: the delete commits first, and the push's reference is refused by
    # the foreign key: 400 MANIFEST_BLOB_UNKNOWN naming the blob, nothing committed. SQLite has
    # one writer (a thread of its own, which holds the write lock): the delete waits for the
    # push and is then refused (409).
    v2 = V2(client)
    config, layer = b'{"os":"linux"}', b"racing layer"
    await v2.push_blob(NAME, config)
    await v2.push_blob(NAME, layer)
    body = image_manifest(config, [layer])
    db: Database = client.server.app[DB]
    real = metadata.upsert_returning_id
    deleting: list[asyncio.Task[Any]] = []
    loop = asyncio.get_running_loop()

    def start_delete() -> None:
        deleting.append(asyncio.ensure_future(v2.request("DELETE", f"/v2/{NAME}/blobs/{digest_of(layer)}")))

    async def upsert_then_delete(conn: Any, *args: Any, **kwargs: Any) -> int:
        repo_id = await real(conn, *args, **kwargs)
        if not deleting:
            if db_kind == "sqlite":
                loop.call_soon_threadsafe(start_delete)
            else:
                start_delete()
                assert (await deleting[0]).status == 202
        return repo_id

    monkeypatch.setattr(metadata, "upsert_returning_id", upsert_then_delete)
    resp = await v2.push_manifest(NAME, "v1", body)
    deleted = await deleting[0]
    monkeypatch.undo()
    if db_kind == "sqlite":
        assert resp.status == 201
        assert deleted.status == 409
        await _pulls(v2, "v1", (config, layer))
    else:
        assert resp.status == 400
        error = await _error(resp)
        assert error["code"] == "MANIFEST_BLOB_UNKNOWN"
        assert error["detail"] == {"digests": [digest_of(layer)]}
        assert deleted.status == 202
        assert (await v2.request("GET", f"/v2/{NAME}/manifests/v1")).status == 404
    async with db.read() as conn:
        dangling = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(t.manifest_blob)
                .where(
                    ~sa.exists().where(
                        t.repository_blob.c.repository_id == t.manifest_blob.c.repository_id,
                        t.repository_blob.c.blob_id == t.manifest_blob.c.blob_id,
                    )
                )
            )
        ).scalar_one()
    assert dangling == 0
