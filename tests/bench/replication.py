"""The replication bench: throughput of a manual push replication of 50 images from Wharf A to
Wharf B, carried out by a `wharf-jobservice worker` on A, beside skopeo copying the same images
between the same two sites in the same run (the reference).

Two sites, each the whole suite as processes (`tests/support/suite.py`: proxy, token service,
registry, ui for `/api/`), each with its own database on `--db` and its own Redis DB, token auth;
a worker on A (its default concurrency, 4). A is seeded (not timed) with `bench/app-00:v1` …
`app-49:v1`, each a config and two layers of distinct incompressible bytes (1 MiB and 256 KiB by
default), pushed as admin over plain HTTP.

- Wharf: B registered on A (type harbor, admin's credentials), a manual policy for `bench/**`,
  all through A's API with Basic auth; timed from `POST /replication/executions` until its
  status is no longer InProgress (polled). It must end Succeed with every task succeeded, and a
  few manifests at B must be byte-identical to A's.
- skopeo: `skopeo copy` of each image from A to `ref/app-NN:v1` on B (project `ref` made on B
  first), as many at a time as the worker's concurrency, timed from the first start to the last
  exit. Ratio = skopeo's seconds / Wharf's (above 1: Wharf is faster).
- Re-run: a second execution of the same policy, with nothing left to copy (every tag is at B
  already): what a periodic replication costs when nothing changed.

Figures: seconds, MiB/s (bytes of blobs and manifests over the seconds), artifacts/s.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.images import Image, make_image
from tests.support import backends
from tests.support.processes import ServiceProcess, jobservice_worker_process
from tests.support.replication import ADMIN_PASSWORD, Peer, Site, sha256
from tests.support.suite import start_suite
from wharf_shared.remote_auth import basic_header

MiB = 1024 * 1024
KiB = 1024
SOURCE_PROJECT = "bench"
REFERENCE_PROJECT = "ref"
TAG = "v1"
API = "/api/v2.0"
DEFAULT_LAYERS = (1024 * KiB, 256 * KiB)
QUICK_LAYERS = (128 * KiB, 32 * KiB)
VERIFIED = 3  # manifests compared byte for byte at B (first, middle, last)
SEED_CONCURRENCY = 8
POLL_SECONDS = 0.1
RUN_TIMEOUT = 300.0

WHARF = "wharf"
REFERENCE = "skopeo"
RERUN = "wharf-rerun"
LABELS = {
    WHARF: "Wharf (jobservice worker)",
    REFERENCE: "skopeo copy (reference)",
    RERUN: "Wharf re-run (no changes)",
}


@dataclass
class ReplicationRun:
    """One timed copy of every image A → B."""

    key: str
    seconds: float | None = None
    artifacts: int = 0
    bytes: int = 0  # what had to cross: 0 for the re-run, whose copies are skipped
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mib_per_s(self) -> float | None:
        if not self.seconds or not self.bytes:
            return None
        return self.bytes / MiB / self.seconds

    @property
    def artifacts_per_s(self) -> float | None:
        if not self.seconds or not self.artifacts:
            return None
        return self.artifacts / self.seconds


@dataclass
class ReplicationResult:
    images: int
    layer_bytes: tuple[int, ...]
    concurrency: int
    total_bytes: int = 0  # blobs and manifests of every image
    runs: list[ReplicationRun] = field(default_factory=list)
    error: str | None = None  # set up or seeding failed: no run at all

    def run(self, key: str) -> ReplicationRun | None:
        return next((r for r in self.runs if r.key == key), None)

    @property
    def ratio(self) -> float | None:
        """skopeo's seconds / Wharf's: above 1, Wharf copied faster."""
        wharf, reference = self.run(WHARF), self.run(REFERENCE)
        if wharf is None or reference is None or wharf.error or reference.error:
            return None
        if not wharf.seconds or not reference.seconds:
            return None
        return reference.seconds / wharf.seconds


def result_json(result: ReplicationResult) -> dict[str, Any]:
    """The JSON report's `replication` entry: every run with its derived figures, and the ratio."""
    return {
        "images": result.images,
        "layer_bytes": list(result.layer_bytes),
        "concurrency": result.concurrency,
        "total_bytes": result.total_bytes,
        "error": result.error,
        "runs": {
            r.key: {
                **asdict(r),
                "label": LABELS.get(r.key, r.key),
                "mib_per_s": r.mib_per_s,
                "artifacts_per_s": r.artifacts_per_s,
            }
            for r in result.runs
        },
        "ratio_reference_seconds_over_wharf_seconds": result.ratio,
    }


def _figure(value: float | None, width: int, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def table(result: ReplicationResult) -> list[str]:
    """The printed lines: one row per run, then the ratio."""
    sizes = " + ".join(f"{b // KiB} KiB" for b in result.layer_bytes)
    lines = [
        f"replication: {result.images} images A → B ({sizes} layers + config each, "
        f"{result.total_bytes / MiB:.1f} MiB in all), {result.concurrency} at a time"
    ]
    if result.error:
        lines.append(f"  ERROR {result.error}")
    if result.runs:
        lines.append(f"  {'':30} {'seconds':>9} {'MiB/s':>9} {'artifacts/s':>12}")
    for run in result.runs:
        label = LABELS.get(run.key, run.key)
        if run.error:
            lines.append(f"  {label:30} ERROR {run.error}")
            continue
        lines.append(
            f"  {label:30} {_figure(run.seconds, 9, 2)} {_figure(run.mib_per_s, 9)}"
            f" {_figure(run.artifacts_per_s, 12)}"
        )
    ratio = result.ratio
    if ratio is not None:
        verdict = "Wharf faster" if ratio > 1 else "skopeo faster"
        lines.append(f"  ratio skopeo s / Wharf s: {ratio:.2f} ({verdict})")
    else:
        lines.append("  ratio skopeo s / Wharf s: - (a run is missing)")
    return lines


def _start_site(stack: ExitStack, work: Path, logs: Path, name: str, db_kind: str) -> Site:
    """A Wharf of its own (ui on, no events consumer); its logs copied to `logs` once stopped."""
    tmp = work / f"replication-{name}"
    tmp.mkdir(parents=True, exist_ok=True)
    database_url = stack.enter_context(backends.fresh_database(db_kind, str(tmp)))
    redis_url = stack.enter_context(backends.leased_redis_db())
    suite = start_suite(
        tmp,
        database_url,
        redis_url,
        admin_password=ADMIN_PASSWORD,
        ui_hosts=("127.0.0.1",),
        jobservice_hosts=(),
    )
    # LIFO: the processes stop first, then their logs are kept.
    stack.callback(shutil.copytree, suite.log_dir, logs / f"replication-{name}", dirs_exist_ok=True)
    stack.callback(suite.stop)
    return Site(suite)


class Api:
    """A's (or B's) `/api/v2.0` as admin with Basic auth."""

    def __init__(self, session: aiohttp.ClientSession, site: Site) -> None:
        self.session = session
        self.base = f"{site.url}{API}"
        self.headers = {"Authorization": basic_header("admin", ADMIN_PASSWORD)}

    async def created(self, path: str, body: dict[str, Any]) -> int:
        async with self.session.post(f"{self.base}{path}", json=body, headers=self.headers) as resp:
            if resp.status != 201:
                raise RuntimeError(f"POST {path}: {resp.status} {await resp.text()}")
            return int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.base}{path}", headers=self.headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def project(self, name: str) -> None:
        await self.created("/projects", {"project_name": name, "metadata": {"public": "false"}})


def _images(count: int, layer_bytes: tuple[int, ...]) -> list[Image]:
    return [make_image(f"replication-bench/{i}", layer_sizes=layer_bytes) for i in range(count)]


def _repository(project: str, i: int) -> str:
    return f"{project}/app-{i:02d}"


def image_bytes(image: Image) -> int:
    return len(image.manifest) + len(image.config) + sum(len(layer) for layer in image.layers)


async def _seed(session: aiohttp.ClientSession, site: Site, images: list[Image]) -> None:
    peer = Peer(session, site.url, wharf=True)
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def push(i: int, image: Image) -> None:
        async with gate:
            await peer.image(_repository(SOURCE_PROJECT, i), image, TAG)

    await asyncio.gather(*(push(i, image) for i, image in enumerate(images)))


async def _verify(session: aiohttp.ClientSession, site: Site, project: str, images: list[Image]) -> int:
    """How many of a few manifests at `site` are byte-identical to the pushed ones (all, or raises)."""
    peer = Peer(session, site.url, wharf=True)
    picks = sorted({0, len(images) // 2, len(images) - 1})[:VERIFIED]
    for i in picks:
        got = await peer.read_manifest(_repository(project, i), TAG)
        if got != images[i].manifest:
            found = sha256(got) if got is not None else "nothing"
            raise RuntimeError(f"{_repository(project, i)}:{TAG} at B is {found}, not {images[i].digest}")
    return len(picks)


async def _execute(api: Api, policy_id: int, worker: ServiceProcess) -> tuple[float, dict[str, Any]]:
    """Start an execution, poll it until it is no longer InProgress: (seconds, the execution)."""
    started = time.perf_counter()
    execution_id = await api.created("/replication/executions", {"policy_id": policy_id})
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        found: dict[str, Any] = await api.get(f"/replication/executions/{execution_id}")
        if found["status"] != "InProgress":
            return time.perf_counter() - started, found
        if time.monotonic() > deadline:
            raise RuntimeError(f"execution {execution_id} still InProgress after {RUN_TIMEOUT:.0f} s")
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.process.returncode}): log {worker.log_path}")
        await asyncio.sleep(POLL_SECONDS)


def _check_execution(found: dict[str, Any], images: int) -> str | None:
    if found.get("status") != "Succeed" or (found.get("total"), found.get("succeed")) != (images, images):
        keep = ("status", "status_text", "total", "succeed", "failed", "in_progress", "stopped")
        return "execution ended " + ", ".join(f"{k}={found.get(k)!r}" for k in keep if k in found)
    return None


async def _wharf_runs(
    session: aiohttp.ClientSession,
    a: Site,
    b: Site,
    images: list[Image],
    total_bytes: int,
    worker: ServiceProcess,
    result: ReplicationResult,
    out: Callable[[str], None],
) -> int | None:
    """Register B, make the policy, time its execution; the policy's id (None if it failed)."""
    api = Api(session, a)
    run = ReplicationRun(WHARF, artifacts=len(images), bytes=total_bytes)
    result.runs.append(run)
    try:
        registry_id = await api.created(
            "/registries",
            {
                "name": "site-b",
                "type": "harbor",
                "url": b.url,
                "insecure": True,
                "credential": {"type": "basic", "access_key": "admin", "access_secret": ADMIN_PASSWORD},
            },
        )
        policy_id = await api.created(
            "/replication/policies",
            {
                "name": "bench-to-b",
                "dest_registry": {"id": registry_id},
                "trigger": {"type": "manual"},
                "filters": [{"type": "name", "value": f"{SOURCE_PROJECT}/**"}],
                "override": True,
                "enabled": True,
            },
        )
        seconds, found = await _execute(api, policy_id, worker)
        run.detail["execution"] = found
        run.error = _check_execution(found, len(images))
        if run.error is None:
            run.seconds = seconds
            run.detail["verified_manifests"] = await _verify(session, b, SOURCE_PROJECT, images)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        return None
    finally:
        out(_row(run))
    return policy_id


async def _rerun(
    session: aiohttp.ClientSession,
    a: Site,
    policy_id: int,
    images: list[Image],
    worker: ServiceProcess,
    result: ReplicationResult,
    out: Callable[[str], None],
) -> None:
    api = Api(session, a)
    run = ReplicationRun(RERUN, artifacts=len(images))
    result.runs.append(run)
    try:
        seconds, found = await _execute(api, policy_id, worker)
        run.detail["execution"] = found
        run.error = _check_execution(found, len(images))
        if run.error is None:
            run.seconds = seconds
            tasks = await api.get(f"/replication/executions/{found['id']}/tasks?page_size=1")
            if tasks:
                url = f"{api.base}/replication/executions/{found['id']}/tasks/{tasks[0]['id']}/log"
                async with session.get(url, headers=api.headers) as resp:
                    lines = (await resp.text()).strip().splitlines()
                run.detail["first_task_log_tail"] = lines[-1] if lines else ""
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        out(_row(run))


async def _skopeo_runs(
    session: aiohttp.ClientSession,
    a: Site,
    b: Site,
    images: list[Image],
    total_bytes: int,
    concurrency: int,
    result: ReplicationResult,
    out: Callable[[str], None],
) -> None:
    run = ReplicationRun(REFERENCE, artifacts=len(images), bytes=total_bytes)
    result.runs.append(run)
    try:
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise RuntimeError("skopeo not installed (Debian: apt-get install -y skopeo)")
        await Api(session, b).project(REFERENCE_PROJECT)
        creds = f"admin:{ADMIN_PASSWORD}"
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def copy(i: int) -> None:
            argv = [
                skopeo,
                "copy",
                "--quiet",
                "--src-creds",
                creds,
                "--dest-creds",
                creds,
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                a.suite.ref(f"{_repository(SOURCE_PROJECT, i)}:{TAG}"),
                b.suite.ref(f"{_repository(REFERENCE_PROJECT, i)}:{TAG}"),
            ]
            async with gate:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                output, _ = await process.communicate()
            if process.returncode != 0:
                said = output.decode(errors="replace")[-300:]
                failures.append(f"app-{i:02d}: exit {process.returncode}: {said}")

        started = time.perf_counter()
        await asyncio.gather(*(copy(i) for i in range(len(images))))
        seconds = time.perf_counter() - started
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(images)} copies failed; first: {failures[0]}")
        run.detail["verified_manifests"] = await _verify(session, b, REFERENCE_PROJECT, images)
        run.seconds = seconds
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        out(_row(run))


def _row(run: ReplicationRun) -> str:
    label = LABELS.get(run.key, run.key)
    if run.error:
        return f"  {label:30} ERROR {run.error}"
    mib = f"{run.mib_per_s:8.1f} MiB/s" if run.mib_per_s is not None else f"{'':14}"
    return f"  {label:30} {run.seconds or 0:7.2f} s {mib} {run.artifacts_per_s or 0:7.1f} artifacts/s"


def run_replication(
    stack: ExitStack,
    work: Path,
    logs: Path,
    result: ReplicationResult,
    *,
    db_kind: str,
    out: Callable[[str], None] = print,
) -> None:
    """Start A, B and A's worker, seed A, then time Wharf, skopeo and Wharf's re-run into
    `result` (each run's failure is recorded in it; a failure before any run raises)."""
    started = time.monotonic()
    a = _start_site(stack, work, logs, "a", db_kind)
    b = _start_site(stack, work, logs, "b", db_kind)
    env = {**a.suite.env, "WHARF_JOBSERVICE__CONCURRENCY": str(result.concurrency)}
    worker = jobservice_worker_process(env, logs, name="replication-worker-a")
    stack.callback(worker.stop)
    worker.start(timeout=60)
    out(f"  A at {a.url}, B at {b.url}, worker on A (pid {worker.pid}) in {time.monotonic() - started:.0f} s")
    images = _images(result.images, result.layer_bytes)
    result.total_bytes = sum(image_bytes(image) for image in images)

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            seeding = time.monotonic()
            await Api(session, a).project(SOURCE_PROJECT)
            await _seed(session, a, images)
            out(
                f"  seeded {len(images)} images ({result.total_bytes / MiB:.1f} MiB)"
                f" in {time.monotonic() - seeding:.1f} s"
            )
            policy_id = await _wharf_runs(session, a, b, images, result.total_bytes, worker, result, out)
            await _skopeo_runs(session, a, b, images, result.total_bytes, result.concurrency, result, out)
            if policy_id is not None:
                await _rerun(session, a, policy_id, images, worker, result, out)

    asyncio.run(go())
