"""`wharf_shared.remote` against real peers: a Wharf (token flow through its proxy, `/api/` for
projects) and Debian's distribution (no auth): sign-in, errors and how they are classed,
listings and their pages, manifests by tag and digest, and the job service's own account on
this Wharf. Statuses no real peer gives on demand (5xx, 429, a Basic challenge) come from a
stand-in HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.images import make_image
from tests.support.processes import free_port
from tests.support.replication import OCI_MANIFEST, Peer, Site, distribution_endpoint, sha256
from wharf_jobservice.replication.listing import list_artifacts
from wharf_shared.remote import DOCKER_REGISTRY, Endpoint, NotFound, RemoteError, RemoteRegistry, Unauthorized
from wharf_shared.remote_auth import basic_header


async def test_ping_signs_in_and_bad_credentials_are_permanent(
    session: aiohttp.ClientSession, site_a: Site
) -> None:
    await RemoteRegistry(session, site_a.endpoint()).ping()
    await RemoteRegistry(session, site_a.endpoint(username=None)).ping()  # anonymous: reachable
    with pytest.raises(Unauthorized) as caught:
        await RemoteRegistry(session, site_a.endpoint(password="wrong-password")).ping()
    assert not caught.value.transient
    assert caught.value.status == 401


async def test_a_registry_not_listening_is_a_transient_error(session: aiohttp.ClientSession) -> None:
    remote = RemoteRegistry(session, Endpoint(f"http://127.0.0.1:{free_port()}", DOCKER_REGISTRY))
    with pytest.raises(RemoteError) as caught:
        await remote.ping()
    assert caught.value.transient
    assert caught.value.status is None
    with pytest.raises(RemoteError) as caught:
        await remote.has_blob("any/thing", "sha256:" + "0" * 64)
    assert caught.value.transient


async def test_manifests_by_tag_and_digest_and_errors_named(
    session: aiohttp.ClientSession, site_a: Site
) -> None:
    image = make_image("remote-manifests")
    digest = await Peer(session, site_a.url, wharf=True).image("library/remote-manifests", image, "v1")
    remote = RemoteRegistry(session, site_a.endpoint())
    by_tag = await remote.get_manifest("library/remote-manifests", "v1")
    by_digest = await remote.get_manifest("library/remote-manifests", digest)
    assert by_tag == by_digest
    assert (by_tag.digest, by_tag.body) == (digest, image.manifest)
    assert by_tag.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert await remote.head_manifest("library/remote-manifests", "v1") == (digest, by_tag.media_type)
    assert await remote.head_manifest("library/remote-manifests", "nope") is None
    assert await remote.has_blob("library/remote-manifests", sha256(image.layers[0]))
    assert not await remote.has_blob("library/remote-manifests", digest)  # a manifest, not a blob
    with pytest.raises(NotFound) as caught:
        await remote.get_manifest("library/remote-manifests", "nope")
    assert "MANIFEST_UNKNOWN" in str(caught.value)
    assert not caught.value.transient
    # A project that does not exist grants nothing: the registry says 401 after signing in.
    with pytest.raises(Unauthorized):
        await remote.get_manifest("nowhere/thing", "v1")


async def test_listings_follow_their_pages(session: aiohttp.ClientSession, distribution_url: str) -> None:
    peer = Peer(session, distribution_url, wharf=False)
    image = make_image("remote-listing")
    for i in range(105):  # more than one page of the catalog (100 at a time)
        await peer.image(f"listing/repo{i:03d}", image, "latest")
    await peer.image("listing/many", image, "t0000")
    for i in range(1, 1005):  # more than one page of tags (the client asks 1000 at a time)
        await peer.manifest("listing/many", f"t{i:04d}", image.manifest)
    remote = RemoteRegistry(session, distribution_endpoint(distribution_url))
    names = [name async for name in remote.repositories()]
    assert {f"listing/repo{i:03d}" for i in range(105)} | {"listing/many"} <= set(names)
    assert len(names) == len(set(names))
    tags = await remote.tags("listing/many")
    assert sorted(tags) == [f"t{i:04d}" for i in range(1005)]
    with pytest.raises(NotFound):
        await remote.tags("listing/none")


async def test_harbor_repositories_come_from_its_projects(
    session: aiohttp.ClientSession, site_a: Site
) -> None:
    remote = RemoteRegistry(session, site_a.endpoint())
    await remote.ensure_namespace("listed")
    await remote.ensure_namespace("listed")  # there already: nothing to do
    peer = Peer(session, site_a.url, wharf=True)
    image = make_image("remote-harbor-listing")
    await peer.image("listed/one", image, "v1")
    await peer.image("listed/two/deep", image, "v1")
    names = [name async for name in remote.repositories()]
    assert {"listed/one", "listed/two/deep"} <= set(names)


async def test_list_artifacts_groups_tags_by_digest_through_the_filters(
    session: aiohttp.ClientSession, distribution_url: str
) -> None:
    peer = Peer(session, distribution_url, wharf=False)
    one, two = make_image("artifacts-one"), make_image("artifacts-two")
    await peer.image("artifacts/app", one, "v1")
    await peer.manifest("artifacts/app", "v1-latest", one.manifest)
    await peer.image("artifacts/app", two, "v2")
    await peer.image("artifacts/dev-app", two, "v2")
    await peer.image("other/app", two, "v2")
    remote = RemoteRegistry(session, distribution_endpoint(distribution_url))
    filters = [{"type": "name", "value": "artifacts/*"}, {"type": "tag", "value": "v1*"}]
    found = [a async for a in list_artifacts(remote, filters)]
    assert [(a.repository, a.digest, sorted(a.tags)) for a in found] == [
        ("artifacts/app", one.digest, ["v1", "v1-latest"])
    ]
    everything = [a async for a in list_artifacts(remote, [{"type": "name", "value": "artifacts/**"}])]
    assert {(a.repository, a.digest) for a in everything} == {
        ("artifacts/app", one.digest),
        ("artifacts/app", two.digest),
        ("artifacts/dev-app", two.digest),
    }


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_the_job_service_reads_and_writes_any_repository_here(
    session: aiohttp.ClientSession, site_a: Site
) -> None:
    image = make_image("remote-jobservice")
    admin = Peer(session, site_a.url, wharf=True)
    await RemoteRegistry(session, site_a.endpoint()).ensure_namespace("private-team")
    digest = await admin.image("private-team/app", image, "v1")
    endpoint = site_a.jobservice_endpoint()
    job = RemoteRegistry(session, endpoint)
    await job.ping()
    assert (await job.get_manifest("private-team/app", "v1")).body == image.manifest
    # It writes into any repository, whether its project exists or not.
    for repository in ("private-team/copy", "elsewhere/copy"):
        for blob in (image.config, *image.layers):
            url = await job.start_upload(repository)
            assert await job.upload_offset(repository, url) == 0
            url = await job.patch_upload(repository, url, _once(blob), 0, len(blob))
            await job.finish_upload(repository, url, sha256(blob))
            assert await job.has_blob(repository, sha256(blob))
        assert await job.put_manifest(repository, "v1", OCI_MANIFEST, image.manifest) == digest
        assert (await job.get_manifest(repository, "v1")).body == image.manifest
    assert await admin.read_manifest("private-team/copy", "v1") == image.manifest
    await job.delete_manifest("elsewhere/copy", digest)
    assert await job.head_manifest("elsewhere/copy", "v1") is None
    # The catalog (`registry:catalog:*`) too.
    catalog = RemoteRegistry(
        session, Endpoint(site_a.url, DOCKER_REGISTRY, endpoint.username, endpoint.password)
    )
    assert {"private-team/app", "private-team/copy"} <= {name async for name in catalog.repositories()}
    # `/api/` does not know the account.
    with pytest.raises(Unauthorized):
        await job.ensure_namespace("made-by-the-job-service")


def _stand_in() -> web.Application:
    """A registry that answers with the statuses a test names (`/v2/<status>/…`), and wants
    Basic credentials under `/v2/basic/`."""

    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        body = {"errors": [{"code": f"CODE_{status}", "message": f"said {status}"}]}
        return web.json_response(body, status=status)

    async def basic(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic_header("user", "secret"):
            return web.json_response({}, status=401, headers={"WWW-Authenticate": 'Basic realm="stand-in"'})
        return web.Response(body=b"{}", content_type=OCI_MANIFEST)

    app = web.Application()
    app.router.add_get("/v2/basic/manifests/{reference}", basic)
    app.router.add_get("/v2/{status:[0-9]+}/manifests/{reference}", answer)
    return app


@pytest.mark.parametrize(
    ("status", "error", "transient"),
    [
        (503, RemoteError, True),
        (500, RemoteError, True),
        (429, RemoteError, True),
        (400, RemoteError, False),
        (403, Unauthorized, False),
        (404, NotFound, False),
    ],
)
async def test_statuses_are_classed(
    session: aiohttp.ClientSession, status: int, error: type[RemoteError], transient: bool
) -> None:
    async with TestServer(_stand_in(), host="127.0.0.1") as server:
        remote = RemoteRegistry(session, Endpoint(str(server.make_url("")), DOCKER_REGISTRY))
        with pytest.raises(error) as caught:
            await remote.get_manifest(str(status), "v1")
    assert type(caught.value) is error
    assert (caught.value.status, caught.value.transient) == (status, transient)
    assert f"CODE_{status}: said {status}" in str(caught.value)


async def test_a_basic_challenge_gets_the_credentials(session: aiohttp.ClientSession) -> None:
    async with TestServer(_stand_in(), host="127.0.0.1") as server:
        url = str(server.make_url(""))
        remote = RemoteRegistry(session, Endpoint(url, DOCKER_REGISTRY, "user", "secret"))
        assert (await remote.get_manifest("basic", "v1")).body == b"{}"
        with pytest.raises(Unauthorized):
            await RemoteRegistry(session, Endpoint(url, DOCKER_REGISTRY, "user", "wrong")).get_manifest(
                "basic", "v1"
            )
        with pytest.raises(Unauthorized):
            await RemoteRegistry(session, Endpoint(url, DOCKER_REGISTRY)).get_manifest("basic", "v1")
