"""`/api/v2.0/replication/policies…` and `/replication/executions…`: Harbor's replication
endpoints, for system admins only (401 anonymous, 403 anyone else)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_shared.db.executions import Execution, Task, TaskCounts
from wharf_shared.db.replication import Policy, Registry
from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB, SETTINGS
from wharf_ui import executions, replication
from wharf_ui.bodies import Text, read_json
from wharf_ui.handlers.registries import registry_json
from wharf_ui.listing import ListSpec, order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.paths import ID_MAX, path_id
from wharf_ui.query import Exact, Fuzzy, QueryError, Term
from wharf_ui.responses import created, empty_ok, json_response, timestamp
from wharf_ui.security import sysadmin

POLICIES_PATH = "/api/v2.0/replication/policies"
EXECUTIONS_PATH = "/api/v2.0/replication/executions"


class RegistryRef(BaseModel):
    """A registry in a policy: only its id counts (0: this Wharf); the rest, if sent, is ignored."""

    id: int | None = None


class TriggerSettings(BaseModel):
    cron: Text | None = None


class Trigger(BaseModel):
    type: Text | None = None
    trigger_settings: TriggerSettings | None = None


class ReplicationFilter(BaseModel):
    type: Text | None = None
    value: Any = None
    decoration: Text | None = None


class ReplicationPolicyReq(BaseModel):
    name: Text | None = None
    description: Text | None = None
    src_registry: RegistryRef | None = None
    dest_registry: RegistryRef | None = None
    every_registry: bool | None = None  # Wharf's own
    dest_namespace: Text | None = None
    dest_namespace_replace_count: int | None = None
    trigger: Trigger | None = None
    filters: list[ReplicationFilter] | None = None
    replicate_deletion: bool | None = None
    deletion: bool | None = None  # Harbor's deprecated name for replicate_deletion
    override: bool | None = None
    enabled: bool | None = None
    speed: int | None = None
    copy_by_chunk: bool | None = None


class StartReplicationExecution(BaseModel):
    policy_id: int | None = None


def _policy_input(body: ReplicationPolicyReq) -> replication.PolicyInput:
    given = body.model_fields_set
    trigger = body.trigger
    filters = None
    if body.filters is not None:
        filters = [
            {key: value for key, value in f.model_dump().items() if value is not None} for f in body.filters
        ]
    return replication.PolicyInput(
        name=body.name,
        description=body.description,
        registries_given=bool(given & {"src_registry", "dest_registry", "every_registry"}),
        src_registry_id=(body.src_registry.id or 0) if body.src_registry else 0,
        dest_registry_id=(body.dest_registry.id or 0) if body.dest_registry else 0,
        every_registry=bool(body.every_registry),
        dest_namespace=body.dest_namespace,
        dest_namespace_replace_count=body.dest_namespace_replace_count,
        trigger_given=trigger is not None,
        trigger_type=trigger.type if trigger else None,
        cron=trigger.trigger_settings.cron if trigger and trigger.trigger_settings else None,
        filters=filters,
        replicate_deletion=body.replicate_deletion if body.replicate_deletion is not None else body.deletion,
        override=body.override,
        enabled=body.enabled,
        speed=body.speed,
        copy_by_chunk=body.copy_by_chunk,
    )


def local_registry(request: web.Request) -> dict[str, Any]:
    """This Wharf as Harbor shows its own side of a policy: registry 0."""
    return {
        "id": 0,
        "name": "Local",
        "description": "",
        "type": "harbor",
        "url": request.app[SETTINGS].external_url.rstrip("/"),
        "insecure": False,
        "status": "healthy",
        "creation_time": None,
        "update_time": None,
    }


def policy_json(request: web.Request, policy: Policy, found: dict[int, Registry]) -> dict[str, Any]:
    def side(registry_id: int | None) -> dict[str, Any] | None:
        if registry_id is None:
            return None if policy.every_registry else local_registry(request)
        registry = found.get(registry_id)
        return registry_json(registry) if registry is not None else None

    return {
        "id": policy.id,
        "name": policy.name,
        "description": policy.description,
        "src_registry": side(policy.src_registry_id) if policy.src_registry_id else local_registry(request),
        "dest_registry": side(policy.dest_registry_id),
        "every_registry": policy.every_registry,
        "dest_namespace": policy.dest_namespace or "",
        "dest_namespace_replace_count": policy.dest_namespace_replace_count,
        "trigger": {"type": policy.trigger_type, "trigger_settings": {"cron": policy.cron or ""}},
        "filters": policy.filters,
        "replicate_deletion": policy.replicate_deletion,
        "deletion": policy.replicate_deletion,
        "override": policy.override,
        "enabled": policy.enabled,
        "speed": policy.speed_kb,
        "copy_by_chunk": policy.copy_by_chunk,
        "creation_time": timestamp(policy.created_at),
        "update_time": timestamp(policy.updated_at),
    }


def execution_json(execution: Execution, counts: TaskCounts) -> dict[str, Any]:
    return {
        "id": execution.id,
        "policy_id": execution.vendor_id,
        "status": executions.SHOWN.get(execution.status, execution.status),
        "status_text": execution.status_message,
        "trigger": execution.trigger,
        "start_time": timestamp(execution.start_time),
        "end_time": timestamp(execution.end_time),
        "total": counts.total,
        "failed": counts.error,
        "succeed": counts.success,
        "in_progress": counts.pending + counts.running,
        "stopped": counts.stopped,
    }


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "execution_id": task.execution_id,
        "resource_type": task.resource_type,
        "src_resource": task.src_resource,
        "dst_resource": task.dst_resource,
        "operation": task.operation,
        "job_id": "",  # tasks run from SQL rows; there is no separate job id
        "status": executions.SHOWN.get(task.status, task.status),
        "start_time": timestamp(task.start_time),
        "end_time": timestamp(task.end_time),
    }


def _conditions(request: web.Request, spec: ListSpec, terms: dict[str, Term]) -> list[Any]:
    try:
        return where(spec, terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None


def _params(request: web.Request, *names: str) -> dict[str, Term]:
    """Harbor's own filter parameters (`policy_id=3`), as exact `q` terms."""
    return {name: Exact(request.query[name]) for name in names if request.query.get(name)}


# -- policies ----------------------------------------------------------------------------------


async def list_policies(request: web.Request) -> web.Response:
    await sysadmin(request)
    query = list_query(request, replication.POLICIES)
    name = request.query.get("name")  # Harbor's deprecated parameter: names containing it
    terms = {**query.terms, **({"name": Fuzzy(name)} if name else {})}
    conditions = _conditions(request, replication.POLICIES, terms)
    order = order_by(replication.POLICIES, query.sort)
    async with request.app[DB].read() as conn:
        found, total, registries = await replication.list_policies(conn, conditions, order, query.page)
    return listed(request, [policy_json(request, x, registries) for x in found], total, query.page)


async def create_policy(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, ReplicationPolicyReq)
    policy_id = await replication.create(request.app[DB], _policy_input(body), identity)
    return created(request, POLICIES_PATH, policy_id, body.name or "")


async def get_policy(request: web.Request) -> web.Response:
    await sysadmin(request)
    policy_id = path_id(request, "id")
    async with request.app[DB].read() as conn:
        policy, registries = await replication.get(conn, policy_id)
    return json_response(policy_json(request, policy, registries))


async def update_policy(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    policy_id = path_id(request, "id")
    body = await read_json(request, ReplicationPolicyReq)
    await replication.update(request.app[DB], policy_id, _policy_input(body), identity)
    return empty_ok()


async def delete_policy(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    await replication.remove(request.app[DB], path_id(request, "id"), identity)
    return empty_ok()


# -- executions --------------------------------------------------------------------------------


async def start_execution(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, StartReplicationExecution)
    if body.policy_id is None:
        raise BadRequest(message="policy_id: required")
    if not 1 <= body.policy_id <= ID_MAX:
        raise BadRequest(message=f"policy_id: {body.policy_id} is not a policy id")
    execution_id = await executions.start(request.app[DB], request.app[SETTINGS], body.policy_id, identity)
    return created(request, EXECUTIONS_PATH, execution_id, str(execution_id))


async def list_executions(request: web.Request) -> web.Response:
    await sysadmin(request)
    query = list_query(request, executions.EXECUTIONS)
    terms = {**query.terms, **_params(request, "policy_id", "status", "trigger")}
    conditions = _conditions(request, executions.EXECUTIONS, terms)
    order = order_by(executions.EXECUTIONS, query.sort)
    async with request.app[DB].read() as conn:
        found, total = await executions.list_executions(conn, conditions, order, query.page)
    return listed(request, [execution_json(x, counts) for x, counts in found], total, query.page)


async def get_execution(request: web.Request) -> web.Response:
    await sysadmin(request)
    execution_id = path_id(request, "id")
    async with request.app[DB].read() as conn:
        execution, counts = await executions.get(conn, execution_id)
    return json_response(execution_json(execution, counts))


async def stop_execution(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    await executions.stop(request.app[DB], path_id(request, "id"), identity)
    return empty_ok()


async def list_tasks(request: web.Request) -> web.Response:
    await sysadmin(request)
    execution_id = path_id(request, "id")
    query = list_query(request, executions.TASKS)
    terms = {**query.terms, **_params(request, "status", "resource_type")}
    conditions = _conditions(request, executions.TASKS, terms)
    order = order_by(executions.TASKS, query.sort)
    async with request.app[DB].read() as conn:
        found, total = await executions.list_tasks(conn, execution_id, conditions, order, query.page)
    return listed(request, [task_json(x) for x in found], total, query.page)


async def get_task_log(request: web.Request) -> web.Response:
    """The task's log as text, a line per entry after its time (RFC 3339, UTC)."""
    await sysadmin(request)
    execution_id, task_id = path_id(request, "id"), path_id(request, "task_id")
    async with request.app[DB].read() as conn:
        lines = await executions.task_log(conn, execution_id, task_id)
    text = "".join(f"{timestamp(at)} {line}\n" for at, line in lines)
    return web.Response(text=text, content_type="text/plain")
