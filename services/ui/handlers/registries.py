"""`/api/v2.0/registries…` and `/replication/adapters`, `/replication/adapterinfos`: Harbor's
registry endpoints, for system admins only (401 anonymous, 403 anyone else)."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from pydantic import BaseModel

from wharf_shared.db.replication import Registry
from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB, SETTINGS
from wharf_shared.secrets import SecretBox
from wharf_ui import registries
from wharf_ui.bodies import Text, read_json
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.paths import ID_MAX, path_id
from wharf_ui.query import Fuzzy, QueryError
from wharf_ui.responses import created, empty_ok, json_response, timestamp
from wharf_ui.security import sysadmin

REGISTRIES_PATH = "/api/v2.0/registries"


class RegistryCredential(BaseModel):
    type: Text | None = None
    access_key: Text | None = None
    access_secret: Text | None = None


class RegistryReq(BaseModel):
    """Harbor's Registry as a create takes it (id, status and times, if sent, are ignored)."""

    name: Text | None = None
    description: Text | None = None
    type: Text | None = None
    url: Text | None = None
    insecure: bool | None = None
    credential: RegistryCredential | None = None


class RegistryPing(BaseModel):
    """Harbor's RegistryPing: flat credential fields (a nested `credential` is taken too)."""

    id: int | None = None
    type: Text | None = None
    url: Text | None = None
    insecure: bool | None = None
    credential_type: Text | None = None
    access_key: Text | None = None
    access_secret: Text | None = None
    credential: RegistryCredential | None = None


PING_SECONDS = 15.0


class RegistryUpdate(BaseModel):
    """Harbor's RegistryUpdate (flat credential fields); a nested `credential` as in Registry is
    taken too, the flat fields winning. Null or left out: unchanged."""

    name: Text | None = None
    description: Text | None = None
    type: Text | None = None
    url: Text | None = None
    insecure: bool | None = None
    credential_type: Text | None = None
    access_key: Text | None = None
    access_secret: Text | None = None
    credential: RegistryCredential | None = None


def credential_json(registry: Registry) -> dict[str, Any]:
    credential: dict[str, Any] = {"type": registry.credential_type, "access_key": registry.access_key or ""}
    if registry.access_secret:
        credential["access_secret"] = registries.MASK  # never the password, nor its ciphertext
    return credential


def registry_json(registry: Registry) -> dict[str, Any]:
    return {
        "id": registry.id,
        "name": registry.name,
        "description": registry.description,
        "type": registry.type,
        "url": registry.url,
        "insecure": registry.insecure,
        "credential": credential_json(registry),
        "status": registry.status,
        "creation_time": timestamp(registry.created_at),
        "update_time": timestamp(registry.updated_at),
    }


def box(request: web.Request) -> SecretBox:
    return SecretBox(request.app[SETTINGS].secret_key_bytes())


def _credential(given: RegistryCredential | None) -> registries.Credential:
    if given is None:
        return registries.Credential()
    return registries.Credential(given.type, given.access_key, given.access_secret)


def _flat_credential(body: RegistryUpdate | RegistryPing) -> registries.Credential:
    """Harbor's flat credential fields, over a nested `credential` (the Registry shape's)."""
    nested = _credential(body.credential)
    return registries.Credential(
        body.credential_type if body.credential_type is not None else nested.type,
        body.access_key if body.access_key is not None else nested.access_key,
        body.access_secret if body.access_secret is not None else nested.access_secret,
    )


async def list_registries(request: web.Request) -> web.Response:
    await sysadmin(request)
    query = list_query(request, registries.REGISTRIES)
    name = request.query.get("name")  # Harbor's deprecated parameter: names containing it
    try:
        terms = {**query.terms, **({"name": Fuzzy(name)} if name else {})}
        conditions = where(registries.REGISTRIES, terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    order = order_by(registries.REGISTRIES, query.sort)
    async with request.app[DB].read() as conn:
        found, total = await registries.list_registries(conn, conditions, order, query.page)
    return listed(request, [registry_json(x) for x in found], total, query.page)


async def create_registry(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, RegistryReq)
    given = registries.RegistryInput(
        body.name, body.description, body.type, body.url, body.insecure, _credential(body.credential)
    )
    registry_id = await registries.create(request.app[DB], box(request), given, identity)
    return created(request, REGISTRIES_PATH, registry_id, given.name or "")


async def get_registry(request: web.Request) -> web.Response:
    await sysadmin(request)
    registry_id = path_id(request, "id")
    async with request.app[DB].read() as conn:
        registry = await registries.get(conn, registry_id)
    return json_response(registry_json(registry))


async def update_registry(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    registry_id = path_id(request, "id")
    body = await read_json(request, RegistryUpdate)
    credential = _flat_credential(body)
    given = registries.RegistryInput(
        body.name, body.description, body.type, body.url, body.insecure, credential
    )
    await registries.update(request.app[DB], box(request), registry_id, given, identity)
    return empty_ok()


async def delete_registry(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    await registries.remove(request.app[DB], path_id(request, "id"), identity)
    return empty_ok()


async def get_registry_info(request: web.Request) -> web.Response:
    """Registry 0 is this Wharf, as in Harbor (what a pull-based policy's destination offers)."""
    await sysadmin(request)
    raw = request.match_info["id"]
    if raw == "0":
        return json_response(registries.info("harbor", local=True))
    if not raw.isascii() or not raw.isdigit() or int(raw) > ID_MAX:
        raise BadRequest(message=f"id: {raw[:40]!r} is not a registry id (0 is this Wharf)")
    async with request.app[DB].read() as conn:
        registry = await registries.get(conn, int(raw))
    return json_response(registries.info(registry.type))


async def list_adapters(request: web.Request) -> web.Response:
    await sysadmin(request)
    return json_response(list(registries.ADAPTERS))


async def list_adapter_infos(request: web.Request) -> web.Response:
    """Harbor lists only adapters that declare endpoint or credential patterns (cloud registries
    with fixed endpoints); neither of Wharf's two does: any URL, a plain username and password."""
    await sysadmin(request)
    return json_response({})


async def ping_registry(request: web.Request) -> web.Response:
    """200 when the registry answers `/v2/` and takes the credentials; Harbor's 400 otherwise. A
    stored registry pinged by id alone (no field overridden) records what was found in `status`."""
    await sysadmin(request)
    body = await read_json(request, RegistryPing)
    credential = _flat_credential(body)
    given = registries.PingInput(body.id, body.type, body.url, body.insecure, credential)
    stored = None
    if body.id is not None:
        if not 0 < body.id <= ID_MAX:
            raise BadRequest(message=f"id: {body.id} is not a registry id")
        async with request.app[DB].read() as conn:
            stored = await registries.get(conn, body.id)
    endpoint = registries.ping_endpoint(box(request), given, stored)
    async with ClientSession(timeout=ClientTimeout(total=PING_SECONDS)) as session:
        failure = await registries.ping(session, endpoint)
    if stored is not None and given == registries.PingInput(body.id):  # pinged as stored
        await registries.record_status(request.app[DB], stored.id, failure is None)
    if failure is not None:
        raise BadRequest(message=f"failed to ping registry {endpoint.url}: {failure}")
    return empty_ok()
