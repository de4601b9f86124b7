"""`/api/v2.0/replication/executions…`: starting one (a Running execution row, then the planning
job's Celery message in the test's Redis), stopping one, listing executions with their tasks'
counts and tasks with their logs from rows inserted here (the engine that runs tasks is the job
service's), Harbor's status words, and the role matrix; on each database."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui
from tests.service.ui.test_replication_policies import add_registry, create
from tests.service.ui.test_users import error
from wharf_shared import jobs as job_queue
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

API = "/api/v2.0"
EXECUTIONS = f"{API}/replication/executions"
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


async def policy(ui: Ui, name: str = "p", **extra: Any) -> int:
    registry_id = await add_registry(ui, f"reg-{name}")
    return await create(ui, {"name": name, "dest_registry": {"id": registry_id}, **extra})


async def queued(ui: Ui) -> list[dict[str, Any]]:
    """The Celery messages waiting in the job queue (kombu's Redis transport: a list per queue)."""
    redis = Redis.from_url(ui.settings.effective_broker_url)
    try:
        raw = await redis.lrange(ui.settings.jobservice.queue, 0, -1)
    finally:
        await redis.aclose()
    return [json.loads(x) for x in raw]


async def add_execution(
    ui: Ui,
    policy_id: int,
    status: str,
    tasks: list[tuple[str, str]],
    *,
    start: dt.datetime = T0,
    trigger: str = "manual",
) -> tuple[int, list[int]]:
    """An execution with tasks of these (status, resource_type), each with two log lines."""

    async def go(conn: Any) -> tuple[int, list[int]]:
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, trigger)
        end = start + dt.timedelta(minutes=1) if status in jobs.FINAL else None
        await conn.execute(
            t.execution.update()
            .where(t.execution.c.id == execution_id)
            .values(
                status=status, start_time=start, end_time=end, planned=True, status_message=f"{status} here"
            )
        )
        ids = []
        for n, (task_status, resource_type) in enumerate(tasks):
            now = utcnow()
            result = await conn.execute(
                t.task.insert().values(
                    execution_id=execution_id,
                    status=task_status,
                    job="{}",
                    resource_type=resource_type,
                    operation="copy",
                    src_resource=f"team/app{n}:v1",
                    dst_resource=f"mirror/app{n}:v1",
                    start_time=start,
                    end_time=end,
                    created_at=now,
                    updated_at=now,
                )
            )
            task_id = int(result.inserted_primary_key[0])
            ids.append(task_id)
            for i, line in enumerate((f"copying app{n}", f"done app{n}")):
                await conn.execute(
                    t.task_log.insert().values(
                        task_id=task_id, time=start + dt.timedelta(seconds=i), line=line
                    )
                )
        return execution_id, ids

    result: tuple[int, list[int]] = await ui.db_call(go)
    return result


async def test_start_creates_a_running_execution_and_enqueues_its_planning(ui: Ui) -> None:
    policy_id = await policy(ui)
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": policy_id}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    execution_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert resp.headers["Location"] == f"{EXECUTIONS}/{execution_id}"

    async def row(conn: Any) -> Any:
        e = t.execution.c
        query = select(e.vendor_type, e.vendor_id, e.status, e.trigger, e.planned).where(e.id == execution_id)
        return (await conn.execute(query)).one()

    assert tuple(await ui.db_call(row)) == (jobs.REPLICATION, policy_id, jobs.RUNNING, "manual", False)
    (message,) = await queued(ui)
    assert message["headers"]["task"] == job_queue.REPLICATION_PLAN
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([execution_id], {})

    got = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).json()
    assert got["id"] == execution_id
    assert got["policy_id"] == policy_id
    assert got["status"] == "InProgress"
    assert got["trigger"] == "manual"
    assert got["end_time"] is None
    assert (got["total"], got["in_progress"], got["succeed"], got["failed"], got["stopped"]) == (
        0,
        0,
        0,
        0,
        0,
    )


async def test_start_refusals(ui: Ui) -> None:
    disabled = await policy(ui, "off", enabled=False)
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": disabled}, headers=ADMIN)
    assert "disabled" in await error(resp, 412, "PRECONDITION")
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": 999999}, headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")
    resp = await ui.client.post(EXECUTIONS, json={}, headers=ADMIN)
    assert "policy_id: required" in await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": "1"}, headers=ADMIN)
    assert "policy_id" in await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": 0}, headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")
    assert await queued(ui) == []

    async def count(conn: Any) -> Any:
        return (await conn.execute(select(t.execution.c.id))).all()

    assert await ui.db_call(count) == []


async def test_stop_stops_the_execution_and_its_unfinished_tasks(ui: Ui) -> None:
    policy_id = await policy(ui)
    tasks = [(jobs.SUCCESS, "artifact"), (jobs.RUNNING, "artifact"), (jobs.PENDING, "artifact")]
    execution_id, _task_ids = await add_execution(ui, policy_id, jobs.RUNNING, tasks)
    got = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).json()
    assert (got["status"], got["total"], got["succeed"], got["in_progress"]) == ("InProgress", 3, 1, 2)
    resp = await ui.client.put(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    got = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).json()
    assert got["status"] == "Stopped"
    assert got["end_time"] is not None
    assert (got["total"], got["succeed"], got["stopped"], got["in_progress"]) == (3, 1, 2, 0)
    listed = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks", headers=ADMIN)).json()
    assert [x["status"] for x in listed] == ["Succeed", "Stopped", "Stopped"]
    # Stopping an execution that has ended changes nothing, as in Harbor.
    resp = await ui.client.put(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)
    assert resp.status == 200
    done, _ = await add_execution(ui, policy_id, jobs.SUCCESS, [(jobs.SUCCESS, "artifact")])
    assert (await ui.client.put(f"{EXECUTIONS}/{done}", headers=ADMIN)).status == 200
    got = await (await ui.client.get(f"{EXECUTIONS}/{done}", headers=ADMIN)).json()
    assert got["status"] == "Succeed"
    await error(await ui.client.put(f"{EXECUTIONS}/999999", headers=ADMIN), 404, "NOT_FOUND")


async def test_list_newest_first_with_counts_filters_and_pages(ui: Ui) -> None:
    first = await policy(ui, "first")
    second = await policy(ui, "second")
    a, _ = await add_execution(ui, first, jobs.SUCCESS, [(jobs.SUCCESS, "artifact")] * 2, start=T0)
    b, _ = await add_execution(
        ui,
        first,
        jobs.ERROR,
        [(jobs.SUCCESS, "artifact"), (jobs.ERROR, "artifact")],
        start=T0 + dt.timedelta(hours=1),
    )
    c, _ = await add_execution(
        ui, second, jobs.RUNNING, [(jobs.RUNNING, "artifact")], start=T0 + dt.timedelta(hours=2)
    )
    d, _ = await add_execution(
        ui,
        second,
        jobs.STOPPED,
        [(jobs.STOPPED, "artifact")],
        start=T0 + dt.timedelta(hours=3),
        trigger="scheduled",
    )
    resp = await ui.client.get(EXECUTIONS, headers=ADMIN)
    assert resp.headers["X-Total-Count"] == "4"
    body = await resp.json()
    assert [x["id"] for x in body] == [d, c, b, a]
    assert [x["status"] for x in body] == ["Stopped", "InProgress", "Failed", "Succeed"]
    assert [(x["total"], x["succeed"], x["failed"], x["in_progress"], x["stopped"]) for x in body] == [
        (1, 0, 0, 0, 1),
        (1, 0, 0, 1, 0),
        (2, 1, 1, 0, 0),
        (2, 2, 0, 0, 0),
    ]
    assert body[2]["status_text"] == "Error here"

    async def ids(query: str) -> list[int]:
        resp = await ui.client.get(f"{EXECUTIONS}?{query}", headers=ADMIN)
        assert resp.status == 200, await resp.text()
        return [x["id"] for x in await resp.json()]

    assert await ids(f"policy_id={first}") == [b, a]
    assert await ids("status=Failed") == [b]
    assert await ids("status=InProgress") == [c]
    assert await ids("status=Succeed") == [a]
    assert await ids("trigger=scheduled") == [d]
    assert await ids(f"policy_id={second}&status=Stopped") == [d]
    assert await ids("sort=start_time") == [a, b, c, d]
    assert await ids("page_size=3&page=2") == [a]
    resp = await ui.client.get(f"{EXECUTIONS}?page_size=1", headers=ADMIN)
    assert 'rel="next"' in resp.headers["Link"]
    resp = await ui.client.get(f"{EXECUTIONS}?status=Done", headers=ADMIN)
    assert "InProgress" in await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.get(f"{EXECUTIONS}?trigger=sometimes", headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.get(f"{EXECUTIONS}?policy_id=x", headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")


async def test_tasks_and_their_logs(ui: Ui) -> None:
    policy_id = await policy(ui)
    tasks = [
        (jobs.SUCCESS, "artifact"),
        (jobs.ERROR, "artifact"),
        (jobs.PENDING, "image"),
        (jobs.RUNNING, "artifact"),
    ]
    execution_id, task_ids = await add_execution(ui, policy_id, jobs.RUNNING, tasks)
    resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks", headers=ADMIN)
    assert resp.headers["X-Total-Count"] == "4"
    body = await resp.json()
    assert [x["id"] for x in body] == task_ids
    assert [x["status"] for x in body] == ["Succeed", "Failed", "Pending", "InProgress"]
    first = body[0]
    assert first["execution_id"] == execution_id
    assert (first["resource_type"], first["operation"]) == ("artifact", "copy")
    assert (first["src_resource"], first["dst_resource"]) == ("team/app0:v1", "mirror/app0:v1")
    assert first["start_time"] == "2026-03-01T12:00:00.000Z"

    async def ids(query: str) -> list[int]:
        resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks?{query}", headers=ADMIN)
        assert resp.status == 200, await resp.text()
        return [x["id"] for x in await resp.json()]

    assert await ids("status=Failed") == [task_ids[1]]
    assert await ids("status=InProgress") == [task_ids[3]]
    assert await ids("status=Pending") == [task_ids[2]]
    assert await ids("resource_type=image") == [task_ids[2]]
    assert await ids("sort=-id&page_size=2") == [task_ids[3], task_ids[2]]
    await error(
        await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks?status=x", headers=ADMIN), 400, "BAD_REQUEST"
    )
    await error(await ui.client.get(f"{EXECUTIONS}/999999/tasks", headers=ADMIN), 404, "NOT_FOUND")

    resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks/{task_ids[1]}/log", headers=ADMIN)
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "2026-03-01T12:00:00.000Z copying app1\n2026-03-01T12:00:01.000Z done app1\n"
    # A task of another execution is not this execution's.
    _other, other_tasks = await add_execution(ui, policy_id, jobs.SUCCESS, [(jobs.SUCCESS, "artifact")])
    resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks/{other_tasks[0]}/log", headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")
    resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks/999999/log", headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")
    resp = await ui.client.get(f"{EXECUTIONS}/{execution_id}/tasks/abc/log", headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")


ROUTES = [
    ("GET", "/replication/executions"),
    ("POST", "/replication/executions"),
    ("GET", "/replication/executions/E"),
    ("PUT", "/replication/executions/E"),
    ("GET", "/replication/executions/E/tasks"),
    ("GET", "/replication/executions/E/tasks/T/log"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_only_system_admins(ui: Ui, method: str, path: str) -> None:
    policy_id = await policy(ui)
    execution_id, (task_id,) = await add_execution(ui, policy_id, jobs.RUNNING, [(jobs.RUNNING, "artifact")])
    path = path.replace("/E", f"/{execution_id}").replace("/T", f"/{task_id}")
    body = {"policy_id": policy_id} if method == "POST" else None
    await error(await ui.client.request(method, API + path, json=body, headers=ALICE), 403, "FORBIDDEN")
    await error(
        await ui.client.request(method, API + path, json=body, headers=ANONYMOUS), 401, "UNAUTHORIZED"
    )
    got = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).json()
    assert got["status"] == "InProgress"
    assert await queued(ui) == []


async def test_read_only_mode_refuses_starting_and_stopping(ui: Ui) -> None:
    policy_id = await policy(ui)
    execution_id, _ = await add_execution(ui, policy_id, jobs.RUNNING, [(jobs.RUNNING, "artifact")])
    await ui.set_runtime(read_only=True)
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": policy_id}, headers=ADMIN)
    await error(resp, 403, "DENIED")
    await error(await ui.client.put(f"{EXECUTIONS}/{execution_id}", headers=ADMIN), 403, "DENIED")
    got = await (await ui.client.get(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).json()
    assert got["status"] == "InProgress"


async def test_registry_policy_and_execution_changes_are_audited(ui: Ui) -> None:
    """Each change by hand writes its event in its own transaction, with its operator; stopping
    an execution that had ended already stopped nothing and writes none."""
    policy_id = await policy(ui, "audited")
    resp = await ui.client.put(
        f"{API}/replication/policies/{policy_id}", json={"enabled": True}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    resp = await ui.client.post(EXECUTIONS, json={"policy_id": policy_id}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    execution_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert (await ui.client.put(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).status == 200
    assert (await ui.client.put(f"{EXECUTIONS}/{execution_id}", headers=ADMIN)).status == 200

    (registry,) = await ui.events("registry.create")
    assert registry["data"]["registry"] == "reg-audited"
    assert registry["data"]["operator"] == "admin"
    (created,) = await ui.events("replication_policy.create")
    (updated,) = await ui.events("replication_policy.update")
    assert created["data"]["policy"] == updated["data"]["policy"] == "audited"
    (started,) = await ui.events("replication.start")
    (stopped,) = await ui.events("replication.stop")
    for event in (started, stopped):
        assert event["data"]["policy_id"] == policy_id
        assert event["data"]["execution_id"] == execution_id
        assert event["data"]["operator"] == "admin"
