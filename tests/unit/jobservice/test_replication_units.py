"""Pure parts of the replication data path: the token bucket on a fake clock, challenges and the
token cache, mount hints' bound, upload ranges and error bodies, schema 1 refused."""

from __future__ import annotations

import json

import pytest

from wharf_jobservice.replication.copy import _document
from wharf_jobservice.replication.progress import MountHints
from wharf_shared.bandwidth import TokenBucket
from wharf_shared.remote import Endpoint, Manifest, RemoteError, RemoteRegistry, _code_and_message, _range_end
from wharf_shared.remote_auth import TokenCache, parse_challenge


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_bucket_holds_the_average_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(100 * 1024, clock=time.clock, sleep=time.sleep)  # 100 KiB/s
    assert bucket.burst == 64 * 1024
    for _ in range(100):
        await bucket.take(16 * 1024)  # 1600 KiB in all
    # The first burst passes at once, the rest at the rate: (1600 - 64) KiB at 100 KiB/s.
    assert time.now == pytest.approx((1600 - 64) / 100)


async def test_the_bucket_refills_while_idle_up_to_its_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(1000, burst=500, clock=time.clock, sleep=time.sleep)
    await bucket.take(500)
    assert time.now == 0
    time.now += 100  # idle long: the bucket holds its burst, no more
    await bucket.take(1500)  # 500 at once, then 1000 more at 1000/s
    assert time.now == pytest.approx(101)
    await bucket.take(100)  # nothing left: a tenth of a second
    assert time.now == pytest.approx(101.1)


def test_no_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_challenges() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://w.example/service/token",service="wharf-registry",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert bearer is not None
    assert (bearer.scheme, bearer.realm, bearer.service) == (
        "bearer",
        "https://w.example/service/token",
        "wharf-registry",
    )
    assert bearer.scope == "repository:a/b:pull,push"
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None
    assert (basic.scheme, basic.realm) == ("basic", "Registry Realm")
    assert parse_challenge("") is None
    assert parse_challenge(None) is None


def test_tokens_expire_before_they_run_out() -> None:
    time = FakeTime()
    cache = TokenCache(time.clock)
    key = ("repository:a/b:pull",)
    cache.put(key, "t1", 60)
    time.now = 49
    assert cache.get(key) == "t1"
    time.now = 50  # ten seconds before the end: fetched again
    assert cache.get(key) is None
    cache.put(key, "t2", 4)  # a short one: half its life
    time.now = 51.9
    assert cache.get(key) == "t2"
    time.now = 52
    assert cache.get(key) is None


def test_mount_hints_keep_the_most_recently_used() -> None:
    hints = MountHints(capacity=2)
    hints.put("sha256:a", "r1")
    hints.put("sha256:b", "r2")
    assert hints.get("sha256:a") == "r1"  # now the most recent
    hints.put("sha256:c", "r3")
    assert (hints.get("sha256:a"), hints.get("sha256:b"), hints.get("sha256:c")) == ("r1", None, "r3")
    assert len(hints) == 2


def test_upload_ranges_and_error_bodies() -> None:
    assert _range_end("0-0") == 0
    assert _range_end("0-1023") == 1024
    assert _range_end("bytes=0-9") == 10
    assert _range_end(None) is None
    assert _range_end("garbage") is None
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access is denied"}]}).encode()
    assert _code_and_message(body) == "DENIED: requested access is denied"
    assert _code_and_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"


def test_schema_1_is_refused() -> None:
    body = json.dumps({"schemaVersion": 1, "name": "a/b", "tag": "v1", "fsLayers": []}).encode()
    manifest = Manifest(
        "sha256:" + "0" * 64, "application/vnd.docker.distribution.manifest.v1+prettyjws", body
    )
    with pytest.raises(RemoteError, match="schema 1") as caught:
        _document(manifest)
    assert not caught.value.transient


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        RemoteRegistry(None, Endpoint("http://x", "quay"))  # type: ignore[arg-type]
