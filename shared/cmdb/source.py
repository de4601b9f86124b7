"""Reading the CMDB: one GET of its JSON document (bounded in time and size, the configured
`Authorization` value, TLS verified unless `cmdb_verify_cert` is off), then its entries mapped by
the dotted-path settings to (project, owners, teams).

The mapping: the list of projects is at `cmdb_projects_field` (the whole document when empty);
in each entry, the project's name at `cmdb_name_field`, its owners' usernames at
`cmdb_owner_field` (a string or a list of strings, required; an empty list lets admin own a new
project), its teams at `cmdb_team_field` (optional: a string or a list; user groups of
`cmdb_team_group_type`). An entry that does not fit (not an object, a name Harbor refuses, a field
missing or of the wrong type, a project listed twice) is skipped with its reason, never a crash.
A document that is not usable at all (unreachable, a non-200, not JSON, no list) raises
`CmdbUnavailable`: the run changes nothing.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from wharf_shared.accounts import check_project_name
from wharf_shared.auth.answers import read_capped
from wharf_shared.auth.http import dig
from wharf_shared.errors.domain import InvalidInput, PreconditionFailed, Unavailable
from wharf_shared.logging import get_logger
from wharf_shared.runtime import CmdbSettings
from wharf_shared.secrets import SecretBox, SecretError

log = get_logger(__name__)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
NAME_MAX = 255  # a username's or a group name's column


class CmdbUnavailable(Unavailable):
    default_message = "the CMDB did not answer usably; nothing was changed"


@dataclass(frozen=True, slots=True)
class Entry:
    index: int  # its place in the CMDB's list, for reports
    project: str
    owners: tuple[str, ...]
    teams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry (or one owner or team of it) left out, and why."""

    index: int
    project: str | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def fetch(session: aiohttp.ClientSession, config: CmdbSettings, box: SecretBox) -> Any:
    """The CMDB's JSON document; `CmdbUnavailable` when there is none to use."""
    if not config.cmdb_url:
        raise PreconditionFailed("the CMDB sync is not configured: cmdb_url is empty")
    headers = {"Accept": "application/json"}
    if config.cmdb_auth_header:
        try:
            headers["Authorization"] = box.decrypt(config.cmdb_auth_header)
        except SecretError:
            raise PreconditionFailed("cmdb_auth_header cannot be decrypted with this secret key") from None
    url = config.cmdb_url
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=config.cmdb_timeout),
            ssl=config.cmdb_verify_cert,  # True: the default checks; False: none
            allow_redirects=False,
        ) as resp:
            status = resp.status
            body = await read_capped(resp, MAX_DOCUMENT_BYTES)
    except TimeoutError:
        raise CmdbUnavailable(f"the CMDB did not answer within {config.cmdb_timeout} s") from None
    except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
        raise CmdbUnavailable(f"the CMDB is unreachable: {str(exc)[:200] or type(exc).__name__}") from None
    if status != 200:
        raise CmdbUnavailable(f"the CMDB answered HTTP {status}")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise CmdbUnavailable(f"the CMDB's answer is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise CmdbUnavailable("the CMDB's answer is not JSON") from None


def _names(value: Any, field: str) -> tuple[str, ...]:
    """A string or a list of strings, as distinct non-empty names in their order."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidInput(f"{field}: not a name or a list of names")
    names: list[str] = []
    for item in items:
        name = item.strip()
        if not name:
            continue
        if len(name) > NAME_MAX or "\x00" in name:
            raise InvalidInput(f"{field}: {name[:80]!r} is no usable name")
        if name not in names:
            names.append(name)
    return tuple(names)


def entries(document: Any, config: CmdbSettings) -> tuple[list[Entry], list[Skipped]]:
    """The usable entries of the CMDB's document, and those skipped with their reasons."""
    listed = dig(document, config.cmdb_projects_field) if config.cmdb_projects_field else document
    if not isinstance(listed, list):
        where = config.cmdb_projects_field or "the top level"
        raise CmdbUnavailable(f"the CMDB's answer has no list of projects at {where}")
    found: list[Entry] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for index, item in enumerate(listed):
        name = dig(item, config.cmdb_name_field) if isinstance(item, dict) else None
        shown = name[:NAME_MAX] if isinstance(name, str) else None
        try:
            found.append(_entry(index, item, config, seen))
        except InvalidInput as exc:
            skipped.append(Skipped(index, shown, str(exc)))
    return found, skipped


def _entry(index: int, item: Any, config: CmdbSettings, seen: set[str]) -> Entry:
    if not isinstance(item, dict):
        raise InvalidInput("not a JSON object")
    name = dig(item, config.cmdb_name_field)
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{config.cmdb_name_field}: missing, or not a string")
    check_project_name(name)
    if name in seen:
        raise InvalidInput("the project is listed more than once (the first entry counts)")
    owners = dig(item, config.cmdb_owner_field)
    if owners is None:
        raise InvalidInput(f"{config.cmdb_owner_field}: missing")
    teams = dig(item, config.cmdb_team_field) if config.cmdb_team_field else None
    entry = Entry(
        index,
        name,
        _names(owners, config.cmdb_owner_field),
        _names(teams, config.cmdb_team_field) if teams is not None else (),
    )
    seen.add(name)
    return entry
