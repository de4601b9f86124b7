"""The ui service as processes behind the proxy (two instances on hosts of their own, no session
affinity), called as scripts call Harbor: curl with Basic auth through the one front door. Then
schemathesis against a live wharf-ui over our own OpenAPI document, as the admin: no 5xx and no
answer outside the document, whatever it generates."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support import backends
from tests.support.suite import Suite, start_suite
from wharf_ui.openapi import DOCUMENT

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "Ui-e2e-admin-1"
ADMIN = ("admin", ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("ui-api")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            ui_hosts=("127.0.0.2", "127.0.0.3"),
            # schemathesis sends wrong credentials on purpose, many times: no lockout here.
            extra_env={
                "WHARF_TOKEN__THROTTLE_FAILURES": "1000000",
                "WHARF_TOKEN__THROTTLE_ADDRESS_FAILURES": "1000000",
            },
        )
        try:
            yield suite
        finally:
            suite.stop()


def curl(
    url: str, *args: str, user: tuple[str, str] | None = None, body: object = None
) -> tuple[int, dict[str, str], str]:
    """`curl -s -i [-u user:password] [--json body] url`: status, headers, body."""
    argv = ["curl", "-s", "-i", "--noproxy", "*", "--max-time", "30", *args]
    if user is not None:
        argv += ["-u", f"{user[0]}:{user[1]}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    out = subprocess.run([*argv, url], capture_output=True, check=True, timeout=60).stdout.decode()
    head, _, text = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, text


def test_ping_through_the_proxy(suite: Suite) -> None:
    status, _, text = curl(f"{suite.url}/api/v2.0/ping")
    assert (status, text) == (200, "Pong")


def test_users_through_the_proxy_with_basic_auth(suite: Suite) -> None:
    status, headers, _ = curl(
        f"{suite.url}/api/v2.0/users",
        "-X",
        "POST",
        user=ADMIN,
        body={"username": "carl", "password": "Carl-secret-1", "email": "carl@example.test"},
    )
    assert status == 201
    user_id = int(headers["location"].rsplit("/", 1)[1])
    # Each request may land on either ui instance: none keeps anything the other lacks.
    for _ in range(4):
        status, _, text = curl(f"{suite.url}/api/v2.0/users/current", user=("carl", "Carl-secret-1"))
        assert status == 200
        assert json.loads(text)["user_id"] == user_id
    # admin and carl, whatever else other tests in this module have added.
    status, headers, text = curl(
        f"{suite.url}/api/v2.0/users?q=username%3D%7Badmin%20carl%7D&page_size=1", user=ADMIN
    )
    assert status == 200
    assert headers["x-total-count"] == "2"
    assert (
        headers["link"] == '</api/v2.0/users?q=username%3D%7Badmin%20carl%7D&page_size=1&page=2>; rel="next"'
    )
    assert [u["username"] for u in json.loads(text)] == ["admin"]
    status, _, text = curl(f"{suite.url}/api/v2.0/users", user=("carl", "wrong"))
    assert status == 401
    assert json.loads(text)["errors"][0]["code"] == "UNAUTHORIZED"
    status, _, text = curl(f"{suite.url}/api/v2.0/nothing-here", user=ADMIN)
    assert status == 404
    assert json.loads(text)["errors"][0]["code"] == "NOT_FOUND"


def test_projects_members_and_search_through_the_proxy(suite: Suite) -> None:
    """Harbor's routine with curl: a user makes a private project, adds a colleague as developer;
    the colleague sees it (list, search) only from then on, and may not delete it."""
    api = f"{suite.url}/api/v2.0"
    dana, erin = ("dana", "Dana-secret-1"), ("erin", "Erin-secret-1")
    for name, password in (dana, erin):
        body = {"username": name, "password": password, "email": f"{name}@example.test"}
        assert curl(f"{api}/users", "-X", "POST", user=ADMIN, body=body)[0] == 201
    status, headers, _ = curl(f"{api}/projects", "-X", "POST", user=dana, body={"project_name": "dana-team"})
    assert status == 201
    project_id = int(headers["location"].rsplit("/", 1)[1])
    assert headers["location"] == f"/api/v2.0/projects/{project_id}"
    assert curl(f"{api}/projects?project_name=dana-team", "-I", user=erin)[0] == 200
    status, _, text = curl(f"{api}/projects/{project_id}", user=erin)
    assert (status, json.loads(text)["errors"][0]["code"]) == (403, "FORBIDDEN")
    assert "dana-team" not in [p["name"] for p in json.loads(curl(f"{api}/projects", user=erin)[2])]
    assert json.loads(curl(f"{api}/search?q=dana", user=erin)[2])["project"] == []
    member = {"role_id": 2, "member_user": {"username": "erin"}}
    status, headers, _ = curl(f"{api}/projects/dana-team/members", "-X", "POST", user=dana, body=member)
    assert status == 201
    # Either ui instance answers each request: none keeps anything the other lacks.
    for _ in range(3):
        status, _, text = curl(f"{api}/projects/dana-team", user=erin)
        assert status == 200
        assert json.loads(text)["current_user_role_id"] == 2
    assert [p["name"] for p in json.loads(curl(f"{api}/search?q=dana", user=erin)[2])["project"]] == [
        "dana-team"
    ]
    status, _, text = curl(f"{api}/projects/{project_id}/members", user=erin)
    assert sorted((m["entity_name"], m["role_name"]) for m in json.loads(text)) == [
        ("dana", "projectAdmin"),
        ("erin", "developer"),
    ]
    status, _, text = curl(f"{api}/projects/{project_id}", "-X", "DELETE", user=erin)
    assert (status, json.loads(text)["errors"][0]["code"]) == (403, "FORBIDDEN")
    assert curl(f"{api}/projects/{project_id}", "-X", "DELETE", user=dana)[0] == 200
    # Gone: its former admin is told no more than anyone (403), a system admin that it is not there.
    assert curl(f"{api}/projects/{project_id}", user=dana)[0] == 403
    assert curl(f"{api}/projects/{project_id}", user=ADMIN)[0] == 404


def test_systeminfo_names_the_front_door(suite: Suite) -> None:
    status, _, text = curl(f"{suite.url}/api/v2.0/systeminfo", user=ADMIN)
    assert status == 200
    info = json.loads(text)
    assert info["external_url"] == suite.url
    assert info["registry_url"] == suite.address


@pytest.fixture(scope="module")
def ui_url(suite: Suite) -> str:
    return suite.uis[0].url + "/api/v2.0"


OPERATIONS = [(path, method) for path, methods in DOCUMENT["paths"].items() for method in methods]


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_the_document_holds_for_whatever_is_sent(ui_url: str, path: str, method: str) -> None:
    operation = schemathesis.openapi.from_dict(DOCUMENT)[path][method]
    # What PUT /configurations generates (read-only mode, a one-minute token...) must not
    # outlive its example: the other operations run against the settings as they were.
    restore = _settings_now(ui_url) if (path, method) == ("/configurations", "put") else None

    @given(case=operation.as_strategy())
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        # Every check but "schema-valid data is accepted": the document cannot state every rule
        # a valid request must meet (the password policy, q's grammar, unique names), and such
        # refusals are 400/409 with Harbor's body, which the other checks hold to the document.
        case.call_and_validate(
            base_url=ui_url,
            auth=ADMIN,
            timeout=30,
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
        if restore is not None:
            requests.put(f"{ui_url}/configurations", json=restore, auth=ADMIN, timeout=30).raise_for_status()

    call()


def _settings_now(ui_url: str) -> dict[str, object]:
    answer = requests.get(f"{ui_url}/configurations", auth=ADMIN, timeout=30)
    answer.raise_for_status()
    return {key: item["value"] for key, item in answer.json().items()}
