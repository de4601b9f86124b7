"""`http_auth`: an in-house HTTP endpoint (the company's OA system) checks passwords.

The request: `POST <http_authproxy_endpoint>` with the JSON body `{"username": …, "password": …}`
AND the same credentials as an `Authorization: Basic` header, so that an endpoint reading
either works. No redirect is followed. `http_authproxy_timeout` bounds the whole exchange;
`http_authproxy_verify_cert` and `http_authproxy_server_certificate` (a PEM CA) govern TLS.

The answer: a 2xx signs the user in. When any of the `http_authproxy_*_field` settings is set,
the body must be a JSON object and the user's attributes are read at those dotted paths
(`user.mail`); the username there, when mapped, must be the one that signed in. The groups
(a list of strings) are kept on the person for group memberships; a group named in
`http_authproxy_admin_groups`, or a username in `http_authproxy_admin_usernames` (both
comma-separated), makes the user a system admin (others' flag is left as it is).

FAIL CLOSED: a timeout, a connection or TLS error, any other status, a body that is not what
the mapping needs: refused (None), logged, never an exception to the caller. On success the
local row is created or refreshed (`wharf_shared.db.accounts.provision`) and, when
`http_authproxy_groups_field` is set, the user's HTTP groups become exactly the answer's
(`wharf_shared.db.groups.replace_memberships`), in the same transaction.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from wharf_shared.db import accounts, groups
from wharf_shared.db.accounts import DirectoryUser
from wharf_shared.db.engine import Database
from wharf_shared.db.projects import Caller
from wharf_shared.logging import get_logger
from wharf_shared.runtime import HttpAuthSettings, RuntimeSettings

if TYPE_CHECKING:
    import aiohttp

log = get_logger(__name__)

NAME = "http_auth"
MAX_ANSWER_BYTES = 1024 * 1024


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path in a JSON document (None when absent)."""
    for part in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def _names(value: str) -> set[str]:
    return {name.strip() for name in value.split(",") if name.strip()}


def _mapped(config: HttpAuthSettings) -> bool:
    return any(
        (
            config.http_authproxy_username_field,
            config.http_authproxy_email_field,
            config.http_authproxy_realname_field,
            config.http_authproxy_groups_field,
        )
    )


def person(config: HttpAuthSettings, username: str, answer: Any) -> DirectoryUser | None:
    """Who the endpoint's answer describes (None: not what the mapping needs)."""
    if not _mapped(config):
        answer = {}
    elif not isinstance(answer, dict):
        return None
    named = config.http_authproxy_username_field
    if named and dig(answer, named) != username:
        return None
    email = dig(answer, config.http_authproxy_email_field) if config.http_authproxy_email_field else None
    realname = (
        dig(answer, config.http_authproxy_realname_field) if config.http_authproxy_realname_field else ""
    )
    groups = dig(answer, config.http_authproxy_groups_field) if config.http_authproxy_groups_field else []
    if not isinstance(groups, list):
        groups = []
    kept = tuple(str(g)[:255] for g in groups if isinstance(g, str) and g)[:1000]
    admin = username in _names(config.http_authproxy_admin_usernames) or bool(
        _names(config.http_authproxy_admin_groups) & set(kept)
    )
    return DirectoryUser(
        username=username,
        # A cut address would be someone else's: one too long for the column is left out.
        email=email if isinstance(email, str) and 0 < len(email) <= 255 else None,
        realname=realname[:255] if isinstance(realname, str) else "",
        sysadmin=True if admin else None,
        groups=kept,
    )


class HttpAuthBackend:
    """`runtime`: the current runtime settings (read per login: the endpoint may change)."""

    name = NAME

    def __init__(self, db: Database, runtime: Callable[[], Awaitable[RuntimeSettings]]) -> None:
        self._db = db
        self._runtime = runtime
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp  # the token service loads the client only when this mode is used

        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _ssl(self, config: HttpAuthSettings) -> ssl.SSLContext | bool:
        if not config.http_authproxy_verify_cert:
            return False
        pem = config.http_authproxy_server_certificate
        if not pem:
            return True
        context = self._contexts.get(pem)
        if context is None:
            context = ssl.create_default_context(cadata=pem)
            self._contexts = {pem: context}  # one endpoint: keep the current CA's only
        return context

    async def authenticate(self, username: str, password: str, local: Caller | None) -> Caller | None:
        config = (await self._runtime()).http_auth
        if not config.http_authproxy_endpoint:
            log.warning("http_auth_not_configured")
            return None
        answer = await self._ask(config, username, password)
        if answer is None:
            return None
        found = person(config, username, answer)
        if found is None:
            log.warning("http_auth_answer_unmapped", username=username[:255])
            return None

        async def go(conn: Any) -> accounts.User | None:
            user = await accounts.provision(conn, NAME, found)
            if user is not None and config.http_authproxy_groups_field:
                # The answer's groups are the user's HTTP groups, in the same transaction.
                await groups.replace_memberships(conn, user.id, groups.GroupType.HTTP, found.groups)
            return user

        user = await self._db.run(go)
        if user is None:
            return None
        return Caller(user.id, user.username, user.sysadmin, user.password_hash)

    async def _ask(self, config: HttpAuthSettings, username: str, password: str) -> Any:
        """The endpoint's verdict: its JSON answer ({} when none is needed) on a 2xx, else None."""
        import aiohttp

        basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        url = config.http_authproxy_endpoint
        try:
            async with self._client().post(
                url,
                json={"username": username, "password": password},
                headers={"Authorization": "Basic " + basic, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=config.http_authproxy_timeout),
                ssl=self._ssl(config),
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except TimeoutError:
            log.warning("http_auth_timeout", endpoint=url, seconds=config.http_authproxy_timeout)
            return None
        except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
            log.warning("http_auth_unreachable", endpoint=url, error=repr(exc)[:300])
            return None
        if not 200 <= status < 300:
            level = log.warning if status >= 500 else log.info
            level("http_auth_refused", endpoint=url, status=status, username=username[:255])
            return None
        if not _mapped(config):
            return {}
        if len(body) > MAX_ANSWER_BYTES:
            log.warning("http_auth_answer_too_large", endpoint=url)
            return None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            log.warning("http_auth_answer_not_json", endpoint=url, status=status)
            return None
