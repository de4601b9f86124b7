"""Replication's registries (Harbor's `/registries`) as the API sees them: the rules a registry
meets (its type, its URL, its credential), their list's SQL, and the writes through
`wharf_shared.db.replication`, each one transaction. Plain async functions; domain errors; no HTTP.

The password is encrypted (`wharf_shared.secrets.SecretBox`) before it reaches SQL and never
leaves again: a registry read back shows `*****` where a password is stored. An update that
leaves the password out (or sends `*****` back, as a client that echoes what it read does)
keeps the stored one.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import replication as rows
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.replication import DOCKER_REGISTRY, HARBOR, REGISTRY_TYPES, Registry, RegistryFields
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound, PreconditionFailed
from wharf_shared.rbac import Identity
from wharf_shared.remote import Endpoint, RemoteError, RemoteRegistry
from wharf_shared.secrets import SecretBox, SecretError
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, SortKey, as_int, as_time

if TYPE_CHECKING:
    from aiohttp import ClientSession

c = t.registry_endpoint.c

REGISTRIES = ListSpec(
    filters={
        "id": Filter(c.id, as_int, frozenset({"exact", "range", "any"})),
        "name": Filter(c.name),
        "type": Filter(c.type, kinds=frozenset({"exact", "any"})),
        "url": Filter(c.url),
        "status": Filter(c.status, kinds=frozenset({"exact", "any"})),
        "creation_time": Filter(c.created_at, as_time, frozenset({"exact", "range"})),
        "update_time": Filter(c.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": c.id, "name": c.name, "creation_time": c.created_at, "update_time": c.updated_at},
    default_sort=(SortKey("id", False),),
    tiebreak=c.id,
)

MAX_NAME = 64  # Harbor's limit
MAX_DESCRIPTION = 1024
MAX_URL = 1024
MAX_ACCESS_KEY = 255
MAX_SECRET = 4096
BASIC = "basic"
MASK = "*****"  # what Harbor shows for a stored password, and what a client may echo back
UNKNOWN = "unknown"  # status until the registry is next checked
ADAPTERS = (DOCKER_REGISTRY, HARBOR)  # Harbor's list is sorted
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$")


# -- rules -------------------------------------------------------------------------------------


def check_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise InvalidInput("name: required")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name: at most {MAX_NAME} characters")
    return name


def check_type(kind: str | None) -> str:
    if not kind:
        raise InvalidInput(f"type: required; one of {', '.join(ADAPTERS)}")
    if kind not in REGISTRY_TYPES:
        raise InvalidInput(
            f"type: Wharf replicates with {' and '.join(ADAPTERS)} registries only, not {kind[:40]!r}"
        )
    return kind


def check_description(description: str | None) -> str:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters")
    return description or ""


def check_url(raw: str | None) -> str:
    """An http(s) URL naming a host (and port) only, normalised: scheme and host in lower case, no
    trailing slash. A path, a query, a fragment or credentials in it are refused: a registry's API
    is at `/v2/` (and Harbor's at `/api/`) on its host, and credentials go in `credential`."""
    if raw is None or not raw.strip():
        raise InvalidInput("url: required, e.g. https://registry.example.com")
    text = raw.strip()
    if len(text) > MAX_URL:
        raise InvalidInput(f"url: at most {MAX_URL} characters")
    if not text.isascii() or any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in text):
        raise InvalidInput(
            "url: only printable ASCII without spaces or backslashes (a host is its IDNA form)"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url: {text[:100]!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput(f"url: must start with http:// or https://, not {text[:100]!r}")
    if "@" in parts.netloc:
        raise InvalidInput("url: no user or password in the URL; give them in credential")
    host = parts.hostname or ""
    if not host:
        raise InvalidInput(f"url: {text[:100]!r} names no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidInput(f"url: {host[:100]!r} is not a valid host") from None
        netloc_host = f"[{host}]"
    else:
        if not _HOST.match(host) or len(host) > 253:
            raise InvalidInput(f"url: {host[:100]!r} is not a valid host name or address")
        netloc_host = host
    if parts.path.rstrip("/"):
        raise InvalidInput(
            f"url: no path ({parts.path[:100]!r}); give the registry's root, e.g. {scheme}://{netloc_host}"
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidInput("url: no query or fragment")
    if port == 0:
        raise InvalidInput("url: port 0 is not a port")
    return f"{scheme}://{netloc_host}" + (f":{port}" if port is not None else "")


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential as a request gives it: None means "not given" (keep on update)."""

    type: str | None = None
    access_key: str | None = None
    access_secret: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryInput:
    """A create's or an update's fields; None: not given (an update keeps what is stored)."""

    name: str | None = None
    description: str | None = None
    type: str | None = None
    url: str | None = None
    insecure: bool | None = None
    credential: Credential = Credential()


def _credential(box: SecretBox, given: Credential, current: RegistryFields | None) -> RegistryFields:
    """The credential columns after applying `given` over `current` (None on a create)."""
    kind = given.type if given.type not in (None, "") else (current.credential_type if current else BASIC)
    if kind != BASIC:
        raise InvalidInput(f"credential.type: Wharf supports basic credentials only, not {str(kind)[:40]!r}")
    key = current.access_key if current else None
    secret = current.access_secret if current else None
    if given.access_key is not None:
        if len(given.access_key) > MAX_ACCESS_KEY:
            raise InvalidInput(f"credential.access_key: at most {MAX_ACCESS_KEY} characters")
        key = given.access_key or None
    if given.access_secret is not None and given.access_secret != MASK:
        if len(given.access_secret) > MAX_SECRET:
            raise InvalidInput(f"credential.access_secret: at most {MAX_SECRET} characters")
        secret = box.encrypt(given.access_secret) if given.access_secret else None
    elif given.access_secret == MASK and secret is None:
        raise InvalidInput(
            f"credential.access_secret: {MASK!r} stands for a stored password, and none is stored"
        )
    if secret is not None and key is None:
        raise InvalidInput(
            "credential: a password (access_secret) needs a username (access_key); "
            "to remove the credential, send both empty"
        )
    base = current or RegistryFields("", "", "", "", False, BASIC, None, None, UNKNOWN)
    return replace(base, credential_type=BASIC, access_key=key, access_secret=secret)


def _fields(box: SecretBox, given: RegistryInput, current: Registry | None) -> RegistryFields:
    stored = (
        RegistryFields(
            current.name,
            current.description,
            current.type,
            current.url,
            current.insecure,
            current.credential_type,
            current.access_key,
            current.access_secret,
            current.status,
        )
        if current
        else None
    )
    if current is not None and given.type not in (None, current.type):
        raise InvalidInput(
            f"type: a registry's type does not change ({current.type}); add a new registry instead"
        )
    with_credential = _credential(box, given.credential, stored)
    fields = replace(
        with_credential,
        name=check_name(given.name if given.name is not None else (current.name if current else None)),
        description=check_description(
            given.description if given.description is not None else (current.description if current else "")
        ),
        type=current.type if current else check_type(given.type),
        url=check_url(given.url if given.url is not None else (current.url if current else None)),
        insecure=given.insecure if given.insecure is not None else (current.insecure if current else False),
    )
    if stored is not None and (
        (fields.url, fields.insecure, fields.access_key, fields.access_secret)
        != (stored.url, stored.insecure, stored.access_key, stored.access_secret)
    ):
        # What the status said was of another endpoint or credential: unknown until checked again.
        fields = replace(fields, status=UNKNOWN)
    return fields


# -- reads -------------------------------------------------------------------------------------


async def get(conn: AsyncConnection, registry_id: int) -> Registry:
    registry = await rows.get_registry(conn, registry_id)
    if registry is None:
        raise NotFound(f"registry {registry_id} not found")
    return registry


async def list_registries(
    conn: AsyncConnection, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[Registry], int]:
    total = (
        await conn.execute(select(func.count()).select_from(t.registry_endpoint).where(*conditions))
    ).scalar()
    columns = [c[name] for name in Registry.__dataclass_fields__]
    found = await conn.execute(
        select(*columns).where(*conditions).order_by(*order).offset(page.offset).limit(page.size)
    )
    return [Registry(**row._mapping) for row in found], int(total or 0)


async def by_ids(conn: AsyncConnection, ids: set[int]) -> dict[int, Registry]:
    """The registries with these ids, in one query."""
    if not ids:
        return {}
    columns = [c[name] for name in Registry.__dataclass_fields__]
    found = await conn.execute(select(*columns).where(c.id.in_(sorted(ids))))
    return {row.id: Registry(**row._mapping) for row in found}


def info(kind: str, *, local: bool = False) -> dict[str, Any]:
    """Harbor's RegistryInfo: the filters and triggers a policy with this registry may use. Only this
    Wharf (registry 0, `local`) emits events, so only it offers the event-based trigger."""
    triggers = ["manual", "scheduled"] + (["event_based"] if local else [])
    return {
        "type": kind,
        "description": "",
        "supported_resource_filters": [
            {"type": "name", "style": "input"},
            {"type": "tag", "style": "input"},
            {"type": "resource", "style": "radio", "values": ["image", "artifact"]},
        ],
        "supported_triggers": triggers,
    }


# -- writes (each one transaction through `Database.run`) ----------------------------------------


async def create(db: Database, box: SecretBox, given: RegistryInput, identity: Identity) -> int:
    fields = _fields(box, given, None)

    async def go(conn: AsyncConnection) -> int:
        if await rows.registry_named(conn, fields.name) is not None:
            raise Conflict(f"a registry named {fields.name!r} already exists")
        registry_id = await rows.insert_registry(conn, fields)
        await record(conn, "registry.create", identity, registry=fields.name, registry_id=registry_id)
        return registry_id

    try:
        return await db.run(go)
    except IntegrityError:  # the unique name decided a race
        raise Conflict(f"a registry named {fields.name!r} already exists") from None


async def update(
    db: Database, box: SecretBox, registry_id: int, given: RegistryInput, identity: Identity
) -> None:
    async def go(conn: AsyncConnection) -> None:
        current = await get(conn, registry_id)
        fields = _fields(box, given, current)
        other = await rows.registry_named(conn, fields.name)
        if other is not None and other != registry_id:
            raise Conflict(f"a registry named {fields.name!r} already exists")
        await rows.update_registry(conn, registry_id, fields)
        await record(conn, "registry.update", identity, registry=fields.name, registry_id=registry_id)

    try:
        await db.run(go)
    except IntegrityError:
        raise Conflict("another registry took that name meanwhile") from None


async def remove(db: Database, registry_id: int, identity: Identity) -> None:
    """Refused (412) while a policy replicates from or to the registry."""

    async def go(conn: AsyncConnection) -> None:
        current = await get(conn, registry_id)
        using = await rows.policies_using(conn, registry_id)
        if using:
            listed = ", ".join(str(x) for x in using[:10]) + (", …" if len(using) > 10 else "")
            raise PreconditionFailed(
                f"the registry {registry_id} is used by replication policies ({listed}): "
                "delete them or point them elsewhere first"
            )
        await rows.delete_registry(conn, registry_id)
        await record(conn, "registry.delete", identity, registry=current.name, registry_id=registry_id)

    try:
        await db.run(go)
    except IntegrityError:  # a policy referencing it was written meanwhile
        raise PreconditionFailed(f"the registry {registry_id} is used by a replication policy") from None


# -- ping ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingInput:
    """Harbor's RegistryPing: a stored registry (`id`), its fields overridden by those given, or
    a registry described in full (type and url) before it is saved."""

    id: int | None = None
    type: str | None = None
    url: str | None = None
    insecure: bool | None = None
    credential: Credential = Credential()


def ping_endpoint(box: SecretBox, given: PingInput, stored: Registry | None) -> Endpoint:
    """The endpoint to ping, with the rules a registry's fields meet (InvalidInput otherwise)."""
    if stored is None and given.id is None and (given.type is None or given.url is None):
        raise InvalidInput("ping needs a registry id, or a type and a url")
    kind = stored.type if stored is not None and given.type in (None, "") else check_type(given.type)
    url = check_url(given.url if given.url is not None else (stored.url if stored else None))
    insecure = given.insecure if given.insecure is not None else (stored.insecure if stored else False)
    username = given.credential.access_key if given.credential.access_key is not None else None
    password = given.credential.access_secret
    if password in (None, MASK) and stored is not None and stored.access_secret is not None:
        try:
            password = box.decrypt(stored.access_secret)
        except SecretError as exc:
            raise InvalidInput(f"the stored password of registry {stored.id} is unreadable: {exc}") from None
    elif password == MASK:
        raise InvalidInput(
            f"credential.access_secret: {MASK!r} stands for a stored password, and none is stored"
        )
    if username is None and stored is not None:
        username = stored.access_key
    return Endpoint(url, kind, username or None, password or None, insecure)


async def ping(session: ClientSession, endpoint: Endpoint) -> str | None:
    """None when the registry answers and takes the credentials; else what went wrong."""
    try:
        await RemoteRegistry(session, endpoint).ping()
    except RemoteError as exc:
        return str(exc)
    return None


async def record_status(db: Database, registry_id: int, healthy: bool) -> None:
    status = rows.HEALTHY if healthy else rows.UNHEALTHY
    await db.run(lambda conn: rows.set_registry_status(conn, registry_id, status))
