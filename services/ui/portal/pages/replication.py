"""Replication (system admins): the policies with their last execution (`/harbor/replications`),
one policy with its executions (`/harbor/replications/{id}`), one execution with its tasks
(`/harbor/replications/executions/{id}`) and a task's log. Reads call the domain functions the
`/api/v2.0/replication/…` handlers call; starting, stopping, editing and deleting are the API's
own calls, sent by the page's script. A page whose execution runs reloads itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wharf_shared.db import jobs
from wharf_shared.db import replication as replication_rows
from wharf_shared.db.executions import Execution, TaskCounts
from wharf_shared.db.replication import Policy, Registry
from wharf_shared.keys import DB
from wharf_ui import executions, replication
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query
from wharf_ui.paths import ID_MAX
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import PortalNotFound, require_sysadmin
from wharf_ui.query import Exact, Fuzzy

PAGE_SIZE = "15"
REFRESH_SECONDS = 2
TRIGGER_LABELS = {
    replication_rows.MANUAL: "Manual",
    replication_rows.SCHEDULED: "Scheduled",
    replication_rows.EVENT_BASED: "On push and delete",
}


@dataclass(frozen=True, slots=True)
class Direction:
    """One choice of the policy form's direction select: its label and the JSON it stands for."""

    label: str
    value: str
    push: bool


def directions(found: list[Registry]) -> list[Direction]:
    """Every direction a policy may take: push to each registry (or to all), pull from each. The
    value is the body's part that says so (`data-type="json" data-spread` in portal.js)."""
    push = [
        Direction(
            f"Push to {x.name}", json.dumps({"dest_registry": {"id": x.id}, "every_registry": False}), True
        )
        for x in found
    ]
    push.append(Direction("Push to every registry (those added later too)", '{"every_registry": true}', True))
    pull = [
        Direction(f"Pull from {x.name}", json.dumps({"src_registry": {"id": x.id}}), False) for x in found
    ]
    return push + pull


def direction_of(policy: Policy) -> str:
    """The form's value for a stored policy's direction (the option to select)."""
    if policy.every_registry:
        return '{"every_registry": true}'
    if policy.src_registry_id is not None:
        return json.dumps({"src_registry": {"id": policy.src_registry_id}})
    return json.dumps({"dest_registry": {"id": policy.dest_registry_id}, "every_registry": False})


def filter_value(policy: Policy | None, kind: str, key: str = "value", default: str = "") -> str:
    for item in policy.filters if policy is not None else []:
        if item.get("type") == kind:
            return str(item.get(key) or default)
    return default


@dataclass(frozen=True, slots=True)
class PolicyRow:
    policy: Policy
    source: str
    destination: str
    last: tuple[Execution, TaskCounts] | None


def sides(policy: Policy, found: dict[int, Registry]) -> tuple[str, str]:
    """The names of the policy's source and destination as a person reads them."""

    def name(registry_id: int | None) -> str:
        if registry_id is None:
            return "This Wharf"
        registry = found.get(registry_id)
        return registry.name if registry is not None else f"registry {registry_id} (deleted)"

    destination = "Every registry" if policy.every_registry else name(policy.dest_registry_id)
    return name(policy.src_registry_id), destination


def _id(raw: str, what: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= ID_MAX:
        raise PortalNotFound(f"There is no {what} {raw[:40]!r}.")
    return int(raw)


def _paged(request: web.Request) -> web.Request:
    if "page_size" not in request.query:
        return request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    return request


def _form_context(policy: Policy | None, registries: list[Registry]) -> dict[str, Any]:
    return {
        "directions": directions(registries),
        "selected_direction": direction_of(policy) if policy is not None else "",
        "name_filter": filter_value(policy, "name"),
        "tag_filter": filter_value(policy, "tag"),
        "tag_decoration": filter_value(policy, "tag", "decoration", "matches"),
        "triggers": TRIGGER_LABELS,
    }


async def policy_list(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    request = _paged(request)
    query = list_query(request, replication.POLICIES)
    name = request.query.get("name", "")
    conditions = where(replication.POLICIES, {**query.terms, **({"name": Fuzzy(name)} if name else {})})
    order = order_by(replication.POLICIES, query.sort)
    async with request.app[DB].read() as conn:
        found, total, named = await replication.list_policies(conn, conditions, order, query.page)
        latest = await executions.latest(conn, [x.id for x in found])
        registries = await replication_rows.list_registries(conn)
    rows = [PolicyRow(x, *sides(x, named), latest.get(x.id)) for x in found]
    return await page(
        request,
        "replications.html",
        title="Replications",
        section="replications",
        rows=rows,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        name=name,
        registries=registries,
        policy=None,
        shown=executions.SHOWN,
        **_form_context(None, registries),
    )


async def policy_detail(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    request = _paged(request)
    policy_id = _id(request.match_info["policy_id"], "replication policy")
    query = list_query(request, executions.EXECUTIONS)
    conditions = where(executions.EXECUTIONS, {"policy_id": Exact(str(policy_id))})
    order = order_by(executions.EXECUTIONS, query.sort)
    async with request.app[DB].read() as conn:
        policy, named = await replication.get(conn, policy_id)
        found, total = await executions.list_executions(conn, conditions, order, query.page)
        registries = await replication_rows.list_registries(conn)
    source, destination = sides(policy, named)
    running = any(x.status == jobs.RUNNING for x, _ in found)
    return await page(
        request,
        "replication_policy.html",
        title=policy.name,
        section="replications",
        policy=policy,
        source=source,
        destination=destination,
        runs=found,
        running=running,
        refresh=REFRESH_SECONDS,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        shown=executions.SHOWN,
        registries=registries,
        **_form_context(policy, registries),
    )


async def execution_detail(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    request = _paged(request)
    execution_id = _id(request.match_info["execution_id"], "replication execution")
    query = list_query(request, executions.TASKS)
    order = order_by(executions.TASKS, query.sort)
    async with request.app[DB].read() as conn:
        execution, counts = await executions.get(conn, execution_id)
        tasks, total = await executions.list_tasks(conn, execution_id, [], order, query.page)
        policy = await replication_rows.get_policy(conn, execution.vendor_id)
    return await page(
        request,
        "replication_execution.html",
        title=f"Execution {execution.id}",
        section="replications",
        execution=execution,
        counts=counts,
        policy=policy,
        tasks=tasks,
        running=execution.status == jobs.RUNNING,
        refresh=REFRESH_SECONDS,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        shown=executions.SHOWN,
    )


async def task_log(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    execution_id = _id(request.match_info["execution_id"], "replication execution")
    task_id = _id(request.match_info["task_id"], "task")
    async with request.app[DB].read() as conn:
        execution, _ = await executions.get(conn, execution_id)
        task = await executions.task(conn, execution_id, task_id)
        lines = await executions.task_log(conn, execution_id, task_id)
        policy = await replication_rows.get_policy(conn, execution.vendor_id)
    return await page(
        request,
        "replication_log.html",
        title=f"Log of task {task_id}",
        section="replications",
        execution=execution,
        policy=policy,
        task=task,
        lines=lines,
        running=execution.status == jobs.RUNNING,
        refresh=REFRESH_SECONDS,
        shown=executions.SHOWN,
    )


PAGES = (
    ("/harbor/replications", policy_list, "portal_replications"),
    ("/harbor/replications/{policy_id}", policy_detail, "portal_replication_policy"),
    ("/harbor/replications/executions/{execution_id}", execution_detail, "portal_replication_execution"),
    (
        "/harbor/replications/executions/{execution_id}/tasks/{task_id}/log",
        task_log,
        "portal_replication_task_log",
    ),
)
