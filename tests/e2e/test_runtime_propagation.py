"""Runtime settings across real processes: a change made through one ui process reaches, within
a second, two registry processes, the token process and the other ui process, and the job
service's leader (its directory syncs), each with its periodic re-read set to an hour (only the
Redis announcement can explain it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support import backends
from tests.support.processes import ServiceProcess, free_port, jobservice_worker_process
from tests.support.suite import Suite, start_suite
from wharf_shared.runtime import READ_ONLY_MESSAGE

pytestmark = pytest.mark.e2e

ADMIN = ("admin", "Runtime-e2e-admin-1")
SCOPE = "repository:library/app:pull,push"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("runtime")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN[1],
            registry_hosts=("127.0.0.1", "127.0.0.2"),
            ui_hosts=("127.0.0.2", "127.0.0.3"),
            extra_env={"WHARF_RUNTIME_REREAD_SECONDS": "3600"},
        )
        try:
            yield suite
        finally:
            suite.stop()


def by(deadline: float, check: Callable[[], bool]) -> None:
    """Poll `check()` until it holds; fail once `deadline` (monotonic) has passed."""
    while not check():
        assert time.monotonic() < deadline, "not seen within a second of the change"
        time.sleep(0.01)


def test_a_change_through_one_ui_reaches_every_process(suite: Suite) -> None:
    token_url = suite.tokens[0].url + "/service/token"

    def token() -> dict[str, object]:
        params = {"service": "wharf-registry", "scope": SCOPE}
        answer = requests.get(token_url, params=params, auth=ADMIN, timeout=10)
        answer.raise_for_status()
        body: dict[str, object] = answer.json()
        return body

    def upload_status(registry_url: str) -> tuple[int, dict[str, object]]:
        bearer = {"Authorization": f"Bearer {token()['token']}"}
        answer = requests.post(f"{registry_url}/v2/library/app/blobs/uploads/", headers=bearer, timeout=10)
        return answer.status_code, answer.json() if answer.status_code == 403 else {}

    def configure(ui_url: str, **values: object) -> None:
        answer = requests.put(f"{ui_url}/api/v2.0/configurations", json=values, auth=ADMIN, timeout=10)
        assert answer.status_code == 200, answer.text

    # Each process reads (and, for an hour, keeps) the settings as they are.
    assert token()["expires_in"] == 1800
    for registry in suite.registries:
        assert upload_status(registry.url)[0] == 202
    other_ui = suite.uis[1].url + "/api/v2.0/systeminfo"
    assert requests.get(other_ui, auth=ADMIN, timeout=10).json()["read_only"] is False

    configure(suite.uis[0].url, read_only=True, token_expiration=2)
    deadline = time.monotonic() + 1.0
    by(deadline, lambda: token()["expires_in"] == 120)
    for registry in suite.registries:
        by(deadline, lambda url=registry.url: upload_status(url)[0] == 403)  # type: ignore[misc]
        _, body = upload_status(registry.url)
        assert body["errors"][0]["code"] == "DENIED"  # type: ignore[index]
        assert body["errors"][0]["message"] == READ_ONLY_MESSAGE  # type: ignore[index]
    by(deadline, lambda: requests.get(other_ui, auth=ADMIN, timeout=10).json()["read_only"] is True)

    configure(suite.uis[1].url, read_only=False, token_expiration=30)
    deadline = time.monotonic() + 1.0
    for registry in suite.registries:
        by(deadline, lambda url=registry.url: upload_status(url)[0] == 202)  # type: ignore[misc]
    by(deadline, lambda: token()["expires_in"] == 1800)


@pytest.fixture
def worker(suite: Suite, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A job service worker (the leader's syncs run there), its re-read an hour as the others'."""
    process = jobservice_worker_process(suite.env, tmp_path / "logs", port=free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_the_job_services_syncs_hear_a_change(suite: Suite, worker: ServiceProcess) -> None:
    """The leader's LDAP group sync reads the directory's settings through the process's cache:
    asked for a run before and after `ldap_url` is set, it sees the new value at once."""
    ui = suite.uis[0].url + "/api/v2.0"

    def sync_error() -> str:
        asked = requests.post(f"{ui}/ldap/groups/sync", auth=ADMIN, timeout=10)
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["request_id"]
        deadline = time.monotonic() + 30
        while True:
            answer = requests.get(f"{ui}/ldap/groups/sync", auth=ADMIN, timeout=10)
            if answer.status_code == 200:
                report = answer.json()
                if report["request_id"] == request_id and report["finished_at"]:
                    return str(report["error"])
            assert time.monotonic() < deadline, "the job service did not answer the sync request"
            time.sleep(0.05)

    assert sync_error() == "ldap_url is not set"  # read, and kept for an hour but for announcements
    answer = requests.put(
        f"{ui}/configurations", json={"ldap_url": f"ldap://127.0.0.1:{free_port()}"}, auth=ADMIN, timeout=10
    )
    assert answer.status_code == 200, answer.text
    error = sync_error()
    assert error != "ldap_url is not set"  # the new setting was read (whatever the directory says)
