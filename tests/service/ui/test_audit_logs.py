"""`/api/v2.0/audit-logs` and `/api/v2.0/projects/{project_name_or_id}/logs` over rows the job
service's consumer would write (seeded through `wharf_shared.db.audit.record`), for every role,
each refusal with Harbor's code and status, on each database."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from tests.service.ui.test_users import error
from wharf_shared.db import audit, projects
from wharf_shared.db.audit import AuditRecord
from wharf_shared.rbac import Role

PASSWORD = "Member-secret-1"
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
ROLES = {
    "padmin": Role.PROJECT_ADMIN,
    "maint": Role.MAINTAINER,
    "dev": Role.DEVELOPER,
    "guest": Role.GUEST,
    "limited": Role.LIMITED_GUEST,
}


@dataclass
class Seeded:
    ui: Ui
    private_id: int  # `secret`, private, a member of each role
    public_id: int  # `open`, public, alice is no member
    numeric_id: int  # a project named "4242"


def record(
    n: int, resource_type: str, resource: str, operation: str, username: str, **kw: Any
) -> AuditRecord:
    return AuditRecord(
        f"event-{n}", resource_type, resource, operation, username, T0 + dt.timedelta(minutes=n), **kw
    )


@pytest.fixture
async def seeded(ui: Ui) -> Seeded:
    private_id = await ui.add_project("secret", ui.admin_id)
    public_id = await ui.add_project("open", ui.admin_id, public=True)
    numeric_id = await ui.add_project("4242", ui.admin_id)
    for name, role in ROLES.items():
        user_id = await ui.add_user(name, PASSWORD)

        async def member(conn: Any, user_id: int = user_id, role: Role = role) -> None:
            await projects.set_member(conn, private_id, user_id, role)
            await projects.set_member(conn, numeric_id, user_id, role)

        await ui.db_call(member)
    rows = [
        record(1, "user", "alice", "login", "alice"),
        record(2, "artifact", "secret/app:v1", "create", "dev", project="secret"),
        record(3, "artifact", "secret/app:v1", "pull", "guest", project="secret"),
        record(4, "artifact", "open/web:latest", "create", "admin", project="open"),
        record(5, "artifact", "open/web:latest", "pull", "anonymous", project="open"),
        record(6, "tag", "secret/app:v1", "delete", "maint", project="secret"),
        record(7, "user", "bob", "create", "admin"),
        record(8, "artifact", "4242/x@sha256:" + "a" * 64, "create", "padmin", project="4242"),
    ]

    async def seed(conn: Any) -> None:
        await audit.record(conn, rows)

    await ui.db_call(seed)
    return Seeded(ui, private_id, public_id, numeric_id)


def member(name: str) -> dict[str, str]:
    return basic(name, PASSWORD)


async def listed(resp: Any) -> list[dict[str, Any]]:
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    body: list[dict[str, Any]] = await resp.json()
    return body


# -- /audit-logs -------------------------------------------------------------------------------


async def test_sysadmin_reads_every_row_newest_first(seeded: Seeded) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", params={"page_size": "100"}, headers=ADMIN)
    body = await listed(resp)
    assert resp.headers["X-Total-Count"] == "8"
    assert "Link" not in resp.headers
    assert [row["resource"] for row in body][:2] == ["4242/x@sha256:" + "a" * 64, "bob"]
    first = body[0]
    assert set(first) == {
        "id",
        "username",
        "resource",
        "resource_type",
        "operation",
        "op_time",
        "operation_description",
    }
    assert first["username"] == "padmin"
    assert first["resource_type"] == "artifact"
    assert first["operation"] == "create"
    assert first["op_time"] == "2026-03-01T12:08:00.000Z"
    assert isinstance(first["id"], int)
    times = [row["op_time"] for row in body]
    assert times == sorted(times, reverse=True)


async def test_same_instant_rows_come_newest_id_first(ui: Ui) -> None:
    same = [AuditRecord(f"same-{n}", "user", f"u{n}", "create", "admin", T0) for n in range(3)]

    async def seed(conn: Any) -> None:
        await audit.record(conn, same)

    await ui.db_call(seed)
    body = await listed(await ui.client.get("/api/v2.0/audit-logs", headers=ADMIN))
    ids = [row["id"] for row in body]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("username=admin", {"open/web:latest", "bob"}),
        ("resource=~secret/", {"secret/app:v1"}),
        ("resource_type=tag", {"secret/app:v1"}),
        ("operation=pull", {"secret/app:v1", "open/web:latest"}),
        ("operation={login delete}", {"alice", "secret/app:v1"}),
        ("op_time=[2026-03-01 12:02:00~2026-03-01 12:03:00]", {"secret/app:v1"}),
        ("op_time=[2026-03-01T12:07:00Z~]", {"bob", "4242/x@sha256:" + "a" * 64}),
        ("resource_type=artifact,username=dev", {"secret/app:v1"}),
    ],
)
async def test_q_filters(seeded: Seeded, q: str, expected: set[str]) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", params={"q": q}, headers=ADMIN)
    body = await listed(resp)
    assert {row["resource"] for row in body} == expected
    assert resp.headers["X-Total-Count"] == str(len(body))


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"q": "project_id=1"}, "unknown key"),
        ({"q": "op_time=yesterday"}, "op_time"),
        ({"q": "op_time=~2026"}, "op_time"),
        ({"q": "username=[a~b]"}, "username"),
        ({"sort": "size"}, "sort"),
        ({"page_size": "101"}, "page_size"),
        ({"page": "0"}, "page"),
    ],
)
async def test_bad_list_parameters_are_400(seeded: Seeded, params: dict[str, str], word: str) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", params=params, headers=ADMIN)
    assert word in await error(resp, 400, "BAD_REQUEST")


async def test_sort_oldest_first(seeded: Seeded) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", params={"sort": "op_time"}, headers=ADMIN)
    body = await listed(resp)
    assert body[0]["resource"] == "alice"
    assert body[0]["operation"] == "login"


async def test_pages_and_links(seeded: Seeded) -> None:
    params = {"page_size": "3", "q": "resource_type=artifact"}
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", params=params, headers=ADMIN)
    first = await listed(resp)
    assert len(first) == 3
    assert resp.headers["X-Total-Count"] == "5"
    link = resp.headers["Link"]
    assert 'rel="next"' in link
    assert 'rel="prev"' not in link
    target = re.match(r"<([^>]+)>", link)
    assert target is not None
    assert target.group(1).startswith("/api/v2.0/audit-logs?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target.group(1)).query)
    assert query == {"page_size": ["3"], "q": ["resource_type=artifact"], "page": ["2"]}
    resp = await seeded.ui.client.get(target.group(1), headers=ADMIN)
    second = await listed(resp)
    assert len(second) == 2
    assert 'rel="prev"' in resp.headers["Link"]
    assert 'rel="next"' not in resp.headers["Link"]
    assert not {row["id"] for row in first} & {row["id"] for row in second}


@pytest.mark.parametrize("name", [*ROLES, "alice"])
async def test_only_sysadmins_read_the_whole_log(seeded: Seeded, name: str) -> None:
    headers = ALICE if name == "alice" else member(name)
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", headers=headers)
    await error(resp, 403, "FORBIDDEN")


async def test_anonymous_is_asked_to_sign_in(seeded: Seeded) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", headers=ANONYMOUS)
    await error(resp, 401, "UNAUTHORIZED")


async def test_wrong_password_is_401_not_anonymous(seeded: Seeded) -> None:
    resp = await seeded.ui.client.get("/api/v2.0/audit-logs", headers=basic("admin", "wrong-password-1"))
    await error(resp, 401, "UNAUTHORIZED")


# -- /projects/{project_name_or_id}/logs ---------------------------------------------------------


def logs_path(project: int | str) -> str:
    return f"/api/v2.0/projects/{project}/logs"


@pytest.mark.parametrize("who", ["admin", "padmin"])
async def test_sysadmin_and_project_admin_read_a_projects_log(seeded: Seeded, who: str) -> None:
    headers = ADMIN if who == "admin" else member(who)
    for ref in (seeded.private_id, "secret"):
        resp = await seeded.ui.client.get(logs_path(ref), headers=headers)
        body = await listed(resp)
        assert resp.headers["X-Total-Count"] == "3"
        assert [(row["operation"], row["username"]) for row in body] == [
            ("delete", "maint"),
            ("pull", "guest"),
            ("create", "dev"),
        ]


@pytest.mark.parametrize("who", ["maint", "dev", "guest", "limited"])
async def test_other_members_may_not_read_the_log(seeded: Seeded, who: str) -> None:
    resp = await seeded.ui.client.get(logs_path(seeded.private_id), headers=member(who))
    message = await error(resp, 403, "FORBIDDEN")
    assert "log:list" in message


async def test_a_private_project_log_is_refused_to_non_members(seeded: Seeded) -> None:
    # As every /projects/{p}/… path (wharf_ui.projects.resolve_project): 403 once signed in.
    for ref in (seeded.private_id, "secret"):
        resp = await seeded.ui.client.get(logs_path(ref), headers=ALICE)
        await error(resp, 403, "FORBIDDEN")
    for ref in (999999, "nothing"):  # as one that does not exist; a system admin learns it does not
        resp = await seeded.ui.client.get(logs_path(ref), headers=ALICE)
        await error(resp, 403, "FORBIDDEN")
        resp = await seeded.ui.client.get(logs_path(ref), headers=ADMIN)
        await error(resp, 404, "NOT_FOUND")


async def test_a_public_project_is_seen_but_its_log_is_not_for_non_members(seeded: Seeded) -> None:
    resp = await seeded.ui.client.get(logs_path("open"), headers=ALICE)
    await error(resp, 403, "FORBIDDEN")
    body = await listed(await seeded.ui.client.get(logs_path("open"), headers=ADMIN))
    assert {row["username"] for row in body} == {"admin", "anonymous"}


@pytest.mark.parametrize("ref", ["secret", "open", "nothing", "1"])
async def test_anonymous_callers_sign_in_first(seeded: Seeded, ref: str) -> None:
    await seeded.ui.set_runtime(anonymous_access=True)
    resp = await seeded.ui.client.get(logs_path(ref), headers=ANONYMOUS)
    await error(resp, 401, "UNAUTHORIZED")


async def test_a_number_is_an_id_unless_the_header_says_name(seeded: Seeded) -> None:
    client = seeded.ui.client
    by_name = await listed(
        await client.get(logs_path("4242"), headers={**ADMIN, "X-Is-Resource-Name": "true"})
    )
    assert [row["username"] for row in by_name] == ["padmin"]
    by_id = await listed(await client.get(logs_path(seeded.numeric_id), headers=member("padmin")))
    assert by_id == by_name
    # "4242" without the header is an id, and no project has it.
    resp = await client.get(logs_path("4242"), headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize("ref", ["0", "99999999999999999999"])
async def test_an_impossible_id_names_no_project(seeded: Seeded, ref: str) -> None:
    resp = await seeded.ui.client.get(logs_path(ref), headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")


async def test_project_log_takes_q_sort_and_pages(seeded: Seeded) -> None:
    client = seeded.ui.client
    params = {"q": "operation=~e", "sort": "op_time", "page_size": "1"}
    resp = await client.get(logs_path("secret"), params=params, headers=member("padmin"))
    body = await listed(resp)
    assert [row["operation"] for row in body] == ["create"]
    assert resp.headers["X-Total-Count"] == "2"
    assert resp.headers["Link"].startswith("</api/v2.0/projects/secret/logs?")
    resp = await client.get(logs_path("secret"), params={"q": "nope=1"}, headers=member("padmin"))
    await error(resp, 400, "BAD_REQUEST")
