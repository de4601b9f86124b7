"""Two registry processes on two addresses (127.0.0.2 and 127.0.0.3), sharing one PostgreSQL
database, one Redis DB and one storage, serve one registry: an upload begun on one is continued
on the other, what one accepts the other serves at once (no stale cache answer), a process
killed in the middle of a PATCH loses nothing that was acknowledged, and concurrent pushes of
the same blob and tag through both leave exactly one set of rows.

Parametrized over every storage driver the factory knows (`wharf_shared.storage.factory.DRIVERS`):
the filesystem (one directory both processes use) and S3 (one moto bucket), so a driver joins
these tests by being registered there.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.e2e.conftest import Registry, make_skopeo
from tests.images import make_image, make_index, write_layout
from tests.images import sha256 as layout_digest
from tests.support import backends, s3
from tests.support.grants import allow_push
from tests.support.oci import OCI_MANIFEST, digest_of, image_manifest
from tests.support.processes import free_port, registry_process
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.setup import ensure_files
from wharf_shared.storage import factory, paths
from wharf_shared.storage.base import PathNotFoundError, StorageDriver
from wharf_shared.storage.s3 import STATE_SUFFIX
from wharf_shared.tokens import Access, TokenIssuer, load_private_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MIB = 1024 * 1024
HOSTS = ("127.0.0.2", "127.0.0.3")
S3_PART = 5 * MIB
CLIENTS = 10  # concurrent pushers, split across the two instances
STAGGER = 0.004  # seconds between the starts of one wave's manifest PUTs


# -- the two instances -------------------------------------------------------------------------


@dataclass
class Instance:
    label: str  # "A" or "B"
    registry: Registry
    killed: bool = False  # by the test, on purpose

    @property
    def url(self) -> str:
        return self.registry.url

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as when a host dies."""
        self.killed = True
        self.registry.process.kill()

    def restart(self) -> None:
        self.registry.process.start()  # returns once /health/ready answers 200
        self.killed = False

    def state(self) -> str:
        process = self.registry.process.process
        if self.killed:
            return "killed by the test"
        if process is None:
            return "not started"
        code = process.poll()
        return "running" if code is None else f"exited {code}"


@dataclass
class Cluster:
    a: Instance
    b: Instance
    driver: str
    database_url: str
    redis_url: str
    storage: dict[str, Any]  # the `storage` settings group both processes run with
    issuer: TokenIssuer

    @property
    def instances(self) -> tuple[Instance, Instance]:
        return self.a, self.b

    def explain(self, message: str) -> str:
        """An assertion message with both instances' recent logs attached."""
        parts = [message]
        for instance in self.instances:
            process = instance.registry.process
            parts.append(
                f"--- instance {instance.label} at {instance.url} ({instance.state()}), "
                f"log {process.log_path} ---\n{process.tail(40)}"
            )
        return "\n".join(parts)

    def token(self, *repositories: str) -> str:
        """What the token service would grant: pull and push on each repository."""
        access = [Access("repository", name, frozenset({"pull", "push"})) for name in repositories]
        allow_push(self.database_url, "e2e-tester", repositories)  # pushes are re-checked in SQL
        token, _ = self.issuer.issue("e2e-tester", access, 900)
        return token

    @contextmanager
    def storage_driver(self) -> Iterator[StorageDriver]:
        """The storage both processes use, opened in this process (to look for leftovers)."""
        driver = factory.DRIVERS[self.driver](Settings(storage=self.storage))
        try:
            yield driver
        finally:
            close = getattr(driver, "close", None)  # the S3 driver's thread pool
            if callable(close):
                close()


def _storage(
    request: pytest.FixtureRequest, driver: str, tmp_path: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """(WHARF_STORAGE__* variables, the same as a `storage` settings group) for `driver`."""
    if driver == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        # The smallest part S3 allows: uploads here span several segments, and a writer killed
        # 12 MiB into a PATCH has written one.
        part = str(S3_PART)
        return s3.storage_env(endpoint, bucket, part_size=part), s3.storage_settings(
            endpoint, bucket, part_size=part
        )
    if driver == "filesystem":
        root = tmp_path / "shared-storage"  # the one directory both "hosts" mount
        env = {"WHARF_STORAGE__DRIVER": "filesystem", "WHARF_STORAGE__FILESYSTEM__ROOT": str(root)}
        return env, {"driver": "filesystem", "filesystem": {"root": str(root)}}
    raise AssertionError(f"no test setup for storage driver {driver!r}: add it to _storage")


@pytest.fixture(params=sorted(factory.DRIVERS))
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Registry A on 127.0.0.2 and B on 127.0.0.3: one PostgreSQL database, one Redis DB, one storage,
    one trusted token key. Both are stopped at teardown; one that crashed (rather than being killed by
    the test) or would not stop cleanly on SIGTERM fails the test."""
    driver = str(request.param)
    storage_env, storage = _storage(request, driver, tmp_path)
    # The key pair `wharf init` would make; both instances trust its public half.
    keys = Settings(data_dir=tmp_path / "keys")
    ensure_files(keys)
    issuer = TokenIssuer(
        load_private_key(keys.token_private_key_path), service=keys.token.service, issuer=keys.token.issuer
    )
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        common = {
            "WHARF_DATABASE_URL": database_url,
            "WHARF_REDIS_URL": redis_url,
            "WHARF_REGISTRY__AUTH": "token",
            "WHARF_REGISTRY__TOKEN_KEYS_FILE": str(keys.token_keys_path),
            # A realm nobody serves: the test mints its tokens itself.
            "WHARF_EXTERNAL_URL": f"http://127.0.0.1:{free_port()}",
            "WHARF_DATABASE_POOL_SIZE": "5",
            # Upload locks that would take ten minutes to lapse: a request waiting on one held by a
            # killed or stopped instance is served only by taking it over once the holder's liveness
            # key lapses (2 s), or runs into the test's timeout.
            "WHARF_REGISTRY__UPLOAD_LEASE_SECONDS": "600",
            "WHARF_REGISTRY__LIVENESS_INTERVAL_SECONDS": "0.25",
            "WHARF_REGISTRY__LIVENESS_TTL_SECONDS": "2",
            **storage_env,
        }
        instances = []
        for label, host in zip("AB", HOSTS, strict=True):
            data_dir = tmp_path / f"data-{label}"  # each "host" has its own; nothing in it is shared
            process = registry_process(
                {**common, "WHARF_DATA_DIR": str(data_dir)},
                tmp_path / "logs",
                host=host,
                name=f"registry-{label}",
            )
            instances.append(Instance(label, Registry(process, "token", "postgresql", data_dir, issuer)))
        cluster = Cluster(instances[0], instances[1], driver, database_url, redis_url, storage, issuer)
        crashed: list[str] = []
        try:
            # Both at once (each start waits for /health/ready); an error is raised once both are done.
            with ThreadPoolExecutor(len(instances)) as pool:
                list(pool.map(Instance.restart, instances))
            yield cluster
        finally:
            for instance in instances:
                if not instance.killed and instance.state().startswith("exited"):
                    crashed.append(f"{instance.label} {instance.state()} before teardown")
                instance.registry.process.stop()
            for instance in instances:
                popen = instance.registry.process.process
                if not instance.killed and popen is not None and popen.returncode != 0:
                    crashed.append(f"{instance.label}: exit status {popen.returncode} after SIGTERM")
    if crashed:
        pytest.fail(cluster.explain("; ".join(dict.fromkeys(crashed))), pytrace=False)


# -- a small HTTP client per instance -----------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Node:
    """An HTTP client of one instance; every failure message carries both instances' logs."""

    instance: Instance
    session: aiohttp.ClientSession
    cluster: Cluster

    @property
    def label(self) -> str:
        return self.instance.label

    async def call(self, method: str, path: str, expect: int, what: str, **kwargs: Any) -> Reply:
        where = f"{what}: {method} {path} on {self.label}"
        if isinstance(kwargs.get("data"), bytes):
            kwargs["data"] = io.BytesIO(kwargs["data"])  # aiohttp streams a file object in pieces
        try:
            async with self.session.request(method, path, **kwargs) as response:
                reply = Reply(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AssertionError(self.cluster.explain(f"{where}: {type(exc).__name__}: {exc}")) from exc
        if reply.status != expect:
            raise AssertionError(
                self.cluster.explain(f"{where} answered {reply.status}, not {expect}: {reply.body[:600]!r}")
            )
        return reply

    # Blob uploads

    async def start_upload(self, repo: str) -> str:
        reply = await self.call("POST", f"/v2/{repo}/blobs/uploads/", 202, "start an upload")
        return reply.headers["Location"]

    async def patch(self, location: str, data: bytes, start: int, what: str = "PATCH a chunk") -> str:
        end = start + len(data) - 1
        reply = await self.call(
            "PATCH",
            location,
            202,
            what,
            data=data,
            headers={"Content-Range": f"{start}-{end}", "Content-Type": "application/octet-stream"},
        )
        assert reply.headers["Range"] == f"0-{end}", self.cluster.explain(
            f"{what} on {self.label}: Range {reply.headers['Range']}, expected 0-{end}"
        )
        return reply.headers["Location"]

    async def offset(self, location: str, what: str = "upload status") -> int:
        """The upload's offset as this instance reports it (GET → 204 with `Range: 0-<last>`)."""
        reply = await self.call("GET", location, 204, what)
        first, _, last = reply.headers["Range"].partition("-")
        assert first == "0", self.cluster.explain(f"{what}: Range {reply.headers['Range']}")
        return int(last) + 1

    async def finish(self, location: str, digest: str, data: bytes = b"", start: int = 0) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        if data:
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        reply = await self.call(
            "PUT", location, 201, "finish the upload", params={"digest": digest}, data=data, headers=headers
        )
        assert reply.headers["Docker-Content-Digest"] == digest, self.cluster.explain(
            f"upload finished on {self.label} as {reply.headers['Docker-Content-Digest']}, pushed {digest}"
        )

    async def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic: one `POST ?digest=` with the whole blob."""
        digest = digest_of(data)
        await self.call(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            201,
            "monolithic blob push",
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    async def pull_blob(self, repo: str, digest: str) -> bytes:
        reply = await self.call("GET", f"/v2/{repo}/blobs/{digest}", 200, "pull a blob")
        actual = digest_of(reply.body)
        assert actual == digest, self.cluster.explain(f"blob {digest} from {self.label} hashes to {actual}")
        assert reply.headers["Docker-Content-Digest"] == digest, self.cluster.explain(
            f"blob {digest} from {self.label}: Docker-Content-Digest {reply.headers['Docker-Content-Digest']}"
        )
        return reply.body

    # Manifests

    async def put_manifest(self, repo: str, reference: str, body: bytes) -> str:
        reply = await self.call(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            201,
            f"push manifest {reference}",
            data=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        digest = reply.headers["Docker-Content-Digest"]
        assert digest == digest_of(body), self.cluster.explain(
            f"manifest pushed as {digest_of(body)}, stored as {digest}"
        )
        return digest

    async def get_manifest(self, repo: str, reference: str, method: str = "GET") -> Reply:
        return await self.call(
            method,
            f"/v2/{repo}/manifests/{reference}",
            200,
            f"{method} manifest {reference}",
            headers={"Accept": OCI_MANIFEST},
        )

    async def expect_manifest(self, repo: str, reference: str, body: bytes, what: str) -> None:
        """`reference` names exactly `body` here: GET (bytes and digest) and HEAD (digest) agree."""
        digest = digest_of(body)
        got = await self.get_manifest(repo, reference)
        served = got.headers["Docker-Content-Digest"]
        wrong = f"{what}: {self.label} serves {reference} as {served} ({digest_of(got.body)}), not {digest}"
        assert served == digest, self.cluster.explain(wrong)
        assert got.body == body, self.cluster.explain(wrong)
        head = await self.get_manifest(repo, reference, "HEAD")
        assert head.headers["Docker-Content-Digest"] == digest, self.cluster.explain(
            f"{what}: HEAD {repo}:{reference} on {self.label} says {head.headers['Docker-Content-Digest']}, "
            f"expected {digest}"
        )


@asynccontextmanager
async def clients(cluster: Cluster, token: str) -> AsyncIterator[tuple[Node, Node]]:
    """A client of A and one of B, with a token both instances accept."""
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(base_url=cluster.a.url, headers=headers, timeout=timeout) as a,
        aiohttp.ClientSession(base_url=cluster.b.url, headers=headers, timeout=timeout) as b,
    ):
        yield Node(cluster.a, a, cluster), Node(cluster.b, b, cluster)


def chunks(data: bytes, count: int) -> list[tuple[int, bytes]]:
    """`data` cut into `count` pieces (the last one shorter): [(start, piece)]."""
    size = -(-len(data) // count)
    return [(start, data[start : start + size]) for start in range(0, len(data), size)]


async def upload_leftovers(cluster: Cluster) -> list[str]:
    """Upload data still in storage and upload state still in Redis (sessions or their locks)."""
    with cluster.storage_driver() as driver:
        try:
            stored = await driver.list(paths.UPLOADS)
        except PathNotFoundError:
            stored = []
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        keys = sorted(key.decode() for key in client.scan_iter(match="wharf:upload:*"))
    finally:
        client.close()
    return stored + keys


# -- 1. one upload, one registry, two processes -------------------------------------------------


async def test_chunked_upload_alternates_between_instances(cluster: Cluster) -> None:
    """Eight PATCHes alternate A, B, A, …; each instance reports the other's progress at once; the
    PUT goes to the instance that did not write the last chunk; both serve the blob."""
    repo = "team/shared"
    data = os.urandom(8 * MIB + 12_345)  # chunk boundaries off any block or part size
    digest = digest_of(data)
    async with clients(cluster, cluster.token(repo)) as (a, b):
        nodes = (a, b)
        location = await a.start_upload(repo)
        pieces = chunks(data, 8)
        assert len(pieces) == 8
        for i, (start, piece) in enumerate(pieces):
            writer, other = nodes[i % 2], nodes[(i + 1) % 2]
            location = await writer.patch(location, piece, start, f"chunk {i}")
            seen = await other.offset(location, f"status after chunk {i}")
            assert seen == start + len(piece), cluster.explain(
                f"after chunk {i} on {writer.label}, {other.label} reports offset {seen}, "
                f"expected {start + len(piece)}"
            )
        last_writer = nodes[(len(pieces) - 1) % 2]
        finisher = b if last_writer is a else a
        await finisher.finish(location, digest)
        for node in nodes:
            assert await node.pull_blob(repo, digest) == data
        assert await upload_leftovers(cluster) == [], cluster.explain("upload state left after the PUT")


async def test_manifest_and_tag_moves_are_seen_at_once_by_the_other_instance(cluster: Cluster) -> None:
    """A manifest pushed via one instance is pullable via the other by tag and by digest at once, and
    every move of the tag (via alternating instances, each time just after both served the old
    answer, so that it is cached) is seen at once by both."""
    repo = "team/tags"
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(64 * 1024)
    async with clients(cluster, cluster.token(repo)) as (a, b):
        await b.push_blob(repo, config)
        await b.push_blob(repo, layer)
        first = image_manifest(config, [layer], annotations={"round": "0"})
        digest = await a.put_manifest(repo, "v1", first)
        await b.expect_manifest(repo, "v1", first, "pushed via A, pulled via B by tag")
        await b.expect_manifest(repo, digest, first, "pushed via A, pulled via B by digest")
        await a.expect_manifest(repo, "v1", first, "pushed via A, pulled via A by tag")
        nodes = (a, b)
        for round_ in range(1, 9):
            mover, other = nodes[round_ % 2], nodes[(round_ + 1) % 2]
            # Both serve the old answer first: it is cached (in Redis, under the repository's generation).
            previous = await other.get_manifest(repo, "v1")
            await mover.get_manifest(repo, "v1")
            body = image_manifest(config, [layer], annotations={"round": str(round_)})
            assert digest_of(body) != digest_of(previous.body)
            moved = await mover.put_manifest(repo, "v1", body)
            what = f"round {round_}: v1 moved via {mover.label}"
            await other.expect_manifest(repo, "v1", body, what)
            await mover.expect_manifest(repo, "v1", body, what)
            await other.expect_manifest(repo, moved, body, what + " (by digest)")
            # The manifest v1 pointed at before is still there by digest.
            await other.expect_manifest(repo, digest_of(previous.body), previous.body, what + " (old digest)")
        listing = await b.call("GET", f"/v2/{repo}/tags/list", 200, "list tags")
        assert json.loads(listing.body)["tags"] == ["v1"], cluster.explain(f"tags: {listing.body!r}")


# -- 2. a process killed in the middle of a PATCH -----------------------------------------------


async def storage_writers_opened(instance: Instance) -> int:
    """How many storage writers the instance has opened so far, from its /metrics."""
    result = await asyncio.to_thread(instance.registry.get, "/metrics")
    assert result.status == 200, instance.registry.explain(f"/metrics answered {result.status}")
    total = 0
    for family in text_string_to_metric_families(result.body.decode()):
        if family.name != "wharf_registry_storage_operation_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("operation") == "writer":
                total += int(sample.value)
    return total


def bytes_stored(cluster: Cluster, upload_id: str) -> int:
    """Bytes in storage for an upload, committed or not (a writer's work in progress included)."""
    directory = paths.upload_dir(upload_id)
    if cluster.driver == "filesystem":
        found = Path(cluster.storage["filesystem"]["root"]) / directory
        return sum(p.stat().st_size for p in found.iterdir() if p.is_file()) if found.is_dir() else 0
    if cluster.driver == "s3":
        # Every object of the upload's files but their states (JSON lists of committed segments).
        settings = cluster.storage["s3"]
        listing = s3.client(settings["endpoint_url"]).list_objects_v2(
            Bucket=settings["bucket"], Prefix=directory + "/"
        )
        return sum(o["Size"] for o in listing.get("Contents") or [] if not o["Key"].endswith(STATE_SUFFIX))
    raise AssertionError(f"no probe of stored upload bytes for driver {cluster.driver!r}")


async def test_patch_killed_mid_body_is_resumed_on_the_other_instance(cluster: Cluster) -> None:
    """Two chunks acknowledged (one per instance); a third, large one streams slowly into A, which is
    SIGKILLed while the body is arriving. B reports an offset covering everything acknowledged, the
    client resumes there on B and finishes; the blob is intact, and A, restarted, serves it."""
    repo = "team/crash"
    first, second, big = 3 * MIB + 1, 2 * MIB + 7, 24 * MIB
    data = os.urandom(first + second + big)
    digest = digest_of(data)
    async with clients(cluster, cluster.token(repo)) as (a, b):
        location = await b.start_upload(repo)
        upload_id = location.rstrip("/").rsplit("/", 1)[-1]
        location = await a.patch(location, data[:first], 0, "first chunk")
        location = await b.patch(location, data[first : first + second], first, "second chunk")
        acknowledged = first + second

        # The third chunk: its first 12 MiB arrive, then the client stalls with the body half sent.
        partial, piece = 12 * MIB, 256 * 1024
        sent = 0
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            nonlocal sent
            for start in range(acknowledged, acknowledged + partial, piece):
                yield data[start : start + piece]
                sent += piece
            await release.wait()
            yield data[acknowledged + partial :]  # never taken: the server is gone by then

        async def doomed_patch() -> int:
            headers = {
                "Content-Range": f"{acknowledged}-{len(data) - 1}",
                "Content-Length": str(len(data) - acknowledged),
                "Content-Type": "application/octet-stream",
            }
            async with a.session.patch(location, data=slow_body(), headers=headers) as response:
                await response.read()
                return response.status

        writers_before = await storage_writers_opened(cluster.a)
        doomed = asyncio.create_task(doomed_patch())
        try:
            # Wait until A is inside the PATCH: it holds the upload's lock, has opened the storage
            # writer, and has been handed everything the client will send.
            deadline = time.monotonic() + 20
            while sent < partial or await storage_writers_opened(cluster.a) <= writers_before:
                assert not doomed.done(), cluster.explain(
                    f"the slow PATCH ended early: {doomed.exception() or doomed.result()}"
                )
                assert time.monotonic() < deadline, cluster.explain(
                    f"A never began writing the slow PATCH (client sent {sent} bytes)"
                )
                await asyncio.sleep(0.05)
            # Wait until A has stored some of it, so that the resuming writer has a killed writer's
            # bytes past the acknowledged offset to drop.
            while await asyncio.to_thread(bytes_stored, cluster, upload_id) <= acknowledged:
                assert time.monotonic() < deadline, cluster.explain("A stored none of the slow PATCH")
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.a.kill)
        finally:
            release.set()
        try:
            status = await asyncio.wait_for(doomed, 30)
        except (aiohttp.ClientError, ConnectionError):
            pass  # the connection died with the server: what a client sees of a crash
        else:
            raise AssertionError(cluster.explain(f"the PATCH to a killed server answered {status}"))

        # The client asks the surviving instance where to resume.
        offset = await b.offset(location, "status after A was killed")
        assert acknowledged <= offset <= acknowledged + sent, cluster.explain(
            f"B reports offset {offset}: acknowledged {acknowledged}, sent at most {acknowledged + sent}"
        )
        # A died holding the upload's lock: B takes it over once A's liveness key lapses.
        middle = offset + (len(data) - offset) // 2
        location = await b.patch(location, data[offset:middle], offset, "resumed chunk")
        await b.finish(location, digest, data[middle:], middle)
        assert await b.pull_blob(repo, digest) == data

        await asyncio.to_thread(cluster.a.restart)
        assert await a.pull_blob(repo, digest) == data
        gone = await a.call("GET", location, 404, "status of the finished upload on the restarted A")
        assert b"BLOB_UPLOAD_UNKNOWN" in gone.body, cluster.explain(f"finished upload: {gone.body!r}")
        # Nothing of the upload is left but, on S3, the segments A had written and never committed:
        # garbage in no file, which the uploads purge reclaims once its grace period is over.
        garbage = [paths.upload_dir(upload_id)] if cluster.driver == "s3" else []
        assert await upload_leftovers(cluster) == garbage, cluster.explain("upload state left after the PUT")
        with cluster.storage_driver() as driver:
            for entry in garbage:
                for name in await driver.list(entry):
                    with pytest.raises(PathNotFoundError):
                        await driver.stat_file(name)


# -- 3. a holder of an upload's lock killed during the closing PUT, or stopped and resumed -------


@dataclass
class SlowRequest:
    """A request whose body streams in: `partial` bytes, then nothing until `release` is set."""

    task: asyncio.Task[tuple[int, bytes]]
    release: asyncio.Event
    sent: list[int]  # bytes of the body sent so far (one number, updated as it goes)


def slow_request(
    node: Node, method: str, location: str, body: bytes, start: int, partial: int, **params: str
) -> SlowRequest:
    """`method` with `body` (the upload's bytes from `start`) on `node`: answers (status, body)."""
    release = asyncio.Event()
    sent = [0]
    piece = 256 * 1024

    async def stream() -> AsyncIterator[bytes]:
        for offset in range(0, partial, piece):
            yield body[offset : min(offset + piece, partial)]
            sent[0] = min(offset + piece, partial)
        await release.wait()
        yield body[partial:]

    async def send() -> tuple[int, bytes]:
        headers = {
            "Content-Range": f"{start}-{start + len(body) - 1}",
            "Content-Length": str(len(body)),
            "Content-Type": "application/octet-stream",
        }
        async with node.session.request(
            method, location, data=stream(), headers=headers, params=params
        ) as response:
            return response.status, await response.read()

    return SlowRequest(asyncio.create_task(send()), release, sent)


async def until_writing(
    cluster: Cluster, instance: Instance, request: SlowRequest, partial: int, writers_before: int, upload: str
) -> None:
    """Until `instance` holds the upload's lock inside `request`: it has opened a storage writer
    and stored some of what the client sent past what was recorded."""
    recorded = await asyncio.to_thread(bytes_stored, cluster, upload)
    deadline = time.monotonic() + 30
    while (
        request.sent[0] < partial
        or await storage_writers_opened(instance) <= writers_before
        or await asyncio.to_thread(bytes_stored, cluster, upload) <= recorded
    ):
        assert not request.task.done(), cluster.explain(
            f"the slow request ended early: {request.task.exception() or request.task.result()}"
        )
        assert time.monotonic() < deadline, cluster.explain(
            f"{instance.label} never stored any of the slow request (client sent {request.sent[0]} bytes)"
        )
        await asyncio.sleep(0.05)


async def test_put_killed_mid_body_is_finished_on_the_other_instance(cluster: Cluster) -> None:
    """A is SIGKILLed while the closing PUT's body streams into it (A holds the upload's lock); the
    client asks B where to resume and sends the rest in a PUT: B takes the dead holder's lock over
    (without waiting out its ten-minute lease) and publishes the blob, intact."""
    repo = "team/crash-put"
    first, rest, partial = 3 * MIB + 1, 20 * MIB, 12 * MIB
    data = os.urandom(first + rest)
    digest = digest_of(data)
    async with clients(cluster, cluster.token(repo)) as (a, b):
        location = await b.start_upload(repo)
        upload_id = location.rstrip("/").rsplit("/", 1)[-1]
        location = await b.patch(location, data[:first], 0, "first chunk")
        writers_before = await storage_writers_opened(cluster.a)
        put = slow_request(a, "PUT", location, data[first:], first, partial, digest=digest)
        try:
            await until_writing(cluster, cluster.a, put, partial, writers_before, upload_id)
            await asyncio.to_thread(cluster.a.kill)
        finally:
            put.release.set()
        try:
            status = await asyncio.wait_for(put.task, 30)
        except (aiohttp.ClientError, ConnectionError):
            pass  # the connection died with the server
        else:
            raise AssertionError(cluster.explain(f"the PUT to a killed server answered {status}"))

        offset = await b.offset(location, "status after A was killed")
        assert offset == first, cluster.explain(f"B reports offset {offset}, acknowledged {first}")
        await b.finish(location, digest, data[offset:], offset)
        assert await b.pull_blob(repo, digest) == data
        # On S3, the segments A had written and never committed are garbage in no file, which the
        # uploads purge reclaims once its grace period is over.
        garbage = [paths.upload_dir(upload_id)] if cluster.driver == "s3" else []
        assert await upload_leftovers(cluster) == garbage, cluster.explain("upload state left after the PUT")


async def test_a_stopped_holder_is_taken_over_and_records_nothing_after(cluster: Cluster) -> None:
    """A PATCH streams into A, which is stopped (SIGSTOP) holding the upload's lock; its liveness
    key lapses, so B takes the lock over and records a chunk of its own. A resumes (SIGCONT), takes
    the rest of its body, and is refused: it recorded nothing, and the blob is the bytes B and the
    chunk before took, finished on A."""
    repo = "team/stalled"
    first, second, stalled, partial = 2 * MIB + 3, 3 * MIB + 1, 16 * MIB, 12 * MIB
    data = os.urandom(first + second)
    theirs = os.urandom(stalled)  # what A was sent: never part of the blob
    digest = digest_of(data)
    async with clients(cluster, cluster.token(repo)) as (a, b):
        location = await a.start_upload(repo)
        upload_id = location.rstrip("/").rsplit("/", 1)[-1]
        location = await b.patch(location, data[:first], 0, "first chunk")
        writers_before = await storage_writers_opened(cluster.a)
        patch = slow_request(a, "PATCH", location, theirs, first, partial)
        process = cluster.a.registry.process.process
        assert process is not None
        try:
            await until_writing(cluster, cluster.a, patch, partial, writers_before, upload_id)
            process.send_signal(signal.SIGSTOP)
            try:
                offset = await b.offset(location, "status while A is stopped")
                assert offset == first, cluster.explain(f"B reports offset {offset}, acknowledged {first}")
                location = await b.patch(location, data[first:], first, "chunk written while A is stopped")
            finally:
                process.send_signal(signal.SIGCONT)
        finally:
            patch.release.set()
        status, body = await asyncio.wait_for(patch.task, 60)
        assert (status, b"BLOB_UPLOAD_INVALID" in body) == (400, True), cluster.explain(
            f"A, taken over while stopped, answered {status}: {body[:300]!r}"
        )
        for node in (a, b):
            assert await node.offset(location, "status after A resumed") == len(data)
        await a.finish(location, digest)
        for node in (a, b):
            assert await node.pull_blob(repo, digest) == data
        assert await upload_leftovers(cluster) == [], cluster.explain("upload state left after the PUT")


# -- 4. the same blob and the same tag, pushed concurrently through both ------------------------


@dataclass(frozen=True)
class TagPush:
    client: int
    digest: str
    instance: str
    started: float
    finished: float


async def test_concurrent_pushes_of_one_blob_and_one_tag(cluster: Cluster) -> None:
    """Ten clients, five per instance, push the same layer (monolithic, or chunked across both
    instances), a config of their own, then a manifest to the same tag, in two overlapping waves.
    All succeed; one blob row per digest and one link per blob, no stray rows, no upload leftovers.
    The tag names one of the pushed manifests, and the last writer wins: no PUT that began after
    the winner's had completed may lose. (For PUTs in flight together, the order of their 201s need
    not be the order of their commits, so "completed last" holds up to that overlap.) Every digest
    pulled through either instance is the pushed one."""
    repo = "team/race"
    layer = os.urandom(3 * MIB + 5)
    layer_digest = digest_of(layer)
    configs = [
        json.dumps({"architecture": "amd64", "os": "linux", "client": i}).encode() for i in range(CLIENTS)
    ]
    manifests = [image_manifest(config, [layer]) for config in configs]
    barrier = asyncio.Barrier(CLIENTS)
    first_done = asyncio.Event()
    async with clients(cluster, cluster.token(repo)) as (a, b):
        nodes = (a, b)

        async def client(i: int) -> TagPush:
            here, there = nodes[i % 2], nodes[(i + 1) % 2]
            try:
                if i % 4 < 2:
                    await here.push_blob(repo, layer)
                else:  # chunked: started here, half written there, finished here
                    location = await here.start_upload(repo)
                    half = len(layer) // 2
                    location = await there.patch(location, layer[:half], 0)
                    await here.finish(location, layer_digest, layer[half:], half)
                await here.push_blob(repo, configs[i])
                await barrier.wait()
            except BaseException:
                await barrier.abort()  # the others must not wait for this one forever
                raise
            try:
                # Two waves: the second starts as the first PUT completes, into the first's stragglers
                # (the tag's row lock queues them), so some PUTs overlap and some follow others.
                if i >= CLIENTS // 2:
                    await first_done.wait()
                await asyncio.sleep(i % (CLIENTS // 2) * STAGGER)
                started = time.monotonic()
                digest = await here.put_manifest(repo, "latest", manifests[i])
                return TagPush(i, digest, here.label, started, time.monotonic())
            finally:
                first_done.set()

        results = await asyncio.gather(*(client(i) for i in range(CLIENTS)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        broken = [e for e in errors if isinstance(e, asyncio.BrokenBarrierError)]
        real = [e for e in errors if e not in broken]
        assert not real, "\n\n".join(f"client failed: {type(e).__name__}: {e}" for e in real)
        assert not errors, cluster.explain(f"{len(broken)} clients found the barrier broken")
        pushes = sorted((r for r in results if isinstance(r, TagPush)), key=lambda p: p.finished)

        rows = await table_rows(cluster.database_url)
        order = ", ".join(f"#{p.client} via {p.instance} ({p.digest[7:19]})" for p in pushes)
        context = f"manifest PUTs in completion order: {order}\nrows: {json.dumps(rows, indent=1)}"

        # Exactly one row per blob, one link per blob, nothing else.
        config_digests = {digest_of(c) for c in configs}
        blob_digests = Counter(digest for digest, _ in rows["blob"])
        assert blob_digests == Counter({layer_digest, *config_digests}), cluster.explain(
            f"blob rows: {blob_digests}\n{context}"
        )
        blob_ids: dict[str, int] = dict(rows["blob"])
        assert [name for name, _ in rows["repository"]] == [repo], cluster.explain(context)
        repo_id = rows["repository"][0][1]
        assert sorted(rows["repository_blob"]) == sorted([repo_id, i] for i in blob_ids.values()), (
            cluster.explain(f"repository_blob links\n{context}")
        )
        # One manifest row per pushed manifest, each referencing exactly the layer and its own config.
        manifest_ids: dict[str, int] = dict(rows["manifest"])
        assert sorted(manifest_ids) == sorted(digest_of(m) for m in manifests), cluster.explain(context)
        expected_links = sorted(
            [manifest_ids[digest_of(m)], blob_ids[d]]
            for m, c in zip(manifests, configs, strict=True)
            for d in (layer_digest, digest_of(c))
        )
        assert sorted(rows["manifest_blob"]) == expected_links, cluster.explain(f"manifest_blob\n{context}")
        assert rows["manifest_child"] == [], cluster.explain(context)
        # One tag, on one of the pushed manifests.
        assert [name for name, _ in rows["tag"]] == ["latest"], cluster.explain(context)
        winner_id = rows["tag"][0][1]
        winner = next((p for p in pushes if manifest_ids[p.digest] == winner_id), None)
        assert winner is not None, cluster.explain(f"the tag points at manifest id {winner_id}\n{context}")
        late = [p for p in pushes if p.started > winner.finished]
        assert not late, cluster.explain(
            f"the tag names #{winner.client}'s manifest, yet {[f'#{p.client}' for p in late]} began their "
            f"PUTs after #{winner.client}'s had completed (last writer must win)\n{context}"
        )
        assert await upload_leftovers(cluster) == [], cluster.explain(f"upload leftovers\n{context}")

        # What either instance serves: the winner by tag, every manifest and blob by digest.
        for node in nodes:
            await node.expect_manifest(repo, "latest", manifests[winner.client], f"after the race, {context}")
            for body in manifests:
                await node.expect_manifest(repo, digest_of(body), body, "after the race, by digest")
            assert await node.pull_blob(repo, layer_digest) == layer
            for config in configs:
                assert await node.pull_blob(repo, digest_of(config)) == config


async def table_rows(database_url: str) -> dict[str, list[list[Any]]]:
    """The registry's rows, as JSON-friendly lists: what the race left in SQL."""
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as conn:
            queries = {
                "repository": select(t.repository.c.name, t.repository.c.id),
                "blob": select(t.blob.c.digest, t.blob.c.id),
                "repository_blob": select(t.repository_blob.c.repository_id, t.repository_blob.c.blob_id),
                "manifest": select(t.manifest.c.digest, t.manifest.c.id),
                "manifest_blob": select(t.manifest_blob.c.manifest_id, t.manifest_blob.c.blob_id),
                "manifest_child": select(t.manifest_child.c.parent_id, t.manifest_child.c.child_id),
                "tag": select(t.tag.c.name, t.tag.c.manifest_id),
            }
            return {name: [list(row) for row in await conn.execute(query)] for name, query in queries.items()}
    finally:
        await db.close()


# -- 5. a real client: push via one instance, pull via the other --------------------------------


def test_skopeo_multi_arch_pushed_via_one_instance_pulled_via_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    """skopeo copies a two-platform OCI index into A, then reads it back from B: the index and each
    image manifest byte for byte, and a full pull whose every blob hashes to its name."""
    repo = "library/multi"
    images = [
        make_image("instances", arch="amd64", layer_sizes=(300_000, 4096)),
        make_image("instances", arch="arm64", layer_sizes=(200_000,)),
    ]
    index = make_index(images)
    source = tmp_path / "source"
    top = write_layout(source, images, index=index)
    expected = {layout_digest(b) for img in images for b in (img.manifest, img.config, *img.layers)}
    expected.add(top)
    home = tmp_path / "skopeo-home"
    via_a, via_b = make_skopeo(cluster.a.registry, home), make_skopeo(cluster.b.registry, home)
    token = cluster.token(repo)

    via_a.copy(
        f"oci:{source}:latest", cluster.a.registry.ref(f"{repo}:v1"), dest_token=token, all_images=True
    )

    raw = via_b.inspect_raw(cluster.b.registry.ref(f"{repo}:v1"), token)
    assert raw == index, cluster.explain("B serves other index bytes than were pushed via A")
    for image in images:
        child = via_b.inspect_raw(cluster.b.registry.ref(f"{repo}@{image.digest}"), token)
        assert child == image.manifest, cluster.explain(f"B serves other bytes for {image.digest}")
    pulled = tmp_path / "pulled"
    via_b.copy(cluster.b.registry.ref(f"{repo}:v1"), f"oci:{pulled}:v1", src_token=token, all_images=True)
    named = [m["digest"] for m in json.loads((pulled / "index.json").read_text())["manifests"]]
    assert named == [top], cluster.explain(f"pulled via B: {named}, pushed via A: {top}")
    files = set()
    for path in (pulled / "blobs" / "sha256").iterdir():
        digest = "sha256:" + path.name
        assert layout_digest(path.read_bytes()) == digest, cluster.explain(
            f"{path} does not hash to its name"
        )
        files.add(digest)
    assert files == expected, cluster.explain(f"pulled blobs differ: {sorted(files ^ expected)}")
