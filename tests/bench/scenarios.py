"""The scenarios, each run the same way against every target.

| key          | what                                                                  | figure   |
|--------------|-----------------------------------------------------------------------|----------|
| push-mono    | one large blob in one request body (see `upload_blob`)                | MiB/s    |
| push-chunked | the same size as `--chunk-mib` PATCHes (Content-Range), then PUT      | MiB/s    |
| pull         | N clients (8) each GETting one large blob over and over               | MiB/s    |
| manifest     | wrk, 64 connections, GET `/v2/bench/manifest/manifests/latest`        | req/s    |
| small-push   | N clients (16) pushing tiny unique images, 7 requests each            | images/s |
| tags         | wrk, 64 connections, GET `/v2/bench/tags/tags/list?n=100` (50 tags)   | req/s    |
| catalog      | wrk, 64 connections, GET `/v2/_catalog?n=100` (50 repositories)       | req/s    |
| base         | wrk, 64 connections, GET `/v2/`: each server's floor, no target        | req/s    |
| token        | wrk, 32 connections, GET `/service/token` (Basic, warm credentials)    | tokens/s |
| mixed        | N clients (32) for 60 s looping over a weighted mix of pushes, pulls,  | ops/s    |
|              | deletes, mounts, abandoned and cancelled uploads (`mixed.py`)          |          |

`token` runs against Wharf with token auth only (the reference has no token service): its one
token process issues tokens to a developer of a private project for
`repository:<project>/app:pull,push`, the grants resolved from the database on every request;
the warm-up run leaves the credentials in the credential cache, so the password KDF is not
timed. Its target is absolute (`target_value`), not a ratio to the reference.

Targets are ratios to the reference. Wharf's registry alone (`wharf-none`, `wharf-token`) has
issue 3's (`target_ratio`); the full path through the proxy (`wharf-proxy`, and `wharf-run`, the
same path as `make run` starts it) has issue 10's (`proxy_ratio`: blob push >= 2.5x monolithic,
>= 2x chunked, pull >= 0.9x, manifest GET, tags and catalog >= 2x, small push and the mixed load
>= 1.5x, the mixed load with no error). The token scenario does not run on the full path.

Each timed run starts once the machine is quiet (`settle`), and records the CPU the server
process tree, the client (this process, or wrk) and the rest of the machine used, so a figure
taken while something else ran is visible as such; `--rounds` repeats everything and the
median is reported.

A small-image push is the 7 requests docker sends for a new one-layer image (`pushes.py`).

"Monolithic" push is one request carrying the whole body: `POST …/uploads/?digest=` where the
registry completes it in that request (Wharf), otherwise the spec's two-request form `POST`
(202, no body) then `PUT <Location>?digest=` with the body (distribution 2.8 ignores `?digest=`
on POST). A probe decides per target; the report names the form used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.bench import mixed
from tests.bench.http import Connection, HTTPError, Response, expect
from tests.bench.machine import machine_busy_seconds, settle
from tests.bench.pushes import (
    ACCEPT,
    OCTETS,
    PUSH_REQUESTS,
    SmallImage,
    push_small,
    sha256,
    small_image,
    with_digest,
)
from tests.bench.targets import CATALOG_ACCESS, FULL_PATH, Target, repo_access
from tests.bench.wrk import WrkResult, run_wrk
from tests.support.oci import DOCKER_MANIFEST

MiB = 1024 * 1024


@dataclass
class Config:
    blob_bytes: int
    chunk_bytes: int
    reps: int
    seconds: float
    warmup: float
    wrk_binary: str
    settle_seconds: float = 15.0
    wrk_connections: int = 64
    wrk_threads: int = 2
    pull_clients: int = 8
    push_clients: int = 16
    token_clients: int = 32
    catalog_repos: int = 50
    tags: int = 50
    mixed_clients: int = 32
    mixed_seconds: float = 60.0
    mixed_shared: int = 8  # images in the shared repository the mixed load pulls and mounts from
    seed: int = 1  # the mixed load's choices and images


@dataclass
class Measurement:
    scenario: str
    target: str
    value: float | None
    unit: str
    samples: list[float] = field(default_factory=list)
    seconds: float = 0.0
    latency_ms: dict[str, float] | None = None
    server_cores: float | None = None
    client_cores: float | None = None
    other_cores: float | None = None  # the rest of the machine: Redis, SQL, other users
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """Wall time and CPU seconds of one timed run; `background` is the load just before it."""

    background: float
    seconds: float = 0.0
    server: float = 0.0
    client: float = 0.0
    machine: float = 0.0

    def cores(self) -> dict[str, float]:
        s = self.seconds or 1.0
        other = max(0.0, self.machine - self.server - self.client)
        return {"server_cores": self.server / s, "client_cores": self.client / s, "other_cores": other / s}


Profiler = Callable[[Target, str], AbstractContextManager[object]]


def no_profiler(_target: Target, _scenario: str) -> AbstractContextManager[object]:
    return nullcontext()


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    unit: str
    target_ratio: float | None  # None: shown for calibration, no target
    run: Callable[[Bench, Target], Measurement]
    target_value: float | None = None  # an absolute target in `unit`, for figures with no reference
    needs_token_service: bool = False  # runs only against targets with Wharf's token service
    proxy_ratio: float | None = None  # the full path's target (issue 10), a ratio to the reference

    def runs_on(self, target: Target) -> bool:
        return not self.needs_token_service or target.token_service is not None

    def ratio_for(self, target: str) -> float | None:
        """The target ratio to the reference that `target`'s figure is judged by (None: none)."""
        return self.proxy_ratio if target in FULL_PATH else self.target_ratio

    def value_for(self, target: str) -> float | None:
        """The absolute target for `target`'s figure (None: none)."""
        return None if target in FULL_PATH else self.target_value


# -- shared client pieces -----------------------------------------------------------------------


def upload_blob(
    conn: Connection,
    target: Target,
    repo: str,
    data: bytes | bytearray | memoryview,
    digest: str,
    headers: dict[str, str],
) -> None:
    """One request body: single `POST ?digest=` where supported, else `POST` then `PUT ?digest=`."""
    base = f"/v2/{repo}/blobs/uploads/"
    body = memoryview(data)
    if target.single_post:
        expect(
            conn.request("POST", with_digest(base, digest), headers={**headers, **OCTETS}, body=body),
            201,
            what=f"POST {repo} blob ?digest=",
        )
        return
    started = expect(conn.request("POST", base, headers=headers), 202, what=f"POST {repo} upload")
    location = conn.target(started.header("Location"))
    expect(
        conn.request("PUT", with_digest(location, digest), headers={**headers, **OCTETS}, body=body),
        201,
        what=f"PUT {repo} blob",
    )


def upload_chunked(
    conn: Connection,
    repo: str,
    data: bytes | bytearray | memoryview,
    digest: str,
    chunk: int,
    headers: dict[str, str],
) -> None:
    """`POST`, one `PATCH` per chunk with `Content-Range`, then `PUT ?digest=` without a body."""
    body = memoryview(data)
    started = expect(
        conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers=headers), 202, what=f"POST {repo} upload"
    )
    location = conn.target(started.header("Location"))
    for offset in range(0, len(body), chunk):
        piece = body[offset : offset + chunk]
        patched = expect(
            conn.request(
                "PATCH",
                location,
                headers={**headers, **OCTETS, "Content-Range": f"{offset}-{offset + len(piece) - 1}"},
                body=piece,
            ),
            202,
            what=f"PATCH {repo} at {offset}",
        )
        location = conn.target(patched.header("Location"))
    expect(conn.request("PUT", with_digest(location, digest), headers=headers), 201, what=f"PUT {repo} blob")


def seed_image(conn: Connection, target: Target, repo: str, tags: list[str], image: SmallImage) -> None:
    """Push `image` to `repo` (blobs once) and point every tag in `tags` at it."""
    auth = target.auth(repo_access(repo))
    for blob in (image.layer, image.config):
        upload_blob(conn, target, repo, blob, sha256(blob), auth)
    for tag in tags:
        expect(
            conn.request(
                "PUT",
                f"/v2/{repo}/manifests/{tag}",
                headers={**auth, "Content-Type": DOCKER_MANIFEST},
                body=image.manifest,
            ),
            201,
            what=f"PUT {repo}:{tag}",
        )


def probe_single_post(target: Target) -> bool:
    """Does the target complete `POST …/uploads/?digest=` with the body (201), or ignore it (202)?"""
    repo = "bench/cat-000"  # a repository the catalog scenario makes anyway
    data = b"wharf-bench probe " + uuid.uuid4().hex.encode()
    auth = target.auth(repo_access(repo))
    with target.connect() as conn:
        answer = conn.request(
            "POST",
            with_digest(f"/v2/{repo}/blobs/uploads/", sha256(data)),
            headers={**auth, **OCTETS},
            body=data,
        )
        if answer.status == 201:
            return True
        expect(answer, 202, what="POST ?digest= probe")
        conn.request("DELETE", conn.target(answer.header("Location")), headers=auth)
        return False


class ErrorBox:
    """The first exception any worker thread raised."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def put(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc


def run_threads(count: int, work: Callable[[int, threading.Barrier], None]) -> None:
    barrier = threading.Barrier(count + 1)
    errors = ErrorBox()

    def body(index: int) -> None:
        try:
            work(index, barrier)
        except BaseException as exc:
            errors.put(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,), daemon=True, name=f"bench-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        barrier.wait()
    for thread in threads:
        thread.join()
    if errors.error is not None:
        raise errors.error


def with_cores(measurement: Measurement, cores: dict[str, float]) -> Measurement:
    measurement.server_cores = cores["server_cores"]
    measurement.client_cores = cores["client_cores"]
    measurement.other_cores = cores["other_cores"]
    return measurement


def median_cores(usages: list[Usage]) -> dict[str, float]:
    per = [u.cores() for u in usages]
    return {key: statistics.median(c[key] for c in per) for key in per[0]}


def background(usages: list[Usage]) -> dict[str, float]:
    """The highest load seen just before a timed run (cores): above ~0.25 the machine was not quiet."""
    return {"background_cores": round(max(u.background for u in usages), 2)}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


# -- the bench ------------------------------------------------------------------------------------


class Bench:
    """Runs scenarios against targets; holds the large blob the MiB/s scenarios share."""

    def __init__(self, config: Config, profiler: Profiler = no_profiler) -> None:
        self.config = config
        self.profiler = profiler
        self._blob: bytearray | None = None
        self._mixed_runs: Counter[str] = Counter()  # per target: each round pushes new images

    def blob(self, label: str) -> tuple[bytearray, str]:
        """The large blob, its first 32 bytes rewritten so each push is new content; (data, digest)."""
        if self._blob is None:
            self._blob = bytearray(os.urandom(self.config.blob_bytes))
        self._blob[:32] = hashlib.sha256(f"{label}/{uuid.uuid4()}".encode()).digest()
        return self._blob, sha256(self._blob)

    def timed(self, target: Target, scenario: str, work: Callable[[], Any]) -> tuple[Any, Usage]:
        """Run `work` on a quiet machine, under the profiler: (its result, time and CPU used)."""
        usage = Usage(background=settle(self.config.settle_seconds))
        with self.profiler(target, scenario):
            machine0, server0, client0 = machine_busy_seconds(), target.cpu_seconds(), time.process_time()
            t0 = time.perf_counter()
            result = work()
            usage.seconds = time.perf_counter() - t0
            usage.server = target.cpu_seconds() - server0
            usage.client = time.process_time() - client0
            usage.machine = machine_busy_seconds() - machine0
        return result, usage

    # -- blob push -------------------------------------------------------------------------------

    def push(self, target: Target, scenario: str, *, chunked: bool) -> Measurement:
        cfg = self.config
        repo = "bench/push"
        auth = target.auth(repo_access(repo))
        samples: list[float] = []
        usages: list[Usage] = []
        with target.connect() as conn:
            for rep in range(cfg.reps):
                data, digest = self.blob(f"{target.key}/{scenario}/{rep}")
                os.sync()  # start each push with no dirty pages from earlier work

                def work(data: bytearray = data, digest: str = digest) -> None:
                    if chunked:
                        upload_chunked(conn, repo, data, digest, cfg.chunk_bytes, auth)
                    else:
                        upload_blob(conn, target, repo, data, digest, auth)

                _, usage = self.timed(target, scenario, work)
                head = expect(
                    conn.request("HEAD", f"/v2/{repo}/blobs/{digest}", headers=auth),
                    200,
                    what="HEAD pushed blob",
                )
                if int(head.header("Content-Length", "-1")) != len(data):
                    raise HTTPError(f"pushed blob has size {head.header('Content-Length')}, sent {len(data)}")
                samples.append(len(data) / MiB / usage.seconds)
                usages.append(usage)
        form = (
            f"{cfg.chunk_bytes // MiB} MiB PATCHes"
            if chunked
            else ("POST ?digest=" if target.single_post else "POST + PUT ?digest=")
        )
        return with_cores(
            Measurement(
                scenario,
                target.key,
                statistics.median(samples),
                "MiB/s",
                samples=samples,
                seconds=sum(u.seconds for u in usages),
                detail={
                    "form": form,
                    "blob_mib": cfg.blob_bytes / MiB,
                    "reps": cfg.reps,
                    **background(usages),
                },
            ),
            median_cores(usages),
        )

    def push_mono(self, target: Target) -> Measurement:
        return self.push(target, "push-mono", chunked=False)

    def push_chunked(self, target: Target) -> Measurement:
        return self.push(target, "push-chunked", chunked=True)

    # -- blob pull -------------------------------------------------------------------------------

    def pull(self, target: Target) -> Measurement:
        cfg = self.config
        repo = "bench/pull"
        auth = target.auth(repo_access(repo, "pull", "push"))
        data, digest = self.blob(f"{target.key}/pull")
        size = len(data)
        path = f"/v2/{repo}/blobs/{digest}"
        with target.connect() as conn:
            upload_blob(conn, target, repo, data, digest, auth)
            # One verified pull: right bytes, and the blob is in the page cache for both registries.
            hasher = hashlib.sha256()
            status, received, _ = conn.stream_get(path, headers=auth, on_data=hasher.update)
            if status != 200 or received != size or "sha256:" + hasher.hexdigest() != digest:
                raise HTTPError(
                    f"verification pull: HTTP {status}, {received} of {size} bytes, digest mismatch?"
                )
        os.sync()
        totals = [0] * cfg.pull_clients
        pulls = [0] * cfg.pull_clients
        window: dict[str, float] = {}

        def client(index: int, barrier: threading.Barrier) -> None:
            with target.connect() as conn:
                barrier.wait()
                deadline = window["deadline"]
                while time.monotonic() < deadline:
                    status, received, complete = conn.stream_get(path, headers=auth, deadline=deadline)
                    if status != 200:
                        raise HTTPError(f"GET blob: HTTP {status}")
                    totals[index] += received
                    pulls[index] += complete

        def work() -> None:
            window["deadline"] = time.monotonic() + cfg.seconds
            run_threads(cfg.pull_clients, client)

        _, usage = self.timed(target, "pull", work)
        return with_cores(
            Measurement(
                "pull",
                target.key,
                sum(totals) / MiB / usage.seconds,
                "MiB/s",
                seconds=usage.seconds,
                detail={
                    "blob_mib": size / MiB,
                    "clients": cfg.pull_clients,
                    "complete_pulls": sum(pulls),
                    **background([usage]),
                },
            ),
            usage.cores(),
        )

    # -- request rates with wrk --------------------------------------------------------------------

    def wrk(
        self,
        target: Target,
        scenario: str,
        path: str,
        headers: dict[str, str],
        check: Callable[[Response], None],
        *,
        server: Target | None = None,
        connections: int | None = None,
        unit: str = "req/s",
    ) -> Measurement:
        """`server` (default: `target`) is the process that answers: the one loaded, timed and
        profiled; the figure is reported under `target`."""
        cfg = self.config
        server = server or target
        connections = connections or cfg.wrk_connections
        with server.connect() as conn:
            check(conn.request("GET", path, headers=headers))
        url = server.url + path

        def load(seconds: float) -> WrkResult:
            return run_wrk(
                cfg.wrk_binary,
                url,
                headers=headers,
                connections=connections,
                threads=cfg.wrk_threads,
                seconds=seconds,
            )

        if cfg.warmup > 0:
            load(cfg.warmup)
        result, usage = self.timed(server, scenario, lambda: load(cfg.seconds))
        usage.client = result.client_cpu_seconds  # wrk's, not this process's
        measurement = with_cores(
            Measurement(
                scenario,
                target.key,
                result.rate,
                unit,
                seconds=result.seconds,
                latency_ms={
                    "p50": result.p50_ms,
                    "p90": result.p90_ms,
                    "p99": result.p99_ms,
                    "max": result.max_ms,
                },
                detail={
                    "requests": result.requests,
                    "connections": connections,
                    "errors": result.errors,
                    **background([usage]),
                },
            ),
            usage.cores(),
        )
        if result.failed:
            measurement.error = f"{result.failed} failed requests {result.errors}"
        return measurement

    def manifest(self, target: Target) -> Measurement:
        repo = "bench/manifest"
        image = small_image(f"manifest/{uuid.uuid4()}")
        with target.connect() as conn:
            seed_image(conn, target, repo, ["latest"], image)

        def check(response: Response) -> None:
            expect(response, 200, what="GET manifest")
            if response.header("Docker-Content-Digest") != image.digest or response.body != image.manifest:
                raise HTTPError("GET manifest returned other bytes than were pushed")

        headers = {**target.auth(repo_access(repo, "pull")), "Accept": ACCEPT}
        return self.wrk(target, "manifest", f"/v2/{repo}/manifests/latest", headers, check)

    def tags(self, target: Target) -> Measurement:
        repo = "bench/tags"
        names = [f"t{i:03d}" for i in range(self.config.tags)]
        with target.connect() as conn:
            seed_image(conn, target, repo, names, small_image(f"tags/{uuid.uuid4()}"))

        def check(response: Response) -> None:
            expect(response, 200, what="GET tags list")
            if sorted(json.loads(response.body)["tags"]) != names:
                raise HTTPError("tags list does not hold the pushed tags")

        headers = target.auth(repo_access(repo, "pull"))
        return self.wrk(target, "tags", f"/v2/{repo}/tags/list?n=100", headers, check)

    def catalog(self, target: Target) -> Measurement:
        image = small_image(f"catalog/{uuid.uuid4()}")
        repos = [f"bench/cat-{i:03d}" for i in range(self.config.catalog_repos)]
        with target.connect() as conn:
            for repo in repos:
                seed_image(conn, target, repo, ["latest"], image)

        def check(response: Response) -> None:
            expect(response, 200, what="GET catalog")
            listed = set(json.loads(response.body)["repositories"])
            if not set(repos) <= listed:
                raise HTTPError(f"catalog lacks {len(set(repos) - listed)} of the pushed repositories")

        return self.wrk(target, "catalog", "/v2/_catalog?n=100", target.auth(CATALOG_ACCESS), check)

    def base(self, target: Target) -> Measurement:
        """The cheapest authenticated request each registry serves: its framework's floor."""

        def check(response: Response) -> None:
            expect(response, 200, what="GET /v2/")

        return self.wrk(target, "base", "/v2/", target.auth(), check)

    # -- token issuance -------------------------------------------------------------------------------

    def token(self, target: Target) -> Measurement:
        """Tokens from Wharf's token service: Basic credentials (cached after the first request),
        a private project's repository whose grants come from the user's membership."""
        service = target.token_service
        if service is None:
            raise HTTPError(f"{target.key} has no token service")
        repo = f"{service.project}/app"
        scope = f"repository:{repo}:pull,push"
        path = "/service/token?" + urlencode({"service": service.service, "scope": scope}, safe=":/,")
        basic = base64.b64encode(f"{service.username}:{service.password}".encode()).decode()

        def check(response: Response) -> None:
            expect(response, 200, what="GET /service/token")
            token = json.loads(response.body).get("token")
            if not isinstance(token, str) or not token:
                raise HTTPError(f"token answer without a token: {response.body[:200]!r}")
            grant = service.verifier.verify(token)
            if grant.subject != service.username:
                raise HTTPError(f"token for {grant.subject!r}, not {service.username!r}")
            if not all(grant.allows("repository", repo, action) for action in ("pull", "push")):
                raise HTTPError(f"the token does not grant {scope}: {grant.access}")

        # The first request (the check) pays the password KDF and fills the credential cache.
        return self.wrk(
            target,
            "token",
            path,
            {"Authorization": f"Basic {basic}"},
            check,
            server=service.server,
            connections=self.config.token_clients,
            unit="tokens/s",
        )

    # -- small-image pushes -------------------------------------------------------------------------

    def small_push(self, target: Target) -> Measurement:
        cfg = self.config
        nonce = uuid.uuid4().hex[:8]
        done = [0] * cfg.push_clients
        latencies: list[list[float]] = [[] for _ in range(cfg.push_clients)]
        window: dict[str, float] = {}

        def client(index: int, barrier: threading.Barrier) -> None:
            repo = f"bench/small-{index:02d}"
            auth = target.auth(repo_access(repo))
            images = _images(f"{nonce}/{index}")
            with target.connect() as conn:
                conn.request("GET", "/v2/", headers=auth)  # connect before the clock starts
                barrier.wait()
                deadline = window["deadline"]
                while (start := time.monotonic()) < deadline:
                    tag, image = next(images)
                    push_small(conn, repo, tag, image, auth)
                    finished = time.monotonic()
                    if finished <= deadline:
                        done[index] += 1
                        latencies[index].append((finished - start) * 1000)

        def work() -> None:
            window["deadline"] = time.monotonic() + cfg.seconds
            run_threads(cfg.push_clients, client)

        _, usage = self.timed(target, "small-push", work)
        # The clock stops when the last image in flight at the deadline finishes; count to the deadline.
        return with_cores(
            Measurement(
                "small-push",
                target.key,
                sum(done) / cfg.seconds,
                "images/s",
                seconds=cfg.seconds,
                latency_ms=percentiles([v for per in latencies for v in per]),
                detail={
                    "images": sum(done),
                    "clients": cfg.push_clients,
                    "requests_per_image": PUSH_REQUESTS,
                    **background([usage]),
                },
            ),
            usage.cores(),
        )

    # -- mixed load -----------------------------------------------------------------------------------

    def mixed(self, target: Target) -> Measurement:
        """`mixed_clients` clients for `mixed_seconds`, each looping over `mixed.WEIGHTS` (see
        `mixed.py`); the figure is operations completed per second, errors counted beside it."""
        cfg = self.config
        self._mixed_runs[target.key] += 1
        seed = f"{cfg.seed}/{self._mixed_runs[target.key]}"
        shared = [
            mixed.Image(mixed.SHARED_REPO, f"s{i}", small_image(f"shared/{seed}/{i}"))
            for i in range(cfg.mixed_shared)
        ]
        with target.connect() as conn:
            for image in shared:
                seed_image(conn, target, image.repo, [image.tag], image.content)
        tag_delete = probe_tag_delete(target)
        clients: list[mixed.MixedClient] = []
        window: dict[str, float] = {}

        def client(index: int, barrier: threading.Barrier) -> None:
            own, mounts = mixed.repo_names(index)
            access = (
                repo_access(own, "pull", "push", "delete"),
                repo_access(mounts, "pull", "push"),
                repo_access(mixed.SHARED_REPO, "pull"),
            )
            with target.connect() as conn:
                auth = target.auth(*access)  # one login per client, before the clock starts
                conn.request("GET", "/v2/", headers=auth)
                state = mixed.MixedClient(conn, auth, index, seed, shared, tag_delete=tag_delete)
                clients.append(state)
                barrier.wait()
                deadline = window["deadline"]
                while time.monotonic() < deadline:
                    state.step(deadline)

        def work() -> None:
            window["deadline"] = time.monotonic() + cfg.mixed_seconds
            run_threads(cfg.mixed_clients, client)

        _, usage = self.timed(target, "mixed", work)
        done = sum((c.done for c in clients), Counter[str]())
        errors = sum((c.errors for c in clients), Counter[str]())
        latencies = {
            kind: percentiles([v for c in clients for v in c.latencies.get(kind, [])])
            for kind in mixed.WEIGHTS
        }
        # The clock stops when the last operation in flight at the deadline ends; count to the deadline.
        return with_cores(
            Measurement(
                "mixed",
                target.key,
                sum(done.values()) / cfg.mixed_seconds,
                "ops/s",
                seconds=cfg.mixed_seconds,
                latency_ms=percentiles([v for c in clients for per in c.latencies.values() for v in per]),
                detail={
                    "clients": cfg.mixed_clients,
                    "seed": seed,
                    "tag_delete": tag_delete,
                    "operations": dict(done),
                    "errors": sum(errors.values()),
                    "errors_by_operation": dict(errors),
                    "error_samples": [e for c in clients for e in c.samples][:20],
                    "requests": sum(c.requests for c in clients),
                    # The CPU cost: all the server's CPU over every operation it completed, those in
                    # flight at the deadline included (the timed run lasts until they end).
                    "server_cpu_seconds": usage.server,
                    "work_units": sum(done.values()) + sum(c.late for c in clients),
                    "latency_ms_by_operation": {k: v for k, v in latencies.items() if v},
                    **background([usage]),
                },
            ),
            usage.cores(),
        )


def probe_tag_delete(target: Target) -> bool:
    """Does the target delete a tag (`DELETE /v2/<name>/manifests/<tag>`, optional in OCI 1.1)?"""
    repo = "bench/mixed-probe"
    image = small_image(f"tag-delete/{uuid.uuid4()}")
    with target.connect() as conn:
        seed_image(conn, target, repo, ["probe"], image)
        auth = target.auth(repo_access(repo, "pull", "push", "delete"))
        answer = conn.request("DELETE", f"/v2/{repo}/manifests/probe", headers=auth)
        if answer.status == 202:
            return True
        expect(answer, 400, 404, 405, what=f"DELETE /v2/{repo}/manifests/probe")  # unsupported, not broken
        return False


def _images(prefix: str) -> Iterator[tuple[str, SmallImage]]:
    n = 0
    while True:
        yield f"v{n}", small_image(f"{prefix}/{n}")
        n += 1


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("push-mono", "blob push, monolithic", "MiB/s", 3.0, Bench.push_mono, proxy_ratio=2.5),
    Scenario("push-chunked", "blob push, chunked", "MiB/s", 3.0, Bench.push_chunked, proxy_ratio=2.0),
    Scenario("pull", "blob pull, 8 clients", "MiB/s", 0.95, Bench.pull, proxy_ratio=0.9),
    Scenario("manifest", "manifest GET, 64 conns", "req/s", 3.0, Bench.manifest, proxy_ratio=2.0),
    Scenario(
        "small-push", "small-image push, 16 clients", "images/s", 1.5, Bench.small_push, proxy_ratio=1.5
    ),
    Scenario("tags", "tags list, 64 conns", "req/s", 2.0, Bench.tags, proxy_ratio=2.0),
    Scenario("catalog", "catalog, 64 conns", "req/s", 2.0, Bench.catalog, proxy_ratio=2.0),
    Scenario("base", "GET /v2/ (baseline)", "req/s", None, Bench.base),
    Scenario(
        "token",
        "token issuance, 32 clients",
        "tokens/s",
        None,
        Bench.token,
        target_value=1000.0,
        needs_token_service=True,
    ),
    Scenario("mixed", "mixed load", "ops/s", 1.5, Bench.mixed, proxy_ratio=1.5),
)
BY_KEY = {s.key: s for s in SCENARIOS}
ALIASES = {
    "push": ("push-mono", "push-chunked"),
    "small": ("small-push",),
    "manifests": ("manifest",),
    "tokens": ("token",),
}
