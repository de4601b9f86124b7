"""`copy_artifact` and `delete_artifact` between real registries: Wharf → distribution,
distribution → Wharf, Wharf → Wharf (the destination project made through `/api/`), indexes with
their children, HEAD skips, cross-repository mounts, override, resume after a failure in the
middle of a large blob, deletes; the bytes at the destination are the source's, digests equal."""

from __future__ import annotations

import json
import time
import tracemalloc

import aiohttp
import pytest

from tests.images import OCI_CONFIG, OCI_LAYER, make_image, make_index
from tests.support.replication import (
    OCI_INDEX,
    Peer,
    Recorder,
    Site,
    Stop,
    distribution_endpoint,
    sha256,
)
from wharf_jobservice.replication.copy import CHUNK, copy_artifact, delete_artifact
from wharf_jobservice.replication.progress import MountHints
from wharf_shared.remote import RemoteRegistry


async def large_image(source: Peer, repository: str, size: int) -> tuple[str, str, bytes, bytes]:
    """An image with one layer of `size` random bytes: (digest, layer digest, manifest, config)."""
    layer_digest = await source.big_blob(repository, size)
    config = b'{"architecture":"amd64","os":"linux"}'
    await source.blob(repository, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": size}],
        }
    ).encode()
    return await source.manifest(repository, "v1", manifest), layer_digest, manifest, config


async def test_wharf_to_distribution_then_nothing_more(
    session: aiohttp.ClientSession, site_a: Site, distribution_url: str
) -> None:
    image = make_image("to-distribution", layer_sizes=(4096, 300_000))
    digest = await Peer(session, site_a.url, wharf=True).image("library/app", image, "v1")
    src = RemoteRegistry(session, site_a.endpoint())
    dst = RemoteRegistry(session, distribution_endpoint(distribution_url))
    progress = Recorder()
    result = await copy_artifact(
        src,
        "library/app",
        digest,
        dst,
        "mirror/app",
        tags=["v1", "stable"],
        override=False,
        progress=progress,
    )
    assert (result.digest, result.blobs_copied, result.blobs_skipped, result.skipped) == (digest, 3, 0, False)
    size = len(image.config) + sum(len(layer) for layer in image.layers)
    assert result.bytes_copied == progress.bytes == size
    out = Peer(session, distribution_url, wharf=False)
    for tag in ("v1", "stable", digest):
        assert await out.read_manifest("mirror/app", tag) == image.manifest
    assert await out.read_blob("mirror/app", sha256(image.layers[1])) == image.layers[1]

    again = await copy_artifact(
        src,
        "library/app",
        "v1",
        dst,
        "mirror/app",
        tags=["v1", "stable"],
        override=False,
        progress=Recorder(),
    )
    assert (again.skipped, again.bytes_copied, again.blobs_copied) == (True, 0, 0)
    # A new tag only: the manifest is there by digest, so no blob is looked at.
    tagged = await copy_artifact(
        src,
        "library/app",
        digest,
        dst,
        "mirror/app",
        tags=["v1", "extra"],
        override=False,
        progress=Recorder(),
    )
    assert (tagged.skipped, tagged.bytes_copied, tagged.blobs_copied, tagged.blobs_skipped) == (
        False,
        0,
        0,
        0,
    )
    assert await out.read_manifest("mirror/app", "extra") == image.manifest


async def test_blobs_there_already_are_not_sent(
    session: aiohttp.ClientSession, site_a: Site, distribution_url: str
) -> None:
    image = make_image("head-skip")
    out = Peer(session, distribution_url, wharf=False)
    await out.blob("skip/app", image.config)
    await out.blob("skip/app", image.layers[0])
    digest = await Peer(session, site_a.url, wharf=True).image("library/head-skip", image, None)
    result = await copy_artifact(
        RemoteRegistry(session, site_a.endpoint()),
        "library/head-skip",
        digest,
        RemoteRegistry(session, distribution_endpoint(distribution_url)),
        "skip/app",
        tags=[],
        override=False,
        progress=Recorder(),
    )
    assert (result.blobs_skipped, result.blobs_copied, result.bytes_copied) == (2, 1, len(image.layers[1]))
    assert await out.read_manifest("skip/app", digest) == image.manifest


async def test_distribution_to_wharf_makes_the_project(
    session: aiohttp.ClientSession, site_a: Site, distribution_url: str
) -> None:
    image = make_image("to-wharf")
    digest = await Peer(session, distribution_url, wharf=False).image("team/tool", image, "1.0")
    dst = RemoteRegistry(session, site_a.endpoint())
    await dst.ensure_namespace("pulled")
    result = await copy_artifact(
        RemoteRegistry(session, distribution_endpoint(distribution_url)),
        "team/tool",
        "1.0",
        dst,
        "pulled/team/tool",
        tags=["1.0"],
        override=False,
        progress=Recorder(),
    )
    assert (result.digest, result.blobs_copied) == (digest, 3)
    assert (
        await Peer(session, site_a.url, wharf=True).read_manifest("pulled/team/tool", "1.0") == image.manifest
    )


async def test_wharf_to_wharf_with_an_index_and_its_children(
    session: aiohttp.ClientSession, site_a: Site, site_b: Site
) -> None:
    images = [make_image("multi", arch=arch) for arch in ("amd64", "arm64")]
    index = make_index(images)
    source = Peer(session, site_a.url, wharf=True)
    for image in images:
        await source.image("library/multi", image, None)
    index_digest = await source.manifest("library/multi", "v2", index, OCI_INDEX)
    dst = RemoteRegistry(session, site_b.endpoint())
    await dst.ensure_namespace("replica")
    progress = Recorder()
    result = await copy_artifact(
        RemoteRegistry(session, site_a.endpoint()),
        "library/multi",
        index_digest,
        dst,
        "replica/multi",
        tags=["v2"],
        override=False,
        progress=progress,
    )
    assert result.digest == index_digest
    assert result.blobs_copied == 6  # two configs, two layers each
    out = Peer(session, site_b.url, wharf=True)
    assert await out.read_manifest("replica/multi", "v2") == index
    for image in images:
        assert await out.read_manifest("replica/multi", image.digest) == image.manifest
    assert progress.checks >= 6


async def test_another_repository_at_the_destination_mounts_the_blobs(
    session: aiohttp.ClientSession, site_a: Site, site_b: Site
) -> None:
    image = make_image("mounted", layer_sizes=(200_000,))
    digest = await Peer(session, site_a.url, wharf=True).image("library/mounted", image, "v1")
    src = RemoteRegistry(session, site_a.endpoint())
    dst = RemoteRegistry(session, site_b.endpoint())
    hints = MountHints()
    first = await copy_artifact(
        src, "library/mounted", digest, dst, "library/mounted", tags=["v1"], override=False,
        progress=Recorder(), mounts=hints,
    )  # fmt: skip
    assert first.blobs_copied == 2
    assert hints.get(sha256(image.layers[0])) == "library/mounted"
    second = await copy_artifact(
        src, "library/mounted", digest, dst, "library/mounted-too", tags=["v1"], override=False,
        progress=Recorder(), mounts=hints,
    )  # fmt: skip
    assert (second.blobs_mounted, second.blobs_copied, second.bytes_copied) == (2, 0, 0)
    assert (
        await Peer(session, site_b.url, wharf=True).read_manifest("library/mounted-too", "v1")
        == image.manifest
    )


async def test_override_decides_about_a_tag_that_points_elsewhere(
    session: aiohttp.ClientSession, site_a: Site, distribution_url: str
) -> None:
    old, new = make_image("override-old"), make_image("override-new")
    out = Peer(session, distribution_url, wharf=False)
    await out.image("override/app", old, "v1")
    source = Peer(session, site_a.url, wharf=True)
    digest = await source.image("library/override", new, "v1")
    src = RemoteRegistry(session, site_a.endpoint())
    dst = RemoteRegistry(session, distribution_endpoint(distribution_url))
    progress = Recorder()
    kept = await copy_artifact(
        src, "library/override", digest, dst, "override/app", tags=["v1"], override=False, progress=progress
    )
    assert kept.skipped
    assert kept.bytes_copied == 0
    assert any("override is off" in line for line in progress.lines)
    assert await out.read_manifest("override/app", "v1") == old.manifest
    replaced = await copy_artifact(
        src, "library/override", digest, dst, "override/app", tags=["v1"], override=True, progress=Recorder()
    )
    assert not replaced.skipped
    assert await out.read_manifest("override/app", "v1") == new.manifest


async def test_delete_artifact_removes_the_remote_tag(
    session: aiohttp.ClientSession, distribution_url: str, site_a: Site
) -> None:
    image = make_image("deleted")
    for url, wharf, repository in ((distribution_url, False, "gone/app"), (site_a.url, True, "library/gone")):
        peer = Peer(session, url, wharf=wharf)
        digest = await peer.image(repository, image, "v1")
        endpoint = site_a.endpoint() if wharf else distribution_endpoint(url)
        remote = RemoteRegistry(session, endpoint)
        progress = Recorder()
        await peer.manifest(repository, "v2", image.manifest)
        assert await delete_artifact(remote, repository, "v1", progress) is True
        assert await peer.read_manifest(repository, "v1") is None
        if wharf:
            # Wharf deletes a tag alone: the artifact stays, with its other tag.
            assert await peer.read_manifest(repository, "v2") == image.manifest
            assert await delete_artifact(remote, repository, digest, progress) is True
        else:
            # distribution deletes manifests only: the tag's manifest goes, with every tag.
            assert await peer.read_manifest(repository, "v2") is None
        assert await peer.read_manifest(repository, digest) is None
        assert await delete_artifact(remote, repository, "v1", progress) is False
        assert await delete_artifact(remote, repository, digest, progress) is False


@pytest.mark.parametrize("destination", ["wharf", "distribution"])
async def test_a_copy_stopped_in_a_large_blob_resumes_where_it_stopped(
    session: aiohttp.ClientSession, distribution_url: str, site_b: Site, destination: str
) -> None:
    """Into Wharf the upload's committed offset is asked; distribution keeps its offset in the
    upload URL's signed `_state`, which the resume keeps after every PATCH."""
    source = Peer(session, distribution_url, wharf=False)
    size = 5 * CHUNK + 12345
    digest, layer_digest, manifest, config = await large_image(source, "large/app", size)
    src = RemoteRegistry(session, distribution_endpoint(distribution_url))
    wharf = destination == "wharf"
    dst_url, dst_repo = (site_b.url, "library/large") if wharf else (distribution_url, "resumed/large")
    dst = RemoteRegistry(session, site_b.endpoint() if wharf else distribution_endpoint(distribution_url))
    resume: dict[str, str] = {}
    stopping = Recorder(stop_after=2 * CHUNK)
    with pytest.raises(Stop):
        await copy_artifact(
            src, "large/app", digest, dst, dst_repo, tags=["v1"], override=False,
            progress=stopping, resume=resume,
        )  # fmt: skip
    assert list(resume) == [layer_digest]
    progress = Recorder()
    result = await copy_artifact(
        src, "large/app", digest, dst, dst_repo, tags=["v1"], override=False,
        progress=progress, resume=resume,
    )  # fmt: skip
    assert result.digest == digest
    assert 0 < result.bytes_copied < size
    assert result.bytes_copied <= size - 2 * CHUNK + len(config)
    assert any("resuming" in line for line in progress.lines)
    assert resume == {}
    out = Peer(session, dst_url, wharf=wharf)
    assert await out.read_manifest(dst_repo, "v1") == manifest
    assert sha256(await out.read_blob(dst_repo, layer_digest)) == layer_digest


async def test_memory_stays_flat_while_a_large_blob_streams(
    session: aiohttp.ClientSession, distribution_url: str
) -> None:
    """200 MiB through this process: what Python allocates meanwhile (tracemalloc's peak, which
    counts every buffer aiohttp reads into or sends from) stays a few pieces' worth (about
    1.3 MiB here), below one PATCH's worth (`CHUNK`, 8 MiB): nothing holds a chunk whole."""
    source = Peer(session, distribution_url, wharf=False)
    size = 200 * 1024 * 1024
    digest, layer_digest, _, _ = await large_image(source, "memory/app", size)
    remote = RemoteRegistry(session, distribution_endpoint(distribution_url))
    progress = Recorder()
    tracemalloc.start()
    try:
        result = await copy_artifact(
            remote, "memory/app", digest, remote, "memory/copy", tags=[], override=False, progress=progress
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.bytes_copied > size
    assert peak < 6 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming {size / 2**20:.0f} MiB"
    assert await remote.has_blob("memory/copy", layer_digest)


async def test_the_speed_limit_paces_streamed_bytes(
    session: aiohttp.ClientSession, distribution_url: str
) -> None:
    source = Peer(session, distribution_url, wharf=False)
    size = 1024 * 1024
    digest, _, _, _ = await large_image(source, "paced/app", size)
    src = RemoteRegistry(session, distribution_endpoint(distribution_url), speed_kib=512)
    dst = RemoteRegistry(session, distribution_endpoint(distribution_url))
    started = time.monotonic()
    result = await copy_artifact(
        src, "paced/app", digest, dst, "paced/copy", tags=[], override=False, progress=Recorder()
    )
    assert result.bytes_copied > size
    # A lower bound only: all but the first burst (a quarter second's worth, 128 KiB) at 512 KiB/s.
    assert time.monotonic() - started >= (1024 - 128) / 512


async def test_an_upload_the_destination_lost_starts_afresh(
    session: aiohttp.ClientSession, distribution_url: str, site_b: Site
) -> None:
    source = Peer(session, distribution_url, wharf=False)
    size = 3 * CHUNK
    digest, layer_digest, manifest, _ = await large_image(source, "lost/app", size)
    src = RemoteRegistry(session, distribution_endpoint(distribution_url))
    dst = RemoteRegistry(session, site_b.endpoint())
    resume: dict[str, str] = {}
    with pytest.raises(Stop):
        await copy_artifact(
            src, "lost/app", digest, dst, "library/lost", tags=["v1"], override=False,
            progress=Recorder(stop_after=CHUNK), resume=resume,
        )  # fmt: skip
    await dst.cancel_upload("library/lost", resume[layer_digest])
    progress = Recorder()
    result = await copy_artifact(
        src, "lost/app", digest, dst, "library/lost", tags=["v1"], override=False,
        progress=progress, resume=resume,
    )  # fmt: skip
    assert result.bytes_copied == size
    assert any("lost the upload" in line for line in progress.lines)
    assert await Peer(session, site_b.url, wharf=True).read_manifest("library/lost", "v1") == manifest
