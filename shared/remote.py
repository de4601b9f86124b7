"""A client of one Docker/OCI v2 registry (another Wharf or a Harbor: kind `harbor`; CNCF
distribution and the like: kind `docker-registry`), for replication.

Sign-in is the registries' standard flow: a request answered 401 with a `Bearer` challenge is
repeated once with a token the challenge's realm gave for the scopes the request needs (Basic
credentials when the endpoint has them, anonymous otherwise); tokens are kept per scope set
until shortly before they expire; once the challenge is known, a token is fetched before the
request (a streamed body cannot be sent twice). A `Basic` challenge gets the credentials.
Harbor's management API (`/api/v2.0/`: projects, their repositories) takes Basic credentials.

Failures are `RemoteError`s: `transient` for what a retry may cure (connection errors, timeouts,
429, 5xx), permanent otherwise; `Unauthorized` (bad credentials, 401 after signing in, 403) and
`NotFound` (404) are permanent. The message names the registry's error code and message.

Blob bytes are read (`open_blob`) and written (`start_upload`, `patch_upload`, `finish_upload`)
in pieces, never whole; `speed_kib` limits them with a token bucket. The copy that drives them is
`wharf_jobservice.replication.copy`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from wharf_shared import media_types
from wharf_shared.bandwidth import TokenBucket
from wharf_shared.digests import Digest, DigestError, is_digest
from wharf_shared.remote_auth import (
    DEFAULT_EXPIRES_IN,
    Challenge,
    TokenCache,
    basic_header,
    parse_challenge,
    scope_key,
)

HARBOR = "harbor"
DOCKER_REGISTRY = "docker-registry"
KINDS = (HARBOR, DOCKER_REGISTRY)

MANIFEST_LIMIT = 4 * 1024 * 1024  # the largest manifest read (the OCI spec's recommended limit)
_ERROR_BODY_LIMIT = 64 * 1024
_PAGE = 100
_ACCEPT = ", ".join(
    [
        media_types.OCI_MANIFEST,
        media_types.OCI_INDEX,
        media_types.DOCKER_MANIFEST,
        media_types.DOCKER_MANIFEST_LIST,
        media_types.DOCKER_SCHEMA1_SIGNED,
        media_types.DOCKER_SCHEMA1,
    ]
)
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30, sock_read=300)
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True)
class Endpoint:
    url: str
    kind: str  # "harbor" | "docker-registry"
    username: str | None = None
    password: str | None = None
    insecure: bool = False  # no TLS certificate verification


class RemoteError(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class Unauthorized(RemoteError):
    """Bad credentials, or not allowed (401 after signing in, 403): permanent."""


class NotFound(RemoteError):
    """404: the repository, manifest, blob or upload is not there."""


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


def _repository_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


CATALOG_SCOPE = "registry:catalog:*"


def _code_and_message(body: bytes) -> str:
    """The first OCI/Harbor error (`{"errors": [{"code", "message"}]}`) of a body, if any."""
    try:
        doc = json.loads(body)
        first = doc["errors"][0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return body[:200].decode("utf-8", "replace").strip()


async def error_of(response: aiohttp.ClientResponse, what: str) -> RemoteError:
    """The error an unexpected answer stands for (the body read, bounded)."""
    try:
        body = await response.content.read(_ERROR_BODY_LIMIT)
    except _NETWORK_ERRORS:
        body = b""
    status = response.status
    detail = _code_and_message(body)
    message = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return Unauthorized(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    return RemoteError(message, status=status, transient=status == 429 or status >= 500)


def _check_digest(reference: str, body: bytes) -> None:
    try:
        expected = Digest.parse(reference)
    except DigestError as exc:
        raise RemoteError(f"invalid digest {reference!r}") from exc
    if str(Digest.of(body, expected.algorithm)) != reference:
        raise RemoteError(f"the manifest's bytes do not match its digest {reference}")


def _media_type(response: aiohttp.ClientResponse, body: bytes | None) -> str:
    header = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if body is not None and header in ("", "application/json", "application/octet-stream", "text/plain"):
        try:
            declared = json.loads(body).get("mediaType")
        except (ValueError, AttributeError):
            declared = None
        if isinstance(declared, str) and declared:
            return declared
    return header


def _range_end(value: str | None) -> int | None:
    """The next offset an upload's `Range: 0-<last>` names ("0-0": nothing yet, or one byte)."""
    if not value:
        return None
    start, sep, end = value.removeprefix("bytes=").partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        return None
    last = int(end)
    return 0 if last == 0 else last + 1


class BlobStream:
    """A blob's bytes from `offset` on, read in pieces (each paced by the bucket)."""

    def __init__(
        self, response: aiohttp.ClientResponse, offset: int, size: int | None, bucket: TokenBucket | None
    ) -> None:
        self._response = response
        self.offset = offset
        self.size = size  # the whole blob's size, when the registry said
        self._bucket = bucket

    async def read(self, n: int) -> bytes:
        try:
            data = await self._response.content.read(n)
        except _NETWORK_ERRORS as exc:
            raise RemoteError(f"reading a blob: {exc!r}", transient=True) from exc
        if self._bucket is not None and data:
            await self._bucket.take(len(data))
        return data


class RemoteRegistry:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        *,
        speed_kib: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if endpoint.kind not in KINDS:
            raise ValueError(f"unknown registry kind {endpoint.kind!r}")
        self.endpoint = endpoint
        self._session = session
        self._base = endpoint.url.rstrip("/")
        self._ssl: bool = not endpoint.insecure
        self._challenge: Challenge | None = None
        self._tokens = TokenCache(clock)
        self._bucket = TokenBucket(speed_kib * 1024, clock=clock, sleep=sleep) if speed_kib > 0 else None

    def __repr__(self) -> str:
        return f"RemoteRegistry({self._base!r}, {self.endpoint.kind})"

    # -- HTTP and sign-in ----------------------------------------------------------------------

    def _url(self, target: str | URL) -> URL:
        if isinstance(target, URL):
            return target if target.is_absolute() else URL(self._base).join(target)
        if target.startswith(("http://", "https://")):
            return URL(target, encoded=True)
        return URL(self._base + target, encoded="%" in target)

    def _basic(self) -> str | None:
        e = self.endpoint
        return basic_header(e.username, e.password or "") if e.username else None

    async def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        token = self._tokens.get(scopes)
        if token is None:
            token = await self._fetch_token(challenge, scopes)
        return f"Bearer {token}"

    async def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        if not challenge.realm:
            raise RemoteError(f"{self._base}: a Bearer challenge without a realm")
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", scope) for scope in scopes]
        basic = self._basic()
        headers = {"Authorization": basic} if basic else {}
        what = f"token from {challenge.realm}"
        try:
            async with self._session.get(
                challenge.realm, params=params, headers=headers, ssl=self._ssl, timeout=_TIMEOUT
            ) as response:
                if response.status != 200:
                    raise await error_of(response, what)
                body = await response.json(content_type=None)
        except _NETWORK_ERRORS as exc:
            raise RemoteError(f"{what}: {exc!r}", transient=True) from exc
        except ValueError as exc:
            raise RemoteError(f"{what}: the answer is not JSON", transient=True) from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RemoteError(f"{what}: the answer holds no token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
        self._tokens.put(scopes, token, lifetime or DEFAULT_EXPIRES_IN)
        return token

    async def _request(
        self,
        method: str,
        target: str | URL,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        replayable: bool = True,
        authenticate: bool = True,
    ) -> aiohttp.ClientResponse:
        """The response (the caller releases it: `async with await self._request(...)`).

        A 401 with a challenge is answered once; a non-replayable body (a stream) is only sent
        with the authorization known beforehand."""
        url = self._url(target)
        key = scope_key(scopes)
        for attempt in (0, 1):
            sent = dict(headers or {})
            authorization = await self._authorization(key) if authenticate else None
            if authorization:
                sent["Authorization"] = authorization
            try:
                response = await self._session.request(
                    method, url, headers=sent, data=data, ssl=self._ssl, timeout=_TIMEOUT
                )
            except _NETWORK_ERRORS as exc:
                raise RemoteError(f"{method} {url}: {exc!r}", transient=True) from exc
            if response.status != 401 or attempt or not replayable or not authenticate:
                return response
            challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
            if challenge is None or challenge.scheme not in ("bearer", "basic"):
                return response
            if challenge.scheme == "basic" and (self._basic() is None or self._challenge == challenge):
                return response
            response.release()
            self._challenge = challenge
            self._tokens.drop(key)
            if challenge.scheme == "bearer" and not key and challenge.scope:
                key = scope_key([challenge.scope])
        raise AssertionError("unreachable")

    async def _api(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json_body: Any = None
    ) -> aiohttp.ClientResponse:
        """Harbor's management API (`/api/v2.0/…`), with Basic credentials."""
        url = URL(self._base + "/api/v2.0" + path)
        if params:
            url = url.with_query(params)
        basic = self._basic()
        headers = {"Authorization": basic} if basic else {}
        try:
            return await self._session.request(
                method, url, headers=headers, json=json_body, ssl=self._ssl, timeout=_TIMEOUT
            )
        except _NETWORK_ERRORS as exc:
            raise RemoteError(f"{method} {url}: {exc!r}", transient=True) from exc

    # -- the registry ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Reachable, and the credentials (if any) good (Unauthorized when they are not)."""
        signed_in = self.endpoint.username is not None
        async with await self._request("GET", "/v2/", authenticate=signed_in) as response:
            if response.status == 200 or (response.status == 401 and not signed_in):
                return
            raise await error_of(response, f"ping {self._base}")

    async def repositories(self) -> AsyncIterator[str]:
        """Every repository the credentials may see."""
        if self.endpoint.kind == HARBOR:
            async for project in self._harbor_pages("/projects", {}):
                name = project.get("name")
                if isinstance(name, str):
                    async for repository in self._harbor_pages(f"/projects/{name}/repositories", {}):
                        if isinstance(repository.get("name"), str):
                            yield repository["name"]
            return
        async for page in self._v2_pages(f"/v2/_catalog?n={_PAGE}", [CATALOG_SCOPE], "catalog"):
            for name in page.get("repositories") or []:
                yield name

    async def _harbor_pages(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        page = 1
        while True:
            query = {**params, "page": str(page), "page_size": str(_PAGE)}
            async with await self._api("GET", path, params=query) as response:
                if response.status != 200:
                    raise await error_of(response, f"GET {path}")
                items = await response.json(content_type=None)
            if not isinstance(items, list):
                raise RemoteError(f"GET {path}: not a list")
            for item in items:
                if isinstance(item, dict):
                    yield item
            if len(items) < _PAGE:
                return
            page += 1

    async def _v2_pages(self, first: str, scopes: list[str], what: str) -> AsyncIterator[dict[str, Any]]:
        """The pages of a `/v2/` listing, following `Link: <…>; rel="next"`."""
        target: str | URL | None = first
        while target is not None:
            async with await self._request("GET", target, scopes=scopes) as response:
                if response.status != 200:
                    raise await error_of(response, what)
                body = await response.json(content_type=None)
                link = response.links.get("next")
                target = URL(str(link["url"])) if link and "url" in link else None
            if isinstance(body, dict):
                yield body

    async def tags(self, repository: str) -> list[str]:
        scopes = [_repository_scope(repository, "pull")]
        found: list[str] = []
        async for page in self._v2_pages(
            f"/v2/{repository}/tags/list?n=1000", scopes, f"tags of {repository}"
        ):
            found.extend(t for t in page.get("tags") or [] if isinstance(t, str))
        return found

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        what = f"manifest {repository}@{reference}"
        async with await self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scopes=[_repository_scope(repository, "pull")],
            headers={"Accept": _ACCEPT},
        ) as response:
            if response.status != 200:
                raise await error_of(response, what)
            try:
                body = await response.content.read(MANIFEST_LIMIT + 1)
                while len(body) <= MANIFEST_LIMIT and (more := await response.content.read(MANIFEST_LIMIT)):
                    body += more
            except _NETWORK_ERRORS as exc:
                raise RemoteError(f"{what}: {exc!r}", transient=True) from exc
            if len(body) > MANIFEST_LIMIT:
                raise RemoteError(f"{what}: larger than {MANIFEST_LIMIT} bytes")
            media_type = _media_type(response, body)
            header = response.headers.get("Docker-Content-Digest")
        if is_digest(reference):
            _check_digest(reference, body)
            return Manifest(reference, media_type, body)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if header and header != digest and media_type in media_types.SCHEMA1:
            digest = header  # schema 1: the digest of the payload without its signatures
        return Manifest(digest, media_type, body)

    async def head_manifest(self, repository: str, reference: str) -> tuple[str, str] | None:
        """(digest, media type) of a manifest, or None when there is none."""
        async with await self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scopes=[_repository_scope(repository, "pull")],
            headers={"Accept": _ACCEPT},
        ) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise await error_of(response, f"manifest {repository}@{reference}")
            digest = response.headers.get("Docker-Content-Digest")
            media_type = _media_type(response, None)
        if not digest:  # some registries do not say on HEAD: read it
            found = await self.get_manifest(repository, reference)
            return found.digest, found.media_type
        return digest, media_type

    async def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        async with await self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scopes=[_repository_scope(repository, "pull,push")],
            headers={"Content-Type": media_type},
            data=body,
        ) as response:
            if response.status not in (200, 201):
                raise await error_of(response, f"PUT manifest {repository}:{reference}")
            return (
                response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
            )

    async def delete_manifest(self, repository: str, reference: str) -> None:
        async with await self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{reference}",
            scopes=[_repository_scope(repository, "pull,delete")],
        ) as response:
            if response.status not in (200, 202, 204):
                raise await error_of(response, f"DELETE manifest {repository}@{reference}")

    async def has_blob(self, repository: str, digest: str) -> bool:
        async with await self._request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scopes=[_repository_scope(repository, "pull")]
        ) as response:
            if response.status == 404:
                return False
            if response.status != 200:
                raise await error_of(response, f"HEAD blob {repository}@{digest}")
            return True

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob `from_repository` holds here without sending it: True when mounted; False
        when the registry would not (the upload it started instead is cancelled)."""
        scopes = [_repository_scope(repository, "pull,push"), _repository_scope(from_repository, "pull")]
        target = URL(self._base + f"/v2/{repository}/blobs/uploads/").with_query(
            {"mount": digest, "from": from_repository}
        )
        async with await self._request("POST", target, scopes=scopes) as response:
            if response.status == 201:
                return True
            if response.status != 202:
                raise await error_of(response, f"mount {digest} into {repository}")
            location = response.headers.get("Location")
        if location:
            await self.cancel_upload(repository, self._upload_url(location))
        return False

    def _upload_url(self, location: str) -> str:
        return str(self._url(location))

    async def start_upload(self, repository: str) -> str:
        """A new upload session; its absolute URL."""
        async with await self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", scopes=[_repository_scope(repository, "pull,push")]
        ) as response:
            if response.status != 202 or not response.headers.get("Location"):
                raise await error_of(response, f"start an upload to {repository}")
            return self._upload_url(response.headers["Location"])

    async def upload_offset(self, repository: str, url: str) -> int | None:
        """How many bytes an upload holds (its `Range`); None when the registry lost it."""
        async with await self._request(
            "GET", url, scopes=[_repository_scope(repository, "pull,push")]
        ) as response:
            if response.status == 404:
                return None
            if response.status not in (200, 204):
                error = await error_of(response, f"upload status in {repository}")
                if response.status < 500:
                    return None  # the registry refuses the session (distribution cancels a bad one)
                raise error
            return _range_end(response.headers.get("Range"))

    async def patch_upload(
        self, repository: str, url: str, body: AsyncIterable[bytes], start: int, length: int
    ) -> str:
        """Send `length` bytes of `body` at `start`; the upload's next URL."""
        bucket = self._bucket

        async def paced() -> AsyncIterator[bytes]:
            async for piece in body:
                if bucket is not None:
                    await bucket.take(len(piece))
                yield piece

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}",
        }
        async with await self._request(
            "PATCH",
            url,
            scopes=[_repository_scope(repository, "pull,push")],
            headers=headers,
            data=paced() if bucket is not None else body,
            replayable=False,
        ) as response:
            if response.status != 202:
                raise await error_of(response, f"upload to {repository} at {start}")
            return self._upload_url(response.headers.get("Location") or url)

    async def finish_upload(self, repository: str, url: str, digest: str) -> None:
        target = self._url(url).update_query({"digest": digest})
        async with await self._request(
            "PUT",
            target,
            scopes=[_repository_scope(repository, "pull,push")],
            headers={"Content-Length": "0"},
        ) as response:
            if response.status not in (201, 204):
                raise await error_of(response, f"finish the upload of {digest} to {repository}")

    async def cancel_upload(self, repository: str, url: str) -> None:
        """Best effort: the registry purges forgotten uploads anyway."""
        try:
            async with await self._request(
                "DELETE", url, scopes=[_repository_scope(repository, "pull,push")]
            ) as response:
                await response.read()
        except RemoteError:
            pass

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: str, offset: int = 0) -> AsyncIterator[BlobStream]:
        """A blob's bytes from `offset` on (a `Range` request; a registry that sends the whole
        blob instead has the first `offset` bytes skipped)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"blob {repository}@{digest}"
        async with await self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scopes=[_repository_scope(repository, "pull")],
            headers=headers,
        ) as response:
            if response.status not in (200, 206):
                raise await error_of(response, what)
            size = response.content_length
            if response.status == 206:
                content_range = response.headers.get("Content-Range", "")
                unit_start, _, total = content_range.partition("/")
                if not unit_start.removeprefix("bytes ").startswith(f"{offset}-"):
                    raise RemoteError(f"{what}: asked from {offset}, got {content_range!r}")
                size = int(total) if total.isdigit() else None
            stream = BlobStream(response, offset, size, self._bucket)
            if response.status == 200 and offset:
                skipped = 0
                while skipped < offset:
                    piece = await BlobStream(response, 0, None, None).read(min(1 << 20, offset - skipped))
                    if not piece:
                        raise RemoteError(f"{what}: shorter than {offset} bytes")
                    skipped += len(piece)
            yield stream

    # -- namespaces -----------------------------------------------------------------------------

    async def ensure_namespace(self, project: str) -> None:
        """Harbor: create the project (private) unless it exists; a registry without projects:
        nothing to do."""
        if self.endpoint.kind != HARBOR:
            return
        async with await self._api("HEAD", "/projects", params={"project_name": project}) as response:
            if response.status == 200:
                return
            if response.status != 404:
                raise await error_of(response, f"look up project {project}")
        body = {"project_name": project, "metadata": {"public": "false"}}
        async with await self._api("POST", "/projects", json_body=body) as response:
            if response.status not in (200, 201, 409):
                raise await error_of(response, f"create project {project}")
