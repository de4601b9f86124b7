"""LDAP / Active Directory (`ldap_auth`): who a username and password belong to, and their groups.

Search-then-bind, as Harbor does: bind as the service account (`ldap_search_dn`, anonymous when
empty), find exactly one entry under `ldap_base_dn` matching `ldap_filter` and `ldap_uid`, then
bind as that entry with the password. The directory speaks plain LDAP, LDAPS (`ldaps://`) or
StartTLS (`ldap_starttls`), verifying the server against `ldap_ca_certificate` (PEM) or the
system's CAs while `ldap_verify_cert` is on.

ldap3 is synchronous: every call runs in this directory's own small thread pool, each socket
operation bounded by `ldap_timeout` and the whole call by a deadline, so a hung directory costs
a login a few seconds, never the event loop. `authenticate` and `sign_in` (a login with the
user's groups and admin flag, on one connection) fail closed: any failure is None and a log
line. The lookups for the API and the group sync raise `LdapError` instead, with a message fit
for an admin: an outage must not read as "nobody is in this group".

The settings travel with each call (they are runtime settings that an admin changes at will):
`wharf_shared.runtime.LdapSettings`, whose fields are Harbor's configuration keys, with
`ldap_search_password` in clear (the backend decrypts the stored one before a call).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError, LDAPSocketReceiveError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from wharf_shared.db.groups import dn_key
from wharf_shared.logging import get_logger
from wharf_shared.runtime import LdapSettings

log = get_logger(__name__)

T = TypeVar("T")

_SCOPES: dict[int, Literal["BASE", "LEVEL", "SUBTREE"]] = {
    0: "BASE",
    1: "LEVEL",
    2: "SUBTREE",
}  # ldap3's names
_SUCCESS, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT = 0, 4, 32
# Where groups list their members: groupOfNames, groupOfUniqueNames (DNs), posixGroup (uids).
_MEMBER_DN_ATTRIBUTES = ("member", "uniqueMember")
_MEMBER_UID_ATTRIBUTE = "memberUid"


def ldap_settings(values: Mapping[str, Any]) -> LdapSettings:
    """The LDAP settings among flat runtime keys (other keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(LdapSettings)}
    return LdapSettings(**{k: v for k, v in values.items() if k in names and v is not None})


@dataclass(frozen=True)
class LdapUser:
    dn: str
    username: str  # the entry's `ldap_uid` value, as the directory spells it
    email: str
    realname: str


@dataclass(frozen=True)
class LdapGroup:
    dn: str
    name: str  # its `ldap_group_attribute_name` value (else the value of its first RDN)


@dataclass(frozen=True)
class SignIn:
    """A login the directory proved: the user, their groups, and whether they are in
    `ldap_group_admin_dn` (None when that is not set)."""

    user: LdapUser
    groups: list[LdapGroup]
    admin: bool | None


@dataclass(frozen=True)
class LdapPing:
    success: bool
    message: str


__all__ = [
    "LdapDirectory",
    "LdapError",
    "LdapGroup",
    "LdapPing",
    "LdapSettings",
    "LdapUser",
    "SignIn",
    "ldap_settings",
]


class LdapError(Exception):
    """A directory operation that could not be done; the message says why, for an admin."""


def same_dn(a: str, b: str) -> bool:
    """Whether two DNs name the same entry, by Wharf's one rule for DN equality: that of a
    stored LDAP group's key (`wharf_shared.db.groups.dn_key`: case and the spaces around `=`
    and `,` ignored), so the admin group, a login's groups and the groups in the database agree."""
    return dn_key(a) == dn_key(b)


def _dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    # The RDNs, parsed: for where a DN sits (under a base, at a depth), not for equality.
    return tuple((attr.lower(), value.strip().lower()) for attr, value, _ in parse_dn(dn, strip=True))


def _under(dn: str, base: str) -> bool:
    if not base:
        return True
    try:
        key, base_key = _dn_key(dn), _dn_key(base)
    except LDAPException:
        return False
    return len(key) >= len(base_key) and key[len(key) - len(base_key) :] == base_key


def _in_scope(dn: str, base: str, scope: int) -> bool:
    """Whether a search of `base` in `scope` (0 base, 1 one level, 2 subtree) reaches `dn`."""
    if not _under(dn, base):
        return False
    if scope == 2 or not base:
        return scope == 2
    depth = len(_dn_key(dn)) - len(_dn_key(base))
    return depth == scope


def _looks_like_dn(text: str) -> bool:
    if "=" not in text:
        return False
    try:
        return bool(parse_dn(text))
    except LDAPException:
        return False


def _and(user_filter: str, clause: str) -> str:
    """`clause` narrowed by an admin's filter, which may come with or without its parentheses."""
    user_filter = user_filter.strip()
    if not user_filter:
        return clause
    if not user_filter.startswith("("):
        user_filter = f"({user_filter})"
    return f"(&{user_filter}{clause})"


def _timeout(settings: LdapSettings) -> int:
    # ldap3 packs the receive timeout into a C struct of whole seconds.
    return max(1, int(settings.ldap_timeout))


# --- the synchronous ldap3 work (runs in the directory's threads) --------------------------------


def _ssl_context(settings: LdapSettings) -> ssl.SSLContext:
    return _context(settings.ldap_ca_certificate.strip(), settings.ldap_verify_cert)


@functools.lru_cache(maxsize=8)
def _context(ca: str, verify: bool) -> ssl.SSLContext:
    # Cached: loading the system's CAs costs milliseconds, and a context is safe to share.
    try:
        # A configured CA is the only one trusted for the directory; else the system's.
        context = ssl.create_default_context(cadata=ca or None)
    except (ssl.SSLError, ValueError) as exc:
        raise LdapError(f"ldap_ca_certificate is not a usable PEM certificate: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Tls(ldap3.Tls):
    """ldap3's TLS done by Python's ssl: the handshake checks the certificate and the server's
    name itself (ldap3's own check uses the deprecated ssl.match_hostname), and a socket whose
    handshake failed is closed (ldap3 leaves it open)."""

    def __init__(self, context: ssl.SSLContext, hostname: str) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context
        self._hostname = hostname

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        raw = connection.socket
        try:
            connection.socket = self._context.wrap_socket(
                raw, server_side=False, do_handshake_on_connect=do_handshake, server_hostname=self._hostname
            )
        except BaseException:
            raw.close()
            raise


def _server(settings: LdapSettings) -> ldap3.Server:
    raw = settings.ldap_url.strip()
    parts = urlsplit(raw if "://" in raw else f"ldap://{raw}")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in ("ldap", "ldaps") or not parts.hostname or port == -1:
        raise LdapError(f"ldap_url {raw!r} is not ldap://host[:port] or ldaps://host[:port]")
    use_ssl = scheme == "ldaps"
    tls = _Tls(_ssl_context(settings), parts.hostname)
    return ldap3.Server(
        parts.hostname,
        port=port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=_timeout(settings),
    )


def _open(settings: LdapSettings) -> ldap3.Connection:
    """A connection bound as the service account (anonymous without one), TLS as configured."""
    server = _server(settings)
    user = settings.ldap_search_dn.strip()
    conn = ldap3.Connection(
        server,
        user=user or None,
        password=settings.ldap_search_password if user else None,
        authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
        receive_timeout=_timeout(settings),
        read_only=True,
        auto_referrals=False,  # AD's referrals name servers we were not told to trust
        raise_exceptions=False,
    )
    _close_failed_sockets(conn)
    try:
        try:
            conn.open(read_server_info=False)
            if settings.ldap_starttls and not server.ssl and not conn.start_tls(read_server_info=False):
                raise LdapError(f"StartTLS refused by {settings.ldap_url}: {_describe(conn)}")
        except LDAPException as exc:  # ldap3 nests the cause's text in tuples; last_error has it plain
            raise LdapError(f"cannot connect to {settings.ldap_url}: {conn.last_error or exc}") from None
        if not conn.bind(read_server_info=False):
            who = f"as {user!r}" if user else "anonymously"
            raise LdapError(f"cannot bind {who}: {_describe(conn)}")
    except BaseException:
        _close(conn)
        raise
    return conn


def _close_failed_sockets(conn: ldap3.Connection) -> None:
    """ldap3 tries each address a name resolves to (localhost: ::1, then 127.0.0.1) and drops the
    socket of a failed try without closing it: close it as the try fails (this connection only)."""
    strategy = conn.strategy
    open_socket = strategy._open_socket

    def closing(address: Any, use_ssl: bool = False, unix_socket: bool = False) -> None:
        try:
            open_socket(address, use_ssl, unix_socket)
        except BaseException:
            sock = getattr(conn, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            raise

    strategy._open_socket = closing


def _close(conn: ldap3.Connection) -> None:
    """Unbind and close; ldap3 leaves the socket open when opening it or its TLS failed."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _describe(conn: ldap3.Connection) -> str:
    result = conn.result or {}
    words = [str(result.get("description") or conn.last_error or "no answer")]
    if result.get("message"):
        words.append(str(result["message"]))
    return ": ".join(words)


def _search(
    conn: ldap3.Connection,
    settings: LdapSettings,
    base: str,
    search_filter: str,
    scope: int,
    attributes: Iterable[str],
    *,
    size_limit: int = 0,
    missing_ok: bool = False,
) -> list[tuple[str, Any]]:
    """(dn, attributes) of each entry found; a missing base is an error unless `missing_ok`."""
    if scope not in _SCOPES:
        raise LdapError(f"search scope {scope} is not 0 (base), 1 (one level) or 2 (subtree)")
    try:
        conn.search(
            base,
            search_filter,
            search_scope=_SCOPES[scope],
            attributes=[a for a in attributes if a],
            size_limit=size_limit,
            time_limit=_timeout(settings),
        )
    except LDAPInvalidFilterError:
        raise LdapError(
            f"{search_filter} is not a valid LDAP filter (ldap_filter, ldap_group_search_filter)"
        ) from None
    code = (conn.result or {}).get("result")
    if code == _NO_SUCH_OBJECT and missing_ok:
        return []
    if code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
        raise LdapError(f"search of {base!r} for {search_filter} failed: {_describe(conn)}")
    return [
        (item["dn"], item.get("attributes", {}))
        for item in conn.response or []
        if item.get("type") == "searchResEntry"
    ]


def _values(attributes: Any, name: str) -> list[str]:
    if not name:
        return []
    for key, value in attributes.items():
        if key.lower() == name.lower():
            values = value if isinstance(value, list) else [value]
            return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values]
    return []


def _first(attributes: Any, name: str, default: str = "") -> str:
    values = _values(attributes, name)
    return values[0] if values else default


def _user_attributes(settings: LdapSettings) -> list[str]:
    return [settings.ldap_uid, settings.ldap_email_attribute, settings.ldap_realname_attribute]


def _user(settings: LdapSettings, dn: str, attributes: Any, fallback: str = "") -> LdapUser:
    username = _first(attributes, settings.ldap_uid, fallback)
    return LdapUser(
        dn=dn,
        username=username,
        email=_first(attributes, settings.ldap_email_attribute),
        realname=_first(attributes, settings.ldap_realname_attribute, username),
    )


def _find_users(
    conn: ldap3.Connection, settings: LdapSettings, uid: str, *, size_limit: int, every: bool = False
) -> list[LdapUser]:
    """Entries whose `ldap_uid` is `uid` (any, with `every`), within `ldap_filter`."""
    if not settings.ldap_uid.strip():
        raise LdapError("ldap_uid is empty")
    value = "*" if every else escape_filter_chars(uid)
    search_filter = _and(settings.ldap_filter, f"({settings.ldap_uid}={value})")
    found = _search(
        conn,
        settings,
        settings.ldap_base_dn,
        search_filter,
        settings.ldap_scope,
        _user_attributes(settings),
        size_limit=size_limit,
    )
    return [_user(settings, dn, attributes, uid) for dn, attributes in found]


def _bind_as_user(
    conn: ldap3.Connection, settings: LdapSettings, username: str, password: str
) -> LdapUser | None:
    """Search-then-bind on `conn`: the one user `username` names, once a bind as them proves
    `password` (the connection is then bound as them); None, logged, otherwise."""
    # Two at most: more than one match is as much a refusal as none.
    found = _find_users(conn, settings, username, size_limit=2)
    if len(found) != 1:
        log.info("ldap_login_refused", username=username, reason="no such user" if not found else "ambiguous")
        return None
    user = found[0]
    if not conn.rebind(user=user.dn, password=password, authentication=ldap3.SIMPLE):
        log.info("ldap_login_refused", username=username, reason=_describe(conn))
        return None
    return user


def _authenticate(settings: LdapSettings, username: str, password: str) -> LdapUser | None:
    conn = _open(settings)
    try:
        return _bind_as_user(conn, settings, username, password)
    finally:
        _close(conn)


def _ping(settings: LdapSettings) -> LdapPing:
    conn = _open(settings)
    try:
        if settings.ldap_base_dn.strip():
            found = _search(conn, settings, settings.ldap_base_dn, "(objectClass=*)", 0, [], missing_ok=True)
            if not found:
                return LdapPing(
                    False, f"ldap_base_dn {settings.ldap_base_dn!r} does not exist or is not readable"
                )
        return LdapPing(True, "")
    finally:
        _close(conn)


def _search_users(settings: LdapSettings, username: str, limit: int) -> list[LdapUser]:
    conn = _open(settings)
    try:
        return _find_users(conn, settings, username, size_limit=limit, every=not username)
    finally:
        _close(conn)


def _group_base(settings: LdapSettings) -> str:
    base = settings.ldap_group_base_dn.strip() or settings.ldap_base_dn.strip()
    if not base:
        raise LdapError("ldap_group_base_dn is empty")
    return base


def _group_filter(settings: LdapSettings, clause: str = "(objectClass=*)") -> str:
    return _and(settings.ldap_group_search_filter, clause)


def _group(settings: LdapSettings, dn: str, attributes: Any) -> LdapGroup:
    rdn_value = ""
    with contextlib.suppress(LDAPException, IndexError):
        rdn_value = parse_dn(dn, strip=True)[0][1]
    return LdapGroup(dn=dn, name=_first(attributes, settings.ldap_group_attribute_name, rdn_value))


def _read_group(
    conn: ldap3.Connection, settings: LdapSettings, dn: str, attributes: list[str]
) -> list[tuple[str, Any]]:
    """The group entry at `dn` if it matches the group filter (nothing when it is gone)."""
    return _search(conn, settings, dn, _group_filter(settings), 0, attributes, missing_ok=True)


def _search_groups(settings: LdapSettings, name_or_dn: str, limit: int) -> list[LdapGroup]:
    attribute = settings.ldap_group_attribute_name.strip() or "cn"
    conn = _open(settings)
    try:
        if _looks_like_dn(name_or_dn):
            found = []
            if _under(name_or_dn, _group_base(settings)):
                found = _read_group(conn, settings, name_or_dn, [attribute])
        else:
            value = escape_filter_chars(name_or_dn) if name_or_dn else "*"
            found = _search(
                conn,
                settings,
                _group_base(settings),
                _group_filter(settings, f"({attribute}={value})"),
                settings.ldap_group_search_scope,
                [attribute],
                size_limit=limit,
            )
        return [_group(settings, dn, attributes) for dn, attributes in found]
    finally:
        _close(conn)


def _group_members(settings: LdapSettings, group_dn: str) -> list[LdapUser]:
    conn = _open(settings)
    try:
        found = _read_group(conn, settings, group_dn, [*_MEMBER_DN_ATTRIBUTES, _MEMBER_UID_ATTRIBUTE])
        if not found:
            return []
        _, attributes = found[0]
        members: dict[str, LdapUser] = {}
        for name in _MEMBER_DN_ATTRIBUTES:
            for dn in _values(attributes, name):
                # Only people who could log in: in the user search's reach, within its filter, with a uid.
                if not _in_scope(dn, settings.ldap_base_dn, settings.ldap_scope):
                    continue
                for entry_dn, entry in _search(
                    conn,
                    settings,
                    dn,
                    _and(settings.ldap_filter, "(objectClass=*)"),
                    0,
                    _user_attributes(settings),
                    missing_ok=True,
                ):
                    if _values(entry, settings.ldap_uid):
                        members[entry_dn.lower()] = _user(settings, entry_dn, entry)
        for uid in _values(attributes, _MEMBER_UID_ATTRIBUTE):
            matches = _find_users(conn, settings, uid, size_limit=2)
            if len(matches) == 1:  # as at login: an ambiguous uid is nobody
                members[matches[0].dn.lower()] = matches[0]
        return sorted(members.values(), key=lambda u: u.username)
    finally:
        _close(conn)


def _user_groups_on(conn: ldap3.Connection, settings: LdapSettings, user_dn: str) -> list[LdapGroup]:
    attribute = settings.ldap_group_attribute_name.strip() or "cn"
    membership = settings.ldap_group_membership_attribute.strip()
    group_base = _group_base(settings)
    groups: list[LdapGroup] = []
    if membership:
        # The user entry lists its groups (memberOf): read it, then each group it names.
        found = _search(conn, settings, user_dn, "(objectClass=*)", 0, [membership], missing_ok=True)
        for dn in _values(found[0][1], membership) if found else []:
            if _under(dn, group_base):
                groups += [_group(settings, d, a) for d, a in _read_group(conn, settings, dn, [attribute])]
    else:
        dn = escape_filter_chars(user_dn)
        clause = "(|" + "".join(f"({name}={dn})" for name in _MEMBER_DN_ATTRIBUTES) + ")"
        found = _search(
            conn,
            settings,
            group_base,
            _group_filter(settings, clause),
            settings.ldap_group_search_scope,
            [attribute],
        )
        groups = [_group(settings, d, a) for d, a in found]
    return sorted(groups, key=lambda g: g.name)


def _user_groups(settings: LdapSettings, user_dn: str) -> list[LdapGroup]:
    conn = _open(settings)
    try:
        return _user_groups_on(conn, settings, user_dn)
    finally:
        _close(conn)


def _is_group_admin_on(conn: ldap3.Connection, settings: LdapSettings, user_dn: str) -> bool:
    admin_dn = settings.ldap_group_admin_dn.strip()
    if not admin_dn:
        return False
    membership = settings.ldap_group_membership_attribute.strip()
    if membership:
        found = _search(conn, settings, user_dn, "(objectClass=*)", 0, [membership], missing_ok=True)
        return any(same_dn(dn, admin_dn) for dn in (_values(found[0][1], membership) if found else []))
    found = _search(
        conn, settings, admin_dn, "(objectClass=*)", 0, list(_MEMBER_DN_ATTRIBUTES), missing_ok=True
    )
    members = [dn for name in _MEMBER_DN_ATTRIBUTES for dn in (_values(found[0][1], name) if found else [])]
    return any(same_dn(dn, user_dn) for dn in members)


def _is_group_admin(settings: LdapSettings, user_dn: str) -> bool:
    if not settings.ldap_group_admin_dn.strip():
        return False
    conn = _open(settings)
    try:
        return _is_group_admin_on(conn, settings, user_dn)
    finally:
        _close(conn)


def _sign_in(settings: LdapSettings, username: str, password: str) -> SignIn | None:
    """`_authenticate`, then the user's groups and admin flag, on one connection: the password
    proven by a bind as the user, the reads done as the service account again (rebound)."""
    conn = _open(settings)
    try:
        user = _bind_as_user(conn, settings, username, password)
        if user is None:
            return None
        search_dn = settings.ldap_search_dn.strip()
        if search_dn:
            back = conn.rebind(
                user=search_dn, password=settings.ldap_search_password, authentication=ldap3.SIMPLE
            )
        else:
            # ldap3's rebind keeps the last user when given none, and refuses a name in an
            # anonymous bind: forget the user's DN and password first.
            conn.user, conn.password = None, None
            back = conn.rebind(authentication=ldap3.ANONYMOUS)
        if not back:
            raise LdapError(f"cannot bind again as the search account: {_describe(conn)}")
        admin = _is_group_admin_on(conn, settings, user.dn) if settings.ldap_group_admin_dn.strip() else None
        return SignIn(user, _user_groups_on(conn, settings, user.dn), admin)
    finally:
        _close(conn)


# --- the async face ------------------------------------------------------------------------------


class LdapDirectory:
    """One per process: a bounded pool of threads for ldap3; the settings come with each call."""

    def __init__(self, *, max_threads: int = 4) -> None:
        # Threads start on first use, so a process may make this before it forks (wharf_shared.forks).
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="ldap")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, settings: LdapSettings, work: Callable[[], T]) -> T:
        # Each socket operation is bounded by ldap_timeout; this bounds a whole call, including
        # its wait for a thread while others are stuck on a hung directory.
        deadline = 3 * _timeout(settings)
        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        done, _ = await asyncio.wait({future}, timeout=deadline)
        if not done:
            future.cancel()  # a call still queued is dropped; a running one ends at its own timeout
            raise LdapError(f"no answer from {settings.ldap_url} within {deadline}s")
        try:
            return future.result()
        except LdapError:
            raise
        except (TimeoutError, LDAPSocketReceiveError) as exc:
            raise LdapError(
                f"no answer from {settings.ldap_url} within {_timeout(settings)}s ({exc})"
            ) from None
        except (LDAPException, OSError, ValueError) as exc:
            raise LdapError(f"{settings.ldap_url}: {type(exc).__name__}: {exc}") from None

    async def authenticate(self, settings: LdapSettings, username: str, password: str) -> LdapUser | None:
        """The directory's user these credentials prove, else None (every failure: fail closed)."""
        if not password:
            # A simple bind with a DN and no password is an "unauthenticated bind" that many
            # servers answer with success: never let one through.
            log.info("ldap_login_refused", username=username, reason="empty password")
            return None
        if not username.strip():
            log.info("ldap_login_refused", username=username, reason="empty username")
            return None
        try:
            return await self._run(settings, functools.partial(_authenticate, settings, username, password))
        except LdapError as exc:
            log.warning("ldap_login_failed", username=username, error=str(exc))
            return None
        except Exception:  # a bug here must refuse the login too, never let it through or crash it
            log.exception("ldap_login_failed", username=username)
            return None

    async def sign_in(self, settings: LdapSettings, username: str, password: str) -> SignIn | None:
        """`authenticate`, with the user's groups and admin flag read on the same connection;
        None on any failure, the groups' included (fail closed: access unknown is no access)."""
        if not password or not username.strip():
            await self.authenticate(settings, username, password)  # refused there, and logged
            return None
        try:
            return await self._run(settings, functools.partial(_sign_in, settings, username, password))
        except LdapError as exc:
            log.warning("ldap_login_failed", username=username, error=str(exc))
            return None
        except Exception:  # a bug here must refuse the login too, never let it through or crash it
            log.exception("ldap_login_failed", username=username)
            return None

    async def ping(self, settings: LdapSettings) -> LdapPing:
        """Harbor's /ldap/ping: can the service account bind, and does the base DN exist?"""
        try:
            return await self._run(settings, functools.partial(_ping, settings))
        except LdapError as exc:
            return LdapPing(False, str(exc))

    async def search_users(
        self, settings: LdapSettings, username: str, *, limit: int = 1000
    ) -> list[LdapUser]:
        """Users whose `ldap_uid` is `username` (every user, up to `limit`, when it is empty)."""
        return await self._run(settings, functools.partial(_search_users, settings, username, limit))

    async def search_groups(
        self, settings: LdapSettings, name_or_dn: str, *, limit: int = 1000
    ) -> list[LdapGroup]:
        """The group with this DN, or those whose group attribute is this name (all when empty)."""
        return await self._run(settings, functools.partial(_search_groups, settings, name_or_dn, limit))

    async def group_members(self, settings: LdapSettings, group_dn: str) -> list[LdapUser]:
        """The users a group lists (member, uniqueMember, memberUid); none for a group gone."""
        return await self._run(settings, functools.partial(_group_members, settings, group_dn))

    async def is_group_admin(self, settings: LdapSettings, user_dn: str) -> bool:
        """Whether the user is in `ldap_group_admin_dn` (Harbor: its members are system admins),
        by the membership attribute on the user when set, else by the group's member list."""
        return await self._run(settings, functools.partial(_is_group_admin, settings, user_dn))

    async def user_groups(self, settings: LdapSettings, user_dn: str) -> list[LdapGroup]:
        """The groups under the group base the user is in: by `ldap_group_membership_attribute`
        on the user (memberOf) when set, else by a search for groups naming the user."""
        return await self._run(settings, functools.partial(_user_groups, settings, user_dn))
