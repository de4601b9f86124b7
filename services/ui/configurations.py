"""The runtime settings as Harbor's `/configurations` shows and takes them: Harbor's key names,
each shown as `{"value", "editable"}` and changed by a flat body of keys and values.

Harbor's keys map onto `wharf_shared.runtime.RuntimeSettings` fields; `token_expiration` is in
minutes (Harbor's unit) and kept in seconds (`token_lifetime_seconds`, which the environment
may seed with a finer value: it is then shown rounded up to whole minutes). Harbor has no key
for anonymous pulls of public projects; ours is `anonymous_access`.

Identity (`auth_mode`: db_auth, ldap_auth, http_auth, oidc_auth, cas_auth) takes Harbor's keys
(`ldap_*`, `http_authproxy_*`, `oidc_*`) and, where Harbor has none, Wharf's own:

- `ldap_ca_certificate` (PEM: the CA of the directory's certificate, for LDAPS and StartTLS),
  `ldap_starttls` (boolean: StartTLS on an `ldap://` URL), `ldap_email_attribute` (default
  `mail`), `ldap_realname_attribute` (default `cn`), `ldap_group_sync_schedule` (when the job
  service re-reads every LDAP group's members: Harbor's 6-field cron, default hourly
  `0 0 * * * *`; "" = never);
- `oidc_group_sync_schedule` (when the job service asks the OIDC provider for each OIDC user's
  groups with their refresh token: Harbor's 6-field cron, default hourly `0 0 * * * *`; "" =
  never);
- `http_authproxy_timeout` (seconds, 1-300), and where the user's attributes are in the
  endpoint's JSON answer, as dotted paths (`user.mail`): `http_authproxy_username_field`,
  `http_authproxy_email_field`, `http_authproxy_realname_field`, `http_authproxy_groups_field`
  (a list of names there);
- CAS: `cas_url` (the server's base URL), `cas_version` ("2.0" or "3.0"),
  `cas_username_attribute`, `cas_email_attribute`, `cas_groups_attribute`;
- the CMDB ownership sync: `cmdb_url`, `cmdb_auth_header` (the Authorization header's value),
  `cmdb_projects_field`, `cmdb_name_field`, `cmdb_owner_field`, `cmdb_team_field` (dotted
  paths), `cmdb_schedule` (Harbor's 6-field cron; "" = not scheduled), `cmdb_timeout`
  (seconds, 1-300), `cmdb_verify_cert`, `cmdb_owner_role` and `cmdb_team_role` (Harbor's role
  ids 1-5), `cmdb_team_group_type` (the user groups teams name: 1 LDAP, by DN; 2 HTTP, 3 OIDC,
  4 CAS, by name), `cmdb_remove_members` (the explicit rule that lets the sync remove and
  downgrade what it granted), `cmdb_public` (projects it creates).

Secrets (`ldap_search_password`, `oidc_client_secret`, `cmdb_auth_header`) are taken, stored
encrypted with the secret key (`SecretBox`) and never shown: GET leaves them out, as Harbor
does; "" clears one.

A change commits, drops this process's cached copy and is then announced over Redis
(`wharf_shared.runtime_watch`), so every process of every service applies it within a second.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import cron, runtime
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.rbac import Identity, Role
from wharf_shared.runtime import AUTH_MODES, SECRET_KEYS, RuntimeConfig, RuntimeSettings
from wharf_shared.runtime_watch import announce
from wharf_shared.secrets import SecretBox
from wharf_ui.changes import record

HARBOR_AUTH_MODES = ("db_auth", "ldap_auth", "uaa_auth", "http_auth", "oidc_auth")
PROJECT_CREATION = ("everyone", "adminonly")
# Token lifetimes in minutes: at least one, and short of 2**31 seconds (JWT `exp` stays a sane int).
TOKEN_MINUTES_MAX = (2**31 - 1) // 60
ADMIN = "admin"  # the user `wharf init` creates; the only one that lets auth_mode change
TEXT_MAX = 1024  # a URL, a DN, a filter, a field path
PEM_MAX = 64 * 1024
TIMEOUT_MAX = 300

Check = Callable[[str, Any], Any]  # (key, value) -> the value to store, or InvalidInput


def _one_of(*allowed: Any) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in allowed:
            words = ", ".join(str(a) for a in allowed)
            raise InvalidInput(f"{name}: {str(value)[:40]!r} is not one of {words}")
        return value

    return check


def _range(low: int, high: int) -> Check:
    def check(name: str, value: int) -> int:
        if not low <= value <= high:
            raise InvalidInput(f"{name}: {value} is not between {low} and {high}")
        return value

    return check


def _url(*schemes: str) -> Check:
    """ "" (unset) or an absolute URL of one of `schemes` with a host."""

    def check(name: str, value: str) -> str:
        if not value:
            return value
        try:
            url = urllib.parse.urlsplit(value)
            url.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise InvalidInput(f"{name}: {value[:80]!r} is not a URL") from None
        if url.scheme.lower() not in schemes or not url.hostname:
            raise InvalidInput(f"{name}: {value[:80]!r} must be a {' or '.join(schemes)} URL with a host")
        return value

    return check


def _pem(name: str, value: str) -> str:
    """ "" or one or more PEM certificates that parse."""
    if not value:
        return value
    if len(value) > PEM_MAX:
        raise InvalidInput(f"{name}: longer than {PEM_MAX} characters")
    from cryptography import x509  # only when a certificate is given

    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise InvalidInput(f"{name}: not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    return value


def _path(name: str, value: str) -> str:
    """ "" or a dotted path into a JSON document (`user.mail`): no empty segment."""
    if value and any(not part.strip() for part in value.split(".")):
        raise InvalidInput(f"{name}: {value[:80]!r} is not a dotted path (name.name...)")
    return value


def _ldap_filter(name: str, value: str) -> str:
    """ "" or a filter whose parentheses balance (the directory checks the rest)."""
    depth = 0
    for char in value:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise InvalidInput(f"{name}: {value[:80]!r} has unbalanced parentheses")
    return value


def _redirect_parms(name: str, value: str) -> str:
    """Harbor's `oidc_extra_redirect_parms`: a JSON object of strings ("" counts as {})."""
    try:
        parsed = json.loads(value or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise InvalidInput(f'{name}: must be a JSON object of strings ({{"prompt": "login"}})')
    return value or "{}"


def _schedule(name: str, value: str) -> str:
    if not value:
        return value
    try:
        return cron.validate(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def _auth_mode(name: str, value: str) -> str:
    if value not in AUTH_MODES:
        if value in HARBOR_AUTH_MODES:
            raise InvalidInput(f"{name}: {value} is not available in Wharf")
        raise InvalidInput(f"{name}: {str(value)[:40]!r} is not an auth mode ({', '.join(AUTH_MODES)})")
    return value


@dataclass(frozen=True, slots=True)
class Key:
    """One key: the `RuntimeSettings` field (or group field) behind it, its JSON type, the check of
    its value, and whether it is a secret (stored encrypted, never shown)."""

    field: str
    kind: str  # "string", "boolean", "integer" (Harbor's StringConfigItem, BoolConfigItem, ...)
    check: Check | None = None
    secret: bool = False
    max_length: int = TEXT_MAX


def _key(name: str, kind: str, check: Check | None = None, **more: Any) -> tuple[str, Key]:
    return name, Key(name, kind, check, secret=name in SECRET_KEYS, **more)


_HTTP = _url("http", "https")
_SCOPE = _one_of(0, 1, 2)
_ROLE = _one_of(*(int(role) for role in Role))

KEYS: dict[str, Key] = dict(
    [
        ("auth_mode", Key("auth_mode", "string", _auth_mode)),
        (
            "project_creation_restriction",
            Key("project_creation_restriction", "string", _one_of(*PROJECT_CREATION)),
        ),
        ("self_registration", Key("self_registration", "boolean")),
        ("token_expiration", Key("token_lifetime_seconds", "integer")),
        ("read_only", Key("read_only", "boolean")),
        ("anonymous_access", Key("anonymous_access", "boolean")),
        # LDAP
        _key("ldap_url", "string", _url("ldap", "ldaps")),
        _key("ldap_search_dn", "string"),
        _key("ldap_search_password", "string"),
        _key("ldap_base_dn", "string"),
        _key("ldap_uid", "string"),
        _key("ldap_filter", "string", _ldap_filter),
        _key("ldap_scope", "integer", _SCOPE),
        _key("ldap_timeout", "integer", _range(1, TIMEOUT_MAX)),
        _key("ldap_verify_cert", "boolean"),
        _key("ldap_group_base_dn", "string"),
        _key("ldap_group_search_filter", "string", _ldap_filter),
        _key("ldap_group_attribute_name", "string"),
        _key("ldap_group_search_scope", "integer", _SCOPE),
        _key("ldap_group_admin_dn", "string"),
        _key("ldap_group_membership_attribute", "string"),
        _key("ldap_ca_certificate", "string", _pem, max_length=PEM_MAX),
        _key("ldap_starttls", "boolean"),
        _key("ldap_email_attribute", "string"),
        _key("ldap_realname_attribute", "string"),
        _key("ldap_group_sync_schedule", "string", _schedule),
        # HTTP auth (an in-house OA system)
        _key("http_authproxy_endpoint", "string", _HTTP),
        _key("http_authproxy_tokenreview_endpoint", "string", _HTTP),
        _key("http_authproxy_verify_cert", "boolean"),
        _key("http_authproxy_skip_search", "boolean"),
        _key("http_authproxy_server_certificate", "string", _pem, max_length=PEM_MAX),
        _key("http_authproxy_admin_groups", "string"),
        _key("http_authproxy_admin_usernames", "string"),
        _key("http_authproxy_timeout", "integer", _range(1, TIMEOUT_MAX)),
        _key("http_authproxy_username_field", "string", _path),
        _key("http_authproxy_email_field", "string", _path),
        _key("http_authproxy_realname_field", "string", _path),
        _key("http_authproxy_groups_field", "string", _path),
        # OIDC
        _key("oidc_name", "string"),
        _key("oidc_endpoint", "string", _HTTP),
        _key("oidc_client_id", "string"),
        _key("oidc_client_secret", "string"),
        _key("oidc_groups_claim", "string"),
        _key("oidc_admin_group", "string"),
        _key("oidc_group_filter", "string"),
        _key("oidc_scope", "string"),
        _key("oidc_user_claim", "string"),
        _key("oidc_verify_cert", "boolean"),
        _key("oidc_auto_onboard", "boolean"),
        _key("oidc_extra_redirect_parms", "string", _redirect_parms),
        _key("oidc_group_sync_schedule", "string", _schedule),
        # CAS
        _key("cas_url", "string", _HTTP),
        _key("cas_version", "string", _one_of("2.0", "3.0")),
        _key("cas_username_attribute", "string"),
        _key("cas_email_attribute", "string"),
        _key("cas_groups_attribute", "string"),
        # CMDB ownership sync
        _key("cmdb_url", "string", _HTTP),
        _key("cmdb_auth_header", "string"),
        _key("cmdb_projects_field", "string", _path),
        _key("cmdb_name_field", "string", _path),
        _key("cmdb_owner_field", "string", _path),
        _key("cmdb_team_field", "string", _path),
        _key("cmdb_schedule", "string", _schedule),
        _key("cmdb_timeout", "integer", _range(1, TIMEOUT_MAX)),
        _key("cmdb_verify_cert", "boolean"),
        _key("cmdb_owner_role", "integer", _ROLE),
        _key("cmdb_team_role", "integer", _ROLE),
        _key("cmdb_team_group_type", "integer", _one_of(*(int(kind) for kind in GroupType))),
        _key("cmdb_remove_members", "boolean"),
        _key("cmdb_public", "boolean"),
    ]
)
assert {k.field for k in KEYS.values()} == set(runtime.KEYS), "every runtime setting has its key"


def token_minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


async def auth_mode_editable(conn: AsyncConnection) -> bool:
    """Harbor's rule: the auth mode may change only while `admin` is the only user (users made
    under one mode would not sign in under another)."""
    u = t.user_account.c
    others = (await conn.execute(select(func.count()).where(u.username != ADMIN))).scalar()
    return not others


async def current(conn: AsyncConnection, fallback: RuntimeSettings) -> dict[str, dict[str, Any]]:
    """Harbor's ConfigurationsResponse: every key with its value and whether it may change;
    secrets are left out (Harbor's GET never shows them)."""
    values = runtime.flat(await runtime.load(conn, fallback))
    editable = await auth_mode_editable(conn)
    shown: dict[str, dict[str, Any]] = {}
    for name, key in KEYS.items():
        if key.secret:
            continue
        value = values[key.field]
        if name == "token_expiration":
            value = token_minutes(value)
        shown[name] = {"value": value, "editable": editable if name == "auth_mode" else True}
    return shown


def changes(body: dict[str, Any], box: Callable[[], SecretBox]) -> dict[str, Any]:
    """The `RuntimeSettings` fields a Configurations body sets (types already checked), secrets
    encrypted with `box()` (called only when one is given); a key given as null is left as it
    is (Harbor's keys are nullable: null means "not given")."""
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        key = KEYS[name]
        if isinstance(value, str) and len(value) > key.max_length:
            raise InvalidInput(f"{name}: longer than {key.max_length} characters")
        if key.check is not None:
            value = key.check(name, value)
        if name == "token_expiration":
            value = value * 60
        if key.secret and value:
            value = box().encrypt(value)
        fields[key.field] = value
    return fields


def _harbor_keys(fields: dict[str, Any]) -> list[str]:
    """Harbor's names of the keys behind these `RuntimeSettings` fields (what the audit shows)."""
    return sorted(name for name, key in KEYS.items() if key.field in fields)


async def update(
    db: Database,
    redis: Redis,
    config: RuntimeConfig,
    channel: str,
    fields: dict[str, Any],
    by: Identity,
) -> None:
    """Store `fields` in one transaction, then make every process see them; the change is
    audited (`configuration.update`, naming the keys whose value changed; none: no event)."""
    if not fields:
        return

    async def go(conn: AsyncConnection) -> None:
        stored = runtime.flat(await runtime.load(conn, RuntimeSettings()))
        new_mode = fields.get("auth_mode", stored["auth_mode"])
        if new_mode != stored["auth_mode"] and not await auth_mode_editable(conn):
            raise InvalidInput(
                "auth_mode can not be modified as users other than admin exist in the database"
            )
        await runtime.store(conn, **fields)
        # The portal's form sends every key: the audit names only those whose value changed.
        # A secret's ciphertext differs each time: any secret given counts as changed.
        changed = {
            name: value
            for name, value in fields.items()
            if ((value or stored[name]) if name in SECRET_KEYS else stored[name] != value)
        }
        if changed:
            await record(conn, "configuration.update", by, keys=_harbor_keys(changed))

    await db.run(go)
    config.invalidate()  # this process at once, whatever becomes of the announcement
    await announce(redis, channel)
