"""The suite as processes (proxy → token service + registry, PostgreSQL) meets clients that
misbehave: malformed HTTP and request-smuggling attempts sent as raw bytes, slow-loris request
heads, uploads that trickle, `/metrics` asked by whom it should not answer; and every answer
says `Server: Wharf`, on every service.

Smuggling: each case is written to the proxy as raw bytes, in one piece. The proxy must refuse
it (400) or forward exactly one well-formed request (two for the pipelined case); the registry
must never run a request hidden in a body. Every request that reaches the registry is answered
401 with a `WWW-Authenticate` challenge (no token is sent), so the registry's own request count
(its `/metrics`, asked directly) must equal the 401s the client read; the hidden request asks
for `repository:smuggled`, which no answer may ever name. Then fresh requests through the same
proxy (one worker, so its pooled upstream connections are the ones the case used) must each
get their own answer: a request left half-read in a pooled connection would poison them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlencode

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import backends, wire
from tests.support.processes import ServiceProcess
from tests.support.suite import Suite, start_suite

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "front-door-admin-password"
METRICS_TOKEN = "front-door-metrics-token"
HEADER_TIMEOUT = 1.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("front-door")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            extra_env={
                "WHARF_PROXY__WORKERS": "1",
                "WHARF_SERVING__HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
                "WHARF_METRICS__TOKEN": METRICS_TOKEN,
            },
        )
        try:
            yield suite
        finally:
            suite.stop()


def service(suite: Suite, name: str) -> ServiceProcess:
    return {"proxy": suite.proxy, "registry": suite.registries[0], "token": suite.tokens[0]}[name]


SERVICES = ["proxy", "registry", "token"]


def error_code(response: wire.RawResponse) -> str:
    code: str = wire.json_body(response)["errors"][0]["code"]
    return code


# -- every service: malformed HTTP, slow request heads, the Server header ----------------------


@pytest.mark.parametrize("name", SERVICES)
async def test_malformed_http_is_answered_in_json_and_delivered(suite: Suite, name: str) -> None:
    process = service(suite, name)
    head = b"PUT /v2/x/blobs/uploads/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n"
    [response] = await wire.converse(process.host, process.port, head, body_size=16 * MiB)
    assert (response.status, error_code(response), response.headers["Server"]) == (
        400,
        "BAD_REQUEST",
        "Wharf",
    )
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["event"] == "malformed_request"]
    assert refused
    assert all(line["level"] == "info" and "exception" not in line for line in refused)
    assert "Traceback" not in process.log_path.read_text()


@pytest.mark.parametrize("name", SERVICES)
async def test_a_request_head_that_never_completes_gets_408(suite: Suite, name: str) -> None:
    process = service(suite, name)
    start = time.monotonic()
    [response] = await wire.converse(process.host, process.port, b"GET /health HTTP/1.1\r\nHost: a\r\nX-Sl")
    assert (response.status, error_code(response)) == (408, "REQUEST_TIMEOUT")
    assert HEADER_TIMEOUT <= time.monotonic() - start < HEADER_TIMEOUT + 5


@pytest.mark.parametrize("name", SERVICES)
async def test_every_answer_says_wharf(suite: Suite, name: str) -> None:
    process = service(suite, name)
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/v2/", "/service/token", "/nowhere"):
            async with session.get(process.url + path) as response:
                assert response.headers.getall("Server") == ["Wharf"], (path, response.status)


# -- /metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
async def test_metrics_only_for_allowed_callers(suite: Suite, name: str) -> None:
    process = service(suite, name)
    relayed = {"X-Forwarded-For": "203.0.113.7"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{process.url}/metrics") as direct:  # loopback: allowed
            assert direct.status == 200
        async with session.get(f"{process.url}/metrics", headers=relayed) as refused:
            assert refused.status == 404
            assert (await refused.json())["errors"]  # the JSON 404 of a route that does not exist
        authorized = {**relayed, "Authorization": f"Bearer {METRICS_TOKEN}"}
        async with session.get(f"{process.url}/metrics", headers=authorized) as allowed:
            assert allowed.status == 200
    if name == "proxy":  # through the front door, a service's `/metrics` is out of reach
        traversal = wire.request_head("GET", "/v2/../metrics")
        [response] = await wire.converse(process.host, process.port, traversal)
        assert response.status == 400


# -- a slow but steady upload ---------------------------------------------------------------------


async def push_token(suite: Suite, repository: str) -> str:
    query = urlencode({"service": "wharf-registry", "scope": f"repository:{repository}:pull,push"})
    basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{suite.url}/service/token?{query}", headers={"Authorization": f"Basic {basic}"}
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["token"]
        return token


def absolute(suite: Suite, location: str) -> str:
    return suite.url + location if location.startswith("/") else location


async def test_an_upload_trickling_longer_than_the_header_timeout_succeeds(suite: Suite) -> None:
    repository = "library/trickle"
    auth = {"Authorization": f"Bearer {await push_token(suite, repository)}"}
    blob = hashlib.sha256(b"trickle").digest() * 64
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    pieces = 8

    async def trickle() -> AsyncIterator[bytes]:
        for i in range(pieces):
            yield blob[i * len(blob) // pieces : (i + 1) * len(blob) // pieces]
            await asyncio.sleep(HEADER_TIMEOUT / 3)  # the slow client: the pace is what is tested

    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.post(f"{suite.url}/v2/{repository}/blobs/uploads/") as started:
            assert started.status == 202, await started.text()
            location = absolute(suite, started.headers["Location"])
        start = time.monotonic()
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))}
        async with session.patch(location, data=trickle(), headers=headers) as patched:
            assert patched.status == 202, await patched.text()
            location = absolute(suite, patched.headers["Location"])
        assert time.monotonic() - start > 2 * HEADER_TIMEOUT
        separator = "&" if "?" in location else "?"
        async with session.put(f"{location}{separator}digest={digest}") as finished:
            assert finished.status == 201, await finished.text()
        async with session.get(f"{suite.url}/v2/{repository}/blobs/{digest}") as pulled:
            assert await pulled.read() == blob


# -- request smuggling ----------------------------------------------------------------------------

HIDDEN = b"GET /v2/smuggled/tags/list HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n"
START = b"POST /v2/library/desync/blobs/uploads/ HTTP/1.1\r\nHost: registry.test\r\n"


def chunked(data: bytes, size_line: bytes | None = None) -> bytes:
    size = size_line if size_line is not None else b"%x" % len(data)
    return size + b"\r\n" + data + b"\r\n0\r\n\r\n"


def request(framing: bytes, body: bytes, *, start: bytes = START) -> bytes:
    return start + framing + b"Connection: close\r\n\r\n" + body


N = b"%d" % len(HIDDEN)
CL = b"Content-Length: " + N + b"\r\n"
TE = b"Transfer-Encoding: chunked\r\n"

# (case, bytes, requests the registry answers: 0 means the proxy refuses it with 400)
CASES = [
    ("CL.TE", request(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + HIDDEN), 0),
    ("TE.CL", request(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunked(HIDDEN)), 0),
    ("TE xchunked", request(b"Transfer-Encoding: xchunked\r\nContent-Length: " + N + b"\r\n", HIDDEN), 0),
    ("TE xchunked alone", request(b"Transfer-Encoding: xchunked\r\n", chunked(HIDDEN)), 0),
    ("TE leading space", request(b"Transfer-Encoding:  chunked\r\n", chunked(HIDDEN)), 1),
    ("TE tab", request(b"Transfer-Encoding:\tchunked\r\n", chunked(HIDDEN)), 1),
    ("TE chunked, identity", request(b"Transfer-Encoding: chunked, identity\r\n", chunked(HIDDEN)), 0),
    ("TE identity", request(b"Transfer-Encoding: identity\r\nContent-Length: " + N + b"\r\n", HIDDEN), 0),
    (
        "TE twice",
        request(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked(HIDDEN)),
        0,
    ),
    (
        "TE twice, one bogus",
        request(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", chunked(HIDDEN)),
        0,
    ),
    ("TE obs-fold", request(b"Transfer-Encoding:\r\n chunked\r\n", chunked(HIDDEN)), 0),
    ("TE space before colon", request(b"Transfer-Encoding : chunked\r\n", chunked(HIDDEN)), 0),
    ("CL plus", request(b"Content-Length: +" + N + b"\r\n", HIDDEN), 0),
    ("CL spaces", request(b"Content-Length:   " + N + b"  \r\n", HIDDEN), 1),
    ("CL leading zeros", request(b"Content-Length: 000" + N + b"\r\n", HIDDEN), 1),
    ("CL two values", request(b"Content-Length: " + N + b", " + N + b"\r\n", HIDDEN), 0),
    ("CL twice", request(b"Content-Length: " + N + b"\r\nContent-Length: " + N + b"\r\n", HIDDEN), 0),
    ("CL twice, differing", request(b"Content-Length: 0\r\nContent-Length: " + N + b"\r\n", HIDDEN), 0),
    ("CL obs-fold", request(b"Content-Length: 0\r\n " + N + b"\r\n", HIDDEN), 0),
    (
        "chunk extension",
        request(b"Transfer-Encoding: chunked\r\n", chunked(HIDDEN, b'%x;ext="x"' % len(HIDDEN))),
        1,
    ),
    ("chunk size garbage", request(b"Transfer-Encoding: chunked\r\n", chunked(HIDDEN, b"5x")), 0),
    ("chunk size negative", request(b"Transfer-Encoding: chunked\r\n", chunked(HIDDEN, b"-5")), 0),
    ("chunk size overflow", request(b"Transfer-Encoding: chunked\r\n", chunked(HIDDEN, b"1" + b"0" * 20)), 0),
    ("bare LF", request(b"Content-Length: " + N + b"\n", HIDDEN).replace(b"\r\n", b"\n"), 0),
    (
        "HTTP/1.0 with TE",
        request(
            b"Transfer-Encoding: chunked\r\n", chunked(HIDDEN), start=START.replace(b"HTTP/1.1", b"HTTP/1.0")
        ),
        1,
    ),
    (
        "GET with a body",
        request(
            b"Content-Length: " + N + b"\r\n", HIDDEN, start=b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n"
        ),
        1,
    ),
    (
        "pipelined",
        b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n\r\n" + request(b"Content-Length: 0\r\n", b""),
        2,
    ),
]


def registry_requests(suite: Suite) -> int:
    """Requests the registry has answered (health checks and `/metrics` aside), from its `/metrics`."""
    with urllib.request.urlopen(f"{suite.registries[0].url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    total = 0
    for family in text_string_to_metric_families(text):
        if family.name == "wharf_registry_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["route"] not in (
                    "/health",
                    "/health/ready",
                    "/metrics",
                ):
                    total += int(sample.value)
    return total


def from_registry(response: wire.RawResponse) -> bool:
    return response.status == 401 and "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(("data", "forwarded"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_no_request_smuggling(suite: Suite, data: bytes, forwarded: int) -> None:
    proxy = suite.proxy
    before = await asyncio.to_thread(registry_requests, suite)
    responses = await wire.converse(proxy.host, proxy.port, data)
    assert responses, "no answer"
    for response in responses:
        assert response.headers["Server"] == "Wharf"
        assert "smuggled" not in response.headers.get("WWW-Authenticate", "")
        if not from_registry(response):
            assert (response.status, error_code(response)) == (400, "BAD_REQUEST")
    answered = sum(1 for response in responses if from_registry(response))
    if forwarded == 0:
        assert [r.status for r in responses] == [400]
    assert answered == forwarded
    # Requests after it, through the same proxy worker and its pooled upstream connections.
    for _ in range(3):
        [after] = await wire.converse(proxy.host, proxy.port, wire.request_head("GET", "/v2/"))
        assert from_registry(after)
        assert "smuggled" not in after.headers["WWW-Authenticate"]
    assert await asyncio.to_thread(registry_requests, suite) - before == answered + 3
