"""A registry instance killed in the middle of a layer's transfer costs the client nothing.

Two registries (127.0.0.2, .3), two token services (.4, .5) and two proxies (.1, .6) share
PostgreSQL, Redis and storage (the filesystem, or S3 on moto). skopeo, without `--retry-times`,
pushes an image with one 200 MiB random layer from an OCI layout (gzipped: sent with its length;
or plain, which skopeo compresses as it sends it: chunked), and pulls one back, round after round,
through one proxy then the other; in every round the registry instance carrying the layer is
SIGKILLed once a random share of it has moved (its bytes read or written, from /proc/<pid>/io),
and restarted before the next round. Every skopeo command must succeed, every digest must be
intact, and the proxies' metrics must show one continuation per round.

A pull the proxy sends from storage itself (local blobs, on the filesystem) does not need its
registry once it began: there the instances that answered the round's blob requests are killed
mid-layer, and no continuation is needed; with local blobs off the registry streams the layer
and the proxy continues it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256, write_big_file
from tests.support import backends, s3
from tests.support.processes import ServiceProcess
from tests.support.suite import Suite, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MiB = 1024 * 1024
LAYER_SIZE = 200 * MiB
ADMIN_PASSWORD = "continuation-admin-password"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
# Rounds per case. The acceptance is ten of each on both storages: run it with
# WHARF_TEST_KILL_ROUNDS=10. A push round takes ~20 s while the surviving instance waits out the
# killed one's upload lease, an S3 round more (moto is a Python server): `make test` runs fewer.
ROUNDS = {"filesystem": 4, "s3": 2}
ROUNDS_OVERRIDE = int(os.environ.get("WHARF_TEST_KILL_ROUNDS") or 0)


def rounds_on(storage: str) -> int:
    return ROUNDS_OVERRIDE or ROUNDS[storage]


# Time enough for the slowest round (an S3 push, ~50 s on a busy machine), twice over.
TIMEOUT = pytest.mark.timeout(180 + 100 * max(rounds_on("filesystem"), rounds_on("s3")))


@dataclass
class Layout:
    path: Path
    layer_digest: str
    manifest_digest: str
    compressed: bool  # False: skopeo compresses the layer as it pushes it (a body of unknown length)


def write_layout(root: Path, layer: Path, media_type: str, diff_id: str) -> Layout:
    """An OCI layout of one image whose only layer is the file `layer` (moved into it)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_digest = sha256_file(layer)
    layer.rename(blobs / layer_digest.split(":")[1])
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    ).encode()
    size = (blobs / layer_digest.split(":")[1]).stat().st_size
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": media_type, "digest": layer_digest, "size": size}],
        }
    ).encode()
    for data in (config, manifest):
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
    top = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return Layout(root, layer_digest, sha256(manifest), media_type != OCI_LAYER_TAR)


@dataclass
class Material:
    """200 MiB of random bytes, as they are and as one stored-blocks gzip member (fast to make)."""

    raw: Path
    gzipped: Path

    def layout(self, root: Path, prefix: bytes, *, compressed: bool) -> Layout:
        """A layout whose layer is `prefix` then the random bytes, gzipped (skopeo sends it as it
        is, with its length) or plain (skopeo compresses it as it pushes it: chunked). A prefix
        of its own makes a layer no registry has seen: skopeo must upload it, not mount it (its
        blob-info cache, root's, is shared by every skopeo on the host)."""
        root.mkdir(parents=True, exist_ok=True)
        layer = root / "layer"
        diff = hashlib.sha256(prefix)
        with layer.open("wb") as sink:
            sink.write(gzip.compress(prefix, mtime=0) if compressed else prefix)
            with (self.gzipped if compressed else self.raw).open("rb") as source:
                while chunk := source.read(8 * MiB):
                    sink.write(chunk)
        with self.raw.open("rb") as source:
            while chunk := source.read(8 * MiB):
                diff.update(chunk)
        media_type = OCI_LAYER if compressed else OCI_LAYER_TAR
        return write_layout(root / "oci", layer, media_type, "sha256:" + diff.hexdigest())


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Material]:
    tmp = tmp_path_factory.mktemp("material")
    raw = tmp / "raw"
    write_big_file(raw, LAYER_SIZE)
    gzipped = tmp / "gzipped"
    with raw.open("rb") as source, gzip.GzipFile(gzipped, "wb", compresslevel=0, mtime=0) as sink:
        while chunk := source.read(8 * MiB):
            sink.write(chunk)
    yield Material(raw, gzipped)
    # Data only (no logs): gone with the module, not kept to the session's end on a tmpfs /tmp.
    shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Site:
    suite: Suite
    storage: str  # "filesystem" or "s3"


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The suite on the storage the test names (indirect parameter)."""
    storage = str(request.param)
    tmp = tmp_path_factory.mktemp(f"continuation-{storage}")
    extra_env = {"WHARF_PROXY__EJECT_SECONDS": "3"}
    if storage == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        extra_env.update(s3.storage_env(endpoint, s3.create_bucket(endpoint), redirect="false"))
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            registry_hosts=("127.0.0.2", "127.0.0.3"),
            token_hosts=("127.0.0.4", "127.0.0.5"),
            more_proxy_hosts=("127.0.0.6",),
            extra_env=extra_env,
        )
        try:
            yield Site(suite, storage)
        finally:
            suite.stop()


# -- watching bytes move, and killing ------------------------------------------------------------


def io_bytes(pid: int) -> tuple[int, int]:
    """(rchar, wchar) of a process: every byte it read or wrote, sockets and sendfile included."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except OSError:
        return 0, 0
    return int(fields["rchar"]), int(fields["wchar"])


def blob_gets(process: ServiceProcess) -> int:
    """Blob GETs the registry instance answered, from its `/metrics`."""
    with _DIRECT.open(f"{process.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "wharf_registry_http_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels.get("method") == "GET"
        and sample.labels.get("route", "").endswith("/blobs/{digest}")
    )


def continuations(suite: Suite) -> dict[tuple[str, str], float]:
    """`wharf_proxy_continued_transfers_total` by (direction, result), summed over the proxies."""
    counts: dict[tuple[str, str], float] = {}
    for proxy in suite.proxies:
        with _DIRECT.open(f"{proxy.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "wharf_proxy_continued_transfers":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["direction"], sample.labels["result"])
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def kill_when(
    skopeo: Skopeo,
    args: list[str],
    due: Callable[[subprocess.Popen[bytes]], list[ServiceProcess]],
    what: str,
) -> tuple[list[ServiceProcess], str]:
    """Run skopeo; SIGKILL the instances `due(skopeo's process)` names as soon as it names any
    (polled while skopeo runs). The killed instances, and skopeo's failure ('' if it succeeded)."""
    process = skopeo.start(*args)
    killed: list[ServiceProcess] = []
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if not killed:
            killed = due(process)
            for victim in killed:
                victim.kill()
        time.sleep(0.01)
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate()
    failure = (
        "" if process.returncode == 0 else f"{what}: exit {process.returncode}: {stderr.decode()[-3000:]}"
    )
    return killed, failure


def restart(killed: list[ServiceProcess]) -> None:
    for process in killed:
        process.start()


def login(suite: Suite, home: Path, proxy: ServiceProcess) -> Skopeo:
    """A skopeo with a home of its own, logged in at `proxy`."""
    registry = Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None)
    skopeo = make_skopeo(registry, home)
    skopeo.ok(
        "login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, f"{proxy.host}:{proxy.port}"
    )
    return skopeo


def ref(proxy: ServiceProcess, name: str) -> str:
    return f"docker://{proxy.host}:{proxy.port}/{name}"


def moved_since(process: ServiceProcess, start: tuple[int, int]) -> int:
    rchar, wchar = io_bytes(process.pid)
    return max(rchar - start[0], wchar - start[1])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * MiB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def busy_registry(suite: Suite, start: dict[str, tuple[int, int]], threshold: int) -> list[ServiceProcess]:
    """The instance carrying the layer, once it moved `threshold` bytes since the round began."""
    return [p for p in suite.registries if moved_since(p, start[p.name]) >= threshold][:1]


def push_round(
    site: Site, material: Material, tmp: Path, i: int, threshold: int
) -> tuple[list[ServiceProcess], str]:
    """Push round i through proxy i % 2, of a layer of its own, gzipped in even rounds (sent with
    its length) and compressed by skopeo as it goes in odd ones (chunked)."""
    suite = site.suite
    proxy = suite.proxies[i % 2]
    layout = material.layout(tmp / f"push-{i}-{site.storage}", f"round {i}\n".encode(), compressed=i % 2 == 0)
    skopeo = login(suite, tmp / f"push-home-{i}", proxy)
    digest_file = tmp / f"push-digest-{i}"
    start = {p.name: io_bytes(p.pid) for p in suite.registries}
    reference = ref(proxy, f"library/push-{i}:1")
    killed, failure = kill_when(
        skopeo,
        [
            "copy",
            "--dest-tls-verify=false",
            f"--digestfile={digest_file}",
            f"oci:{layout.path}:latest",
            reference,
        ],
        lambda _client: busy_registry(suite, start, threshold),
        f"push {i} via {proxy.name} ({'gzip' if layout.compressed else 'tar, compressed on the way'})",
    )
    shutil.rmtree(layout.path.parent)
    if failure:
        return killed, failure
    pushed = digest_file.read_text().strip()
    if layout.compressed and pushed != layout.manifest_digest:
        return killed, f"push {i}: manifest digest {pushed}, not {layout.manifest_digest}"
    raw = skopeo.ok("inspect", "--raw", "--tls-verify=false", reference).stdout
    if sha256(raw) != pushed:
        return killed, f"push {i}: the registry holds manifest {sha256(raw)}, skopeo pushed {pushed}"
    return killed, ""


def pull_round(
    site: Site, layout: Layout, tmp: Path, i: int, threshold: int, *, local: bool
) -> tuple[list[ServiceProcess], str]:
    suite = site.suite
    proxy = suite.proxies[i % 2]
    skopeo = login(suite, tmp / f"pull-home-{i}", proxy)
    target = tmp / f"pulled-{i}"
    start = {p.name: io_bytes(p.pid) for p in suite.registries}
    served = {p.name: blob_gets(p) for p in suite.registries}

    def due(client: subprocess.Popen[bytes]) -> list[ServiceProcess]:
        if not local:
            return busy_registry(suite, start, threshold)
        # The proxy sends the layer itself: once skopeo wrote `threshold` bytes of it, kill every
        # instance that answered a blob GET this round (the layer's among them).
        if io_bytes(client.pid)[1] < threshold:
            return []
        return [p for p in suite.registries if blob_gets(p) > served[p.name]]

    killed, failure = kill_when(
        skopeo,
        ["copy", "--src-tls-verify=false", ref(proxy, "library/pulled:1"), f"dir:{target}"],
        due,
        f"pull {i} via {proxy.name} (local blobs {'on' if local else 'off'})",
    )
    if not failure:
        got = sha256_file(target / layout.layer_digest.split(":")[1])
        if got != layout.layer_digest:
            failure = f"pull {i}: the layer came back as {got}"
        elif sha256_file(target / "manifest.json") != layout.manifest_digest:
            failure = f"pull {i}: the manifest changed"
    return killed, failure


def run_rounds(
    suite: Suite, rounds: int, play: Callable[[int, int], tuple[list[ServiceProcess], str]]
) -> list[str]:
    """`rounds` rounds, each killing at a random share of the layer; the failures."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    failures = []
    for i in range(rounds):
        threshold = int(LAYER_SIZE * rng.uniform(0.1, 0.9))
        killed, failure = play(i, threshold)
        if failure:
            failures.append(
                f"round {i} (seed {seed}, kill at {threshold} bytes): {failure}\n{suite.logs(10)}"
            )
        if not killed:
            failures.append(f"round {i} (seed {seed}): nothing was killed (threshold {threshold})")
        restart(killed)
    return failures


def set_local_blobs(suite: Suite, on: bool) -> None:
    """Restart the proxies with local blobs on or off, if they are not so (their metrics start over)."""
    value = "true" if on else "false"
    for proxy in suite.proxies:
        if proxy.env.get("WHARF_PROXY__LOCAL_BLOBS", "true") != value:
            proxy.stop()
            proxy.env["WHARF_PROXY__LOCAL_BLOBS"] = value
            proxy.start()


@TIMEOUT
@pytest.mark.parametrize("site", ["filesystem", "s3"], indirect=True)
def test_pushes_survive_a_registry_killed_mid_layer(site: Site, material: Material, tmp_path: Path) -> None:
    rounds = rounds_on(site.storage)
    before = continuations(site.suite)
    failures = run_rounds(site.suite, rounds, lambda i, at: push_round(site, material, tmp_path, i, at))
    assert not failures, "\n\n".join(failures)
    after = continuations(site.suite)
    assert after.get(("push", "continued"), 0) - before.get(("push", "continued"), 0) == rounds, after
    assert after.get(("push", "failed"), 0) == before.get(("push", "failed"), 0), after


@pytest.fixture(scope="module")
def pulled(site: Site, material: Material, tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """An image, pushed once without trouble, as `library/pulled:1`."""
    suite = site.suite
    layout = material.layout(tmp_path_factory.mktemp("pulled"), b"pulled\n", compressed=True)
    skopeo = login(suite, tmp_path_factory.mktemp("pushed-home"), suite.proxy)
    skopeo.ok(
        "copy", "--dest-tls-verify=false", f"oci:{layout.path}:latest", ref(suite.proxy, "library/pulled:1")
    )
    return layout


@TIMEOUT
@pytest.mark.parametrize(
    ("site", "local"),
    [("filesystem", True), ("filesystem", False), ("s3", False)],
    ids=["filesystem-local-blobs", "filesystem-streamed", "s3-streamed"],
    indirect=["site"],
)
def test_pulls_survive_a_registry_killed_mid_layer(
    site: Site, pulled: Layout, tmp_path: Path, local: bool
) -> None:
    layout = pulled
    rounds = rounds_on(site.storage)
    set_local_blobs(site.suite, local)
    before = continuations(site.suite)
    failures = run_rounds(
        site.suite, rounds, lambda i, at: pull_round(site, layout, tmp_path, i, at, local=local)
    )
    assert not failures, "\n\n".join(failures)
    after = continuations(site.suite)
    # Sent from storage, the layer needs no continuation; streamed, one per round.
    expected = 0 if local else rounds
    assert after.get(("pull", "continued"), 0) - before.get(("pull", "continued"), 0) == expected, after
    assert after.get(("pull", "failed"), 0) == before.get(("pull", "failed"), 0), after
    if local:
        assert_sent_from_storage(site.suite, layout.layer_digest, rounds)


def assert_sent_from_storage(suite: Suite, layer_digest: str, rounds: int) -> None:
    """Every layer GET of the rounds was sent by a proxy with sendfile (its access line says so)."""
    lines = [
        json.loads(line)
        for proxy in suite.proxies
        for line in proxy.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    layer_gets = [
        line
        for line in lines
        if line.get("event") == "access" and line.get("path") == f"/v2/library/pulled/blobs/{layer_digest}"
    ]
    assert len([line for line in layer_gets if line.get("sendfile")]) >= rounds, layer_gets[-3:]
