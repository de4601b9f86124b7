"""Peers for replication tests: Wharf sites (the whole suite as processes, `/api/` on) and what a
test needs around them: endpoints (as admin, as the job service), plain-HTTP pushes and reads
that do not go through the client under test, and a recording `Progress`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.images import Image
from tests.support import backends
from tests.support.suite import Suite, start_suite
from wharf_shared.remote import DOCKER_REGISTRY, HARBOR, Endpoint
from wharf_shared.remote_auth import basic_header
from wharf_shared.secrets import JOBSERVICE_USERNAME, jobservice_password

ADMIN_PASSWORD = "Admin-secret-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Site:
    """A Wharf: `url` is its proxy (registry, token service and `/api/` behind it)."""

    suite: Suite

    @property
    def url(self) -> str:
        return self.suite.url

    def endpoint(self, username: str | None = "admin", password: str = ADMIN_PASSWORD) -> Endpoint:
        return Endpoint(self.url, HARBOR, username, password if username else None)

    def jobservice_endpoint(self) -> Endpoint:
        key = (self.suite.data_dir / "secret.key").read_bytes().strip()
        return Endpoint(self.url, HARBOR, JOBSERVICE_USERNAME, jobservice_password(key))


@contextmanager
def wharf_site(tmp: Path) -> Iterator[Site]:
    """A Wharf of its own: a fresh SQLite database, a leased Redis DB, no events consumer."""
    tmp.mkdir(parents=True, exist_ok=True)
    with backends.fresh_database("sqlite", str(tmp)) as database_url, backends.leased_redis_db() as redis_url:
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            ui_hosts=("127.0.0.1",),
            jobservice_hosts=(),
        )
        try:
            yield Site(suite)
        finally:
            suite.stop()


def distribution_endpoint(url: str) -> Endpoint:
    return Endpoint(url, DOCKER_REGISTRY)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Peer:
    """Plain `/v2/` requests to one registry, as admin when it is a Wharf (tokens fetched from its
    `/service/token` directly): how tests push what replication copies, and read what it wrote."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, wharf: bool) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.wharf = wharf

    async def headers(self, repository: str) -> dict[str, str]:
        if not self.wharf:
            return {}
        params = [("service", "wharf-registry"), ("scope", f"repository:{repository}:pull,push,delete")]
        auth = {"Authorization": basic_header("admin", ADMIN_PASSWORD)}
        async with self.session.get(f"{self.url}/service/token", params=params, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            return {"Authorization": f"Bearer {(await resp.json())['token']}"}

    async def blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        url = f"{self.url}/v2/{repository}/blobs/uploads/"
        headers = await self.headers(repository)
        async with self.session.post(url, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
            location = resp.headers["Location"]
        target = location if location.startswith("http") else self.url + location
        sep = "&" if "?" in target else "?"
        async with self.session.put(
            f"{target}{sep}digest={digest}",
            data=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        return digest

    async def big_blob(self, repository: str, size: int, *, piece: int = 1 << 20) -> str:
        """`size` random bytes, streamed in one chunked PATCH (never whole in memory)."""
        hasher = hashlib.sha256()

        async def body() -> AsyncIterator[bytes]:
            left = size
            while left:
                data = os.urandom(min(piece, left))
                hasher.update(data)
                left -= len(data)
                yield data

        headers = await self.headers(repository)
        async with self.session.post(f"{self.url}/v2/{repository}/blobs/uploads/", headers=headers) as resp:
            assert resp.status == 202, await resp.text()
            location = resp.headers["Location"]
        target = location if location.startswith("http") else self.url + location
        async with self.session.patch(
            target, data=body(), headers={**headers, "Content-Type": "application/octet-stream"}
        ) as resp:
            assert resp.status == 202, await resp.text()
            location = resp.headers["Location"]
        target = location if location.startswith("http") else self.url + location
        digest = "sha256:" + hasher.hexdigest()
        sep = "&" if "?" in target else "?"
        async with self.session.put(f"{target}{sep}digest={digest}", headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        return digest

    async def manifest(
        self, repository: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        headers = {**await self.headers(repository), "Content-Type": media_type}
        async with self.session.put(
            f"{self.url}/v2/{repository}/manifests/{reference}", data=body, headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
        return sha256(body)

    async def image(self, repository: str, image: Image, tag: str | None) -> str:
        await self.blob(repository, image.config)
        for layer in image.layers:
            await self.blob(repository, layer)
        return await self.manifest(repository, tag or image.digest, image.manifest)

    async def read_manifest(self, repository: str, reference: str) -> bytes | None:
        accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
        headers = {**await self.headers(repository), "Accept": accept}
        async with self.session.get(
            f"{self.url}/v2/{repository}/manifests/{reference}", headers=headers
        ) as resp:
            if resp.status == 404:
                return None
            assert resp.status == 200, await resp.text()
            return await resp.read()

    async def read_blob(self, repository: str, digest: str) -> bytes:
        headers = await self.headers(repository)
        async with self.session.get(f"{self.url}/v2/{repository}/blobs/{digest}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()


class Stop(Exception):
    """What the recording progress raises to abort a copy."""


@dataclass
class Recorder:
    """A `Progress` that keeps everything; `stop_after`: its check raises once that many bytes
    were streamed."""

    stop_after: int | None = None
    lines: list[str] = field(default_factory=list)
    bytes: int = 0
    checks: int = 0

    async def log(self, line: str) -> None:
        self.lines.append(line)

    async def check(self) -> None:
        self.checks += 1
        if self.stop_after is not None and self.bytes >= self.stop_after:
            raise Stop(f"stopped after {self.bytes} bytes")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
