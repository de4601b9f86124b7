"""`/api/v2.0/replication/policies…`: CRUD on each database in Harbor's shape, push- and
pull-based policies and Wharf's `every_registry`, the validation messages, deletion with its
executions (refused while one runs), and the role matrix."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui
from tests.service.ui.test_users import error
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

API = "/api/v2.0"
POLICIES = f"{API}/replication/policies"


async def add_registry(ui: Ui, name: str = "peer", kind: str = "harbor") -> int:
    body = {
        "name": name,
        "type": kind,
        "url": f"https://{name}.example.test",
        "credential": {"access_key": "u", "access_secret": "p"},
    }
    resp = await ui.client.post(f"{API}/registries", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def create(ui: Ui, body: dict[str, Any]) -> int:
    resp = await ui.client.post(POLICIES, json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    policy_id = int(location.rsplit("/", 1)[1])
    assert location == f"{POLICIES}/{policy_id}"
    return policy_id


async def get(ui: Ui, policy_id: int) -> dict[str, Any]:
    resp = await ui.client.get(f"{POLICIES}/{policy_id}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_push_based_policy_in_harbors_shape(ui: Ui) -> None:
    registry_id = await add_registry(ui)
    policy_id = await create(
        ui,
        {
            "name": "to-peer",
            "description": "everything under team/",
            "src_registry": {"id": 0},
            "dest_registry": {"id": registry_id, "name": "ignored"},
            "dest_namespace": "mirror",
            "dest_namespace_replace_count": 1,
            "trigger": {"type": "scheduled", "trigger_settings": {"cron": "0  0 2 * * *"}},
            "filters": [
                {"type": "name", "value": "team/**"},
                {"type": "tag", "value": "v*", "decoration": "excludes"},
            ],
            "replicate_deletion": True,
            "override": False,
            "enabled": True,
            "speed": 1024,
            "copy_by_chunk": True,
        },
    )
    got = await get(ui, policy_id)
    assert got["id"] == policy_id
    assert got["name"] == "to-peer"
    assert got["description"] == "everything under team/"
    assert got["src_registry"]["id"] == 0  # this Wharf, as Harbor shows its own side
    assert got["src_registry"]["url"] == "https://wharf.example.test"
    assert got["dest_registry"]["id"] == registry_id
    assert got["dest_registry"]["name"] == "peer"
    assert got["dest_registry"]["credential"]["access_secret"] == "*****"
    assert got["every_registry"] is False
    assert (got["dest_namespace"], got["dest_namespace_replace_count"]) == ("mirror", 1)
    assert got["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 2 * * *"}}
    assert got["filters"] == [
        {"type": "name", "value": "team/**", "decoration": "matches"},
        {"type": "tag", "value": "v*", "decoration": "excludes"},
    ]
    assert got["replicate_deletion"] is True
    assert got["deletion"] is True
    assert (got["override"], got["enabled"], got["speed"], got["copy_by_chunk"]) == (False, True, 1024, True)
    assert got["creation_time"].endswith("Z")
    assert got["update_time"].endswith("Z")


async def test_defaults_and_a_pull_based_policy(ui: Ui) -> None:
    registry_id = await add_registry(ui, kind="docker-registry")
    policy_id = await create(
        ui, {"name": "from-hub", "src_registry": {"id": registry_id}, "dest_registry": None}
    )
    got = await get(ui, policy_id)
    assert got["src_registry"]["id"] == registry_id
    assert got["dest_registry"]["id"] == 0
    assert got["trigger"] == {"type": "manual", "trigger_settings": {"cron": ""}}
    assert (got["enabled"], got["override"], got["replicate_deletion"]) == (True, True, False)
    assert (got["speed"], got["dest_namespace_replace_count"], got["filters"]) == (-1, -1, [])


async def test_every_registry(ui: Ui) -> None:
    policy_id = await create(
        ui,
        {
            "name": "everywhere",
            "every_registry": True,
            "filters": [{"type": "name", "value": "**"}],
            "trigger": {"type": "event_based"},
        },
    )
    got = await get(ui, policy_id)
    assert got["every_registry"] is True
    assert got["dest_registry"] is None
    assert got["src_registry"]["id"] == 0
    assert got["trigger"]["type"] == "event_based"

    async def row(conn: Any) -> Any:
        c = t.replication_policy.c
        return (
            await conn.execute(
                select(c.src_registry_id, c.dest_registry_id, c.every_registry).where(c.id == policy_id)
            )
        ).one()

    assert tuple(await ui.db_call(row)) == (None, None, True)


async def test_update_merges_and_recomputes_the_direction(ui: Ui) -> None:
    first = await add_registry(ui, "first")
    second = await add_registry(ui, "second")
    policy_id = await create(ui, {"name": "p", "dest_registry": {"id": first}, "override": False})
    before = await get(ui, policy_id)
    resp = await ui.client.put(
        f"{POLICIES}/{policy_id}", json={"description": "now described"}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    got = await get(ui, policy_id)
    assert got["description"] == "now described"
    assert (got["dest_registry"]["id"], got["override"], got["name"]) == (first, False, "p")
    assert got["creation_time"] == before["creation_time"]
    resp = await ui.client.put(
        f"{POLICIES}/{policy_id}", json={"src_registry": {"id": second}}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    got = await get(ui, policy_id)
    assert (got["src_registry"]["id"], got["dest_registry"]["id"]) == (second, 0)
    resp = await ui.client.put(
        f"{POLICIES}/{policy_id}", json={"trigger": {"type": "event_based"}}, headers=ADMIN
    )
    assert "push-based" in await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.put(f"{POLICIES}/999999", json={"description": "x"}, headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")


async def test_names_are_unique(ui: Ui) -> None:
    registry_id = await add_registry(ui)
    await create(ui, {"name": "p", "dest_registry": {"id": registry_id}})
    other = await create(ui, {"name": "q", "dest_registry": {"id": registry_id}})
    resp = await ui.client.post(
        POLICIES, json={"name": "p", "dest_registry": {"id": registry_id}}, headers=ADMIN
    )
    assert "'p'" in await error(resp, 409, "CONFLICT")
    resp = await ui.client.put(f"{POLICIES}/{other}", json={"name": "p"}, headers=ADMIN)
    await error(resp, 409, "CONFLICT")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": None}, "name: required"),
        ({"name": "  "}, "name: required"),
        ({"dest_registry": None}, "must be a registered registry"),
        ({"dest_registry": {"id": 424242}}, "dest_registry: no registry with id 424242"),
        ({"src_registry": {"id": 424243}, "dest_registry": None}, "src_registry: no registry with id 424243"),
        ({"src_registry": {"id": "REG"}}, "both remote"),
        ({"dest_registry": {"id": -1}}, "no registry id"),
        ({"every_registry": True}, "replaces dest_registry"),
        ({"every_registry": True, "dest_registry": None, "src_registry": {"id": "REG"}}, "push-based"),
        ({"trigger": {"type": "sometimes"}}, "trigger.type: one of manual, scheduled, event_based"),
        ({"trigger": {}}, "trigger.type"),
        ({"trigger": {"type": "scheduled"}}, "needs a cron expression"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 2 * * *"}}}, "6 fields"),
        ({"trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 0 99 * * *"}}}, "not valid"),
        ({"filters": [{"type": "label", "value": "x"}]}, "label filters are not supported"),
        ({"filters": [{"type": "name", "value": 5}]}, "must be a string"),
        ({"filters": [{"type": "name"}, {"type": "name"}]}, "only one name filter"),
        ({"filters": [{"type": "resource", "value": "chart"}]}, "image or artifact"),
        ({"dest_namespace": "Bad Namespace"}, "dest_namespace"),
        ({"dest_namespace_replace_count": -2}, "dest_namespace_replace_count"),
        ({"dest_namespace_replace_count": 128}, "dest_namespace_replace_count"),
        ({"speed": 2**31}, "speed"),
        ({"enabled": "yes"}, "enabled"),
        ({"filters": "x"}, "filters"),
    ],
)
async def test_validation_messages(ui: Ui, change: dict[str, Any], needle: str) -> None:
    registry_id = await add_registry(ui)
    body: dict[str, Any] = {"name": "p", "dest_registry": {"id": registry_id}}
    for key, value in change.items():
        if value is None and key == "name":
            body.pop("name")
        elif isinstance(value, dict) and value.get("id") == "REG":
            body[key] = {"id": registry_id}
        else:
            body[key] = value
    resp = await ui.client.post(POLICIES, json=body, headers=ADMIN)
    assert needle in await error(resp, 400, "BAD_REQUEST")


async def test_the_deprecated_deletion_field_and_negative_speed(ui: Ui) -> None:
    registry_id = await add_registry(ui)
    policy_id = await create(
        ui, {"name": "p", "dest_registry": {"id": registry_id}, "deletion": True, "speed": -5}
    )
    got = await get(ui, policy_id)
    assert (got["replicate_deletion"], got["speed"]) == (True, -1)


async def test_list_filters_and_pages(ui: Ui) -> None:
    registry_id = await add_registry(ui)
    for name in ("alpha", "beta", "gamma"):
        await create(ui, {"name": name, "dest_registry": {"id": registry_id}, "enabled": name != "beta"})
    resp = await ui.client.get(f"{POLICIES}?name=mm", headers=ADMIN)
    assert [x["name"] for x in await resp.json()] == ["gamma"]
    resp = await ui.client.get(f"{POLICIES}?q=enabled%3Dtrue&sort=-name&page_size=1", headers=ADMIN)
    assert resp.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in resp.headers["Link"]
    page = await resp.json()
    assert [x["name"] for x in page] == ["gamma"]
    assert page[0]["dest_registry"]["id"] == registry_id
    resp = await ui.client.get(f"{POLICIES}?sort=nope", headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")


async def add_execution(ui: Ui, policy_id: int, status: str) -> int:
    async def go(conn: Any) -> int:
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        now = utcnow()
        task = await conn.execute(
            t.task.insert().values(
                execution_id=execution_id,
                status=jobs.SUCCESS,
                job="{}",
                operation="copy",
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            t.task_log.insert().values(task_id=task.inserted_primary_key[0], time=now, line="copied")
        )
        await conn.execute(t.execution.update().where(t.execution.c.id == execution_id).values(status=status))
        return execution_id

    result: int = await ui.db_call(go)
    return result


async def test_delete_removes_its_executions_and_is_refused_while_one_runs(ui: Ui) -> None:
    registry_id = await add_registry(ui)
    policy_id = await create(ui, {"name": "p", "dest_registry": {"id": registry_id}})
    await add_execution(ui, policy_id, jobs.SUCCESS)
    running = await add_execution(ui, policy_id, jobs.RUNNING)
    message = await error(
        await ui.client.delete(f"{POLICIES}/{policy_id}", headers=ADMIN), 412, "PRECONDITION"
    )
    assert f"execution {running}" in message
    assert (await ui.client.put(f"{API}/replication/executions/{running}", headers=ADMIN)).status == 200
    assert (await ui.client.delete(f"{POLICIES}/{policy_id}", headers=ADMIN)).status == 200
    await error(await ui.client.get(f"{POLICIES}/{policy_id}", headers=ADMIN), 404, "NOT_FOUND")

    async def counts(conn: Any) -> list[int]:
        return [
            (await conn.execute(select(func.count()).select_from(table))).scalar()
            for table in (t.execution, t.task, t.task_log)
        ]

    assert await ui.db_call(counts) == [0, 0, 0]
    await error(await ui.client.delete(f"{POLICIES}/{policy_id}", headers=ADMIN), 404, "NOT_FOUND")


ROUTES = [
    ("GET", "/replication/policies"),
    ("POST", "/replication/policies"),
    ("GET", "/replication/policies/1"),
    ("PUT", "/replication/policies/1"),
    ("DELETE", "/replication/policies/1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_only_system_admins(ui: Ui, method: str, path: str) -> None:
    registry_id = await add_registry(ui)
    policy_id = await create(ui, {"name": "p", "dest_registry": {"id": registry_id}})
    path = path.replace("/1", f"/{policy_id}")
    body = {"name": "q", "dest_registry": {"id": registry_id}} if method in ("POST", "PUT") else None
    await error(await ui.client.request(method, API + path, json=body, headers=ALICE), 403, "FORBIDDEN")
    await error(
        await ui.client.request(method, API + path, json=body, headers=ANONYMOUS), 401, "UNAUTHORIZED"
    )
    assert (await get(ui, policy_id))["name"] == "p"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dest_registry": {"id": 2**70}}, "no registry id"),
        (
            {
                "trigger": {
                    "type": "scheduled",
                    "trigger_settings": {"cron": "0 " + ",".join(map(str, range(60))) + " * * * *"},
                }
            },
            "at most 128",
        ),
    ],
)
async def test_values_beyond_the_columns_are_400(ui: Ui, change: dict[str, Any], needle: str) -> None:
    registry_id = await add_registry(ui)
    body = {"name": "p", "dest_registry": {"id": registry_id}, **change}
    resp = await ui.client.post(POLICIES, json=body, headers=ADMIN)
    assert needle in await error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("kind", ["push", "pull", "every"])
async def test_what_a_get_returns_a_put_takes_back_unchanged(ui: Ui, kind: str) -> None:
    """Clients edit a policy by sending back what they read, Harbor's local registry object and all."""
    registry_id = await add_registry(ui)
    body: dict[str, Any] = {
        "push": {"dest_registry": {"id": registry_id}},
        "pull": {"src_registry": {"id": registry_id}},
        "every": {"every_registry": True},
    }[kind]
    schedule = {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * 1"}}
    policy_id = await create(ui, {"name": "p", "trigger": schedule, **body})
    before = await get(ui, policy_id)
    resp = await ui.client.put(f"{POLICIES}/{policy_id}", json=before, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    after = await get(ui, policy_id)
    assert {k: v for k, v in after.items() if k != "update_time"} == {
        k: v for k, v in before.items() if k != "update_time"
    }
