"""What an operator sees of failures, from the processes themselves.

- A registry instance whose Redis is cut off (its own network path to the shared Redis, through
  a relay this test cuts and mends) answers `/health/ready` 503 naming the cause; the proxy's
  readiness checks take it out of rotation (one log line, one count), pushes and pulls keep
  working through the other instance, and it comes back (one log line, one count) once mended.
- Each service's `/metrics`, after real traffic, has its own families and none that do not
  apply to it: the proxy has no database, Redis or storage; the token service no storage.
- A registry on S3 refuses to start on a missing bucket, naming it, or makes it when asked.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends, s3
from tests.support.processes import ServiceProcess, registry_process
from tests.support.relay import Relay
from tests.support.suite import Suite, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_PASSWORD = "observability-admin-password"
# Direct to each process, whatever *_proxy variables the shell has.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def metrics_of(process: ServiceProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """A process's `/metrics`: family → {labels: value} (counters as their `_total` samples)."""
    with _DIRECT.open(f"{process.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name in (family.name, family.name + "_total"):
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return families


def value(families: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return families.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def log_events(process: ServiceProcess, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def skopeo_for(suite: Suite, home: Path) -> Skopeo:
    skopeo = make_skopeo(Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None), home)
    skopeo.ok("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, suite.address)
    return skopeo


def push_and_pull(suite: Suite, skopeo: Skopeo, tmp_path: Path, name: str) -> None:
    layout = tmp_path / "images" / name
    (tmp_path / "pulled").mkdir(exist_ok=True)
    write_layout(layout, [make_image(name, layer_sizes=(256 * 1024, 4096))])
    skopeo.ok("copy", "--dest-tls-verify=false", f"oci:{layout}:latest", suite.ref(f"library/{name}:1"))
    skopeo.ok(
        "copy", "--src-tls-verify=false", suite.ref(f"library/{name}:1"), f"dir:{tmp_path / 'pulled' / name}"
    )


@pytest.fixture
def database_and_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        yield database_url, redis_url


@pytest.mark.timeout(300)
def test_an_instance_cut_off_from_redis_is_ejected_and_restored(
    tmp_path: Path, database_and_redis: tuple[str, str]
) -> None:
    database_url, redis_url = database_and_redis
    suite = start_suite(
        tmp_path,
        database_url,
        redis_url,
        admin_password=ADMIN_PASSWORD,
        registry_hosts=("127.0.0.2", "127.0.0.3"),
        extra_env={"WHARF_PROXY__EJECT_SECONDS": "1", "WHARF_PROXY__WORKERS": "2"},
    )
    target = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    relay = Relay(target["host"], target["port"]).start()
    try:
        # The second instance reaches the same Redis through the relay: its own network path.
        healthy, cut_off = suite.registries
        cut_off.stop()
        cut_off.env["WHARF_REDIS_URL"] = f"redis://{relay.host}:{relay.port}/{target['db']}"
        cut_off.start()
        proxy = suite.proxy

        def seen(name: str, **labels: str) -> float:
            return value(metrics_of(proxy), name, pool="registry", upstream=cut_off.url, **labels)

        # The restart may have taken it out for a moment: from here on, it is in rotation.
        wait_for(lambda: seen("wharf_proxy_upstream_healthy") == 1, "the restarted instance in rotation")
        ejections, restorations = (
            seen("wharf_proxy_upstream_ejections"),
            seen("wharf_proxy_upstream_restorations"),
        )
        lines = {event: len(log_events(proxy, event)) for event in ("upstream_ejected", "upstream_restored")}
        skopeo = skopeo_for(suite, tmp_path / "skopeo")
        push_and_pull(suite, skopeo, tmp_path, "before")

        relay.cut()
        wait_for(lambda: seen("wharf_proxy_upstream_ejections") == ejections + 1, "the proxy to eject it")
        with _DIRECT.open(f"{healthy.url}/health/ready", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as unready:
            _DIRECT.open(f"{cut_off.url}/health/ready", timeout=10)
        assert unready.value.code == 503
        checks = json.loads(unready.value.read())["checks"]
        unready.value.close()
        assert checks["redis"].startswith("ConnectionError: "), checks
        assert (checks["database"], checks["storage"]) == ("ok", "ok")
        # Pushes and pulls go on through the other instance (an upload on the cut-off one would
        # be answered 503: no session store).
        push_and_pull(suite, skopeo, tmp_path, "during")
        assert value(metrics_of(cut_off), "wharf_registry_redis_errors") > 0

        relay.mend()
        wait_for(lambda: seen("wharf_proxy_upstream_restorations") == restorations + 1, "it to come back")
        push_and_pull(suite, skopeo, tmp_path, "after")

        assert seen("wharf_proxy_upstream_healthy") == 1
        assert seen("wharf_proxy_upstream_ejections") == ejections + 1
        assert seen("wharf_proxy_upstream_failures", kind="health") >= 3
        families = metrics_of(proxy)
        assert value(families, "wharf_proxy_upstream_ejections", pool="registry", upstream=healthy.url) == 0
        # One line each, naming the cause, however many workers the proxy runs (two here).
        ejected = log_events(proxy, "upstream_ejected")[lines["upstream_ejected"] :]
        restored = log_events(proxy, "upstream_restored")[lines["upstream_restored"] :]
        assert [e["upstream"] for e in ejected] == [cut_off.url], ejected
        assert [e["upstream"] for e in restored] == [cut_off.url], restored
        reason = str(ejected[0]["reason"])
        assert reason.startswith("not ready (503): redis: ConnectionError"), reason
        assert ejected[0]["by"] == "health checks"
    finally:
        relay.close()
        suite.stop()


FOREIGN = {
    # No database, Redis, storage, events or per-route HTTP families in the proxy; no storage in
    # the token service (it publishes login events to the stream: its events families apply).
    "proxy": ("_db_", "_redis_", "_storage_", "_events_", "_http_"),
    "token": ("_storage_",),
    "registry": (),
}


@pytest.mark.timeout(300)
def test_each_service_exports_its_own_metrics(tmp_path: Path, database_and_redis: tuple[str, str]) -> None:
    database_url, redis_url = database_and_redis
    suite = start_suite(
        tmp_path,
        database_url,
        redis_url,
        admin_password=ADMIN_PASSWORD,
        extra_env={"WHARF_TOKEN__THROTTLE_FAILURES": "2"},
    )
    try:
        skopeo = skopeo_for(suite, tmp_path / "skopeo")
        push_and_pull(suite, skopeo, tmp_path, "seen")
        wrong = base64.b64encode(b"admin:wrong").decode()
        for expected in (401, 401, 429):  # two misses lock admin out of this address
            request = urllib.request.Request(  # noqa: S310
                f"{suite.url}/service/token?service=wharf-registry",
                headers={"Authorization": f"Basic {wrong}"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                _DIRECT.open(request, timeout=10)
            assert refused.value.code == expected
            refused.value.close()
        processes = {"proxy": suite.proxy, "registry": suite.registries[0], "token": suite.tokens[0]}
        families = {name: metrics_of(process) for name, process in processes.items()}
        for name, found in families.items():
            assert all(family.startswith(f"wharf_{name}_") for family in found), sorted(found)
            foreign = [f for f in found if any(part in f for part in FOREIGN[name])]
            assert not foreign, (name, foreign)

        proxy, registry_, token = families["proxy"], families["registry"], families["token"]
        assert value(proxy, "wharf_proxy_responses", pool="registry", status="201") > 0
        assert value(proxy, "wharf_proxy_responses", pool="token", status="200") > 0
        assert value(proxy, "wharf_proxy_responses", pool="token", status="401") == 2
        assert value(proxy, "wharf_proxy_responses", pool="token", status="429") == 1
        assert value(token, "wharf_token_logins", result="success", backend="db_auth") >= 1
        assert value(token, "wharf_token_logins", result="failure", backend="db_auth") == 2
        assert value(token, "wharf_token_logins", result="throttled", backend="db_auth") == 1
        assert value(token, "wharf_token_throttled_requests", lock="account") == 1
        assert value(token, "wharf_token_tokens_issued", grant="password") >= 1
        for name, found in (("registry", registry_), ("token", token)):
            prefix = f"wharf_{name}_"
            for pool in ("read", "write"):
                assert value(found, prefix + "db_pool_size", pool=pool) == 5  # WHARF_DATABASE_POOL_SIZE
                assert value(found, prefix + "db_waiting", pool=pool) == 0
                assert value(found, prefix + "db_errors", pool=pool) == 0
                assert 0 <= value(found, prefix + "db_connections_in_use", pool=pool) <= 5
            assert prefix + "redis_connections_in_use" in found
            assert value(found, prefix + "redis_errors") == 0
        assert any(f.startswith("wharf_registry_storage_") for f in registry_)
        assert any(f.startswith("wharf_registry_events_") for f in registry_)
    finally:
        suite.stop()


@pytest.mark.timeout(120)
def test_a_missing_bucket_stops_the_registry_or_is_made(
    tmp_path: Path, moto_endpoint: str, database_and_redis: tuple[str, str]
) -> None:
    database_url, redis_url = database_and_redis
    bucket = f"wharf-missing-{int(time.time() * 1000)}"
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "data"),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REGISTRY__AUTH": "none",
        **s3.storage_env(moto_endpoint, bucket),
    }
    refused = registry_process(env, tmp_path / "logs")
    with pytest.raises(RuntimeError, match="exited"):
        refused.start()
    assert refused.process is not None
    assert refused.process.returncode == 2
    message = (
        f"wharf-registry: the S3 bucket '{bucket}' does not exist: create it, "
        "or set WHARF_STORAGE__S3__CREATE_BUCKET=true"
    )
    assert message in refused.log_path.read_text().splitlines()
    made = registry_process({**env, "WHARF_STORAGE__S3__CREATE_BUCKET": "true"}, tmp_path / "logs")
    try:
        made.start()
        assert [b["Name"] for b in s3.client(moto_endpoint).list_buckets()["Buckets"] if b["Name"] == bucket]
        assert [e["bucket"] for e in log_events(made, "bucket_created")] == [bucket]
    finally:
        made.stop()
        s3.empty_bucket(moto_endpoint, bucket)
        s3.client(moto_endpoint).delete_bucket(Bucket=bucket)
