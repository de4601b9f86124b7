"""CAS 2.0 / 3.0 single sign-on (`cas_auth`) for the portal: the CAS protocol's client side.

The portal sends the browser to `<cas_url>/login?service=<its callback>`; CAS sends it back with
`?ticket=ST-…`; `CasClient.validate` asks `<cas_url>/serviceValidate` (CAS 2.0) or
`/p3/serviceValidate` (3.0) whether that service ticket is good for that service, and reads the
XML answer: `cas:authenticationSuccess` with `cas:user` and `cas:attributes`, or
`cas:authenticationFailure` with its code. The username is `cas:user`, or the attribute
`cas_username_attribute` when set; e-mail and groups come from the attributes named by
`cas_email_attribute` and `cas_groups_attribute`.

The answer comes over the network and is parsed as hostile: through defusedxml, which refuses
DTDs, entity declarations and external references (no entity expansion bombs, no XXE), and
never more than `_BODY_LIMIT` bytes. Single logout: CAS POSTs a SAML `LogoutRequest` whose
`SessionIndex` is the service ticket the session was opened with; `parse_logout_request`
returns it so that the portal can end that session.

Every failure is a `CasError` (or its `CasTicketError` for a ticket CAS refused), with a message.
`CasSettings` names its fields as the runtime settings' keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from xml.etree.ElementTree import Element, ParseError

import aiohttp
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from wharf_shared.auth.answers import read_capped
from wharf_shared.logging import get_logger

log = get_logger(__name__)

CAS_NS = "http://www.yale.edu/tp/cas"
SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
_BODY_LIMIT = 256 * 1024
# CAS protocol 3.0, 3.7: tickets are at most 256 characters; we take printable ASCII only.
_TICKET = re.compile(r"[\x21-\x7e]{1,256}")
VERSIONS = {"2.0": "/serviceValidate", "3.0": "/p3/serviceValidate"}


@dataclass(frozen=True)
class CasSettings:
    """The `cas_*` runtime settings (Wharf's: Harbor has no CAS mode)."""

    cas_url: str = ""  # the CAS server's base URL, e.g. https://sso.example.com/cas
    cas_version: str = "3.0"  # "2.0" or "3.0"
    cas_username_attribute: str = ""  # empty: the username is cas:user
    cas_email_attribute: str = "mail"
    cas_groups_attribute: str = ""  # empty: no groups
    cas_verify_cert: bool = True


def cas_settings(values: Mapping[str, Any]) -> CasSettings:
    """The CAS settings among runtime settings (other keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(CasSettings)}
    return CasSettings(**{k: v for k, v in values.items() if k in names and v is not None})


class CasError(Exception):
    """CAS could not be asked, or answered something unusable; the message says why."""


class CasTicketError(CasError):
    """CAS refused the ticket (`cas:authenticationFailure`): unknown, used, expired, or for
    another service."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"CAS refused the ticket: {code}: {message}" if message else f"CAS refused: {code}")
        self.code = code


@dataclass(frozen=True)
class CasUser:
    username: str
    email: str
    groups: tuple[str, ...]
    attributes: Mapping[str, tuple[str, ...]]  # every attribute CAS released, values in order
    ticket: str  # the service ticket: single logout names the session by it


def _base(settings: CasSettings) -> str:
    base = settings.cas_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise CasError(f"cas_url {settings.cas_url!r} is not an http(s) URL without query")
    return base


def login_url(settings: CasSettings, service: str, *, renew: bool = False) -> str:
    """Where to send the browser to sign in; CAS returns it to `service` with a ticket."""
    query = {"service": service} | ({"renew": "true"} if renew else {})
    return f"{_base(settings)}/login?{urlencode(query, quote_via=quote)}"


def logout_url(settings: CasSettings, service: str = "") -> str:
    """CAS's logout (ends the single sign-on session), returning to `service` when given."""
    url = f"{_base(settings)}/logout"
    return f"{url}?{urlencode({'service': service}, quote_via=quote)}" if service else url


def validate_url(settings: CasSettings, service: str, ticket: str) -> str:
    version = settings.cas_version.strip()
    if version not in VERSIONS:
        raise CasError(f"cas_version {settings.cas_version!r} is not 2.0 or 3.0")
    query = urlencode({"service": service, "ticket": ticket}, quote_via=quote)
    return f"{_base(settings)}{VERSIONS[version]}?{query}"


def _parse(text: bytes | str, what: str) -> Element:
    """XML from a peer, with DTDs, entities and external references refused."""
    try:
        root: Element = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CasError(f"{what} is hostile XML, refused: {type(exc).__name__}") from None
    except (ParseError, ValueError) as exc:
        raise CasError(f"{what} is not XML: {exc}") from None
    return root


def _text(element: Element | None) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def _q(name: str, ns: str = CAS_NS) -> str:
    return f"{{{ns}}}{name}"


def parse_validation(text: bytes | str, settings: CasSettings, ticket: str = "") -> CasUser:
    """The user a `serviceValidate` answer names; `CasTicketError` for a refusal."""
    root = _parse(text, "the serviceValidate answer")
    if root.tag != _q("serviceResponse"):
        raise CasError(f"the serviceValidate answer is not a cas:serviceResponse ({root.tag})")
    failure = root.find(_q("authenticationFailure"))
    if failure is not None:
        raise CasTicketError(failure.get("code", "UNKNOWN"), _text(failure))
    success = root.find(_q("authenticationSuccess"))
    if success is None:
        raise CasError("the serviceValidate answer is neither a success nor a failure")
    user = _text(success.find(_q("user")))
    if not user:
        raise CasError("the serviceValidate answer names no cas:user")
    attributes: dict[str, list[str]] = {}
    released = success.find(_q("attributes"))
    for element in list(released) if released is not None else []:
        name = element.tag.rpartition("}")[2]  # cas:mail, or an attribute in another namespace
        attributes.setdefault(name, []).append(_text(element))

    def first(name: str) -> str:
        return next((v for v in attributes.get(name, []) if v), "") if name else ""

    username = user
    if settings.cas_username_attribute:
        username = first(settings.cas_username_attribute)
        if not username:
            raise CasError(
                f"CAS released no attribute {settings.cas_username_attribute!r} (cas_username_attribute)"
            )
    groups = attributes.get(settings.cas_groups_attribute, []) if settings.cas_groups_attribute else []
    return CasUser(
        username=username,
        email=first(settings.cas_email_attribute),
        groups=tuple(dict.fromkeys(g for g in groups if g)),
        attributes={k: tuple(v) for k, v in attributes.items()},
        ticket=ticket,
    )


def parse_logout_request(body: bytes | str) -> str:
    """The service ticket (`samlp:SessionIndex`) of a CAS single-logout POST's `logoutRequest`
    value: the session opened with that ticket is to end."""
    root = _parse(body, "the logout request")
    if root.tag != _q("LogoutRequest", SAMLP_NS):
        raise CasError(f"the logout request is not a samlp:LogoutRequest ({root.tag})")
    index = _text(root.find(_q("SessionIndex", SAMLP_NS)))
    if not _TICKET.fullmatch(index):
        raise CasError("the logout request has no usable SessionIndex")
    return index


class CasClient:
    """Validates service tickets through the process's aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout_seconds: float = 10.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def validate(self, settings: CasSettings, *, ticket: str, service: str) -> CasUser:
        """The user a service ticket proves for `service` (the URL CAS sent the browser back to,
        exactly as given to `login_url`). A ticket is good once: CAS refuses it after."""
        if not _TICKET.fullmatch(ticket) or not ticket.startswith("ST-"):
            raise CasTicketError("INVALID_TICKET", "not a service ticket")
        url = validate_url(settings, service, ticket)
        try:
            async with self._session.get(
                url,
                timeout=self._timeout,
                ssl=bool(settings.cas_verify_cert),  # True: verify against the system CAs
                allow_redirects=False,
            ) as response:
                body = await read_capped(response, _BODY_LIMIT)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CasError(f"cannot reach CAS at {_base(settings)}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise CasError(f"CAS answered {status} to serviceValidate")
        if len(body) > _BODY_LIMIT:
            raise CasError(f"the serviceValidate answer is larger than {_BODY_LIMIT} bytes")
        user = parse_validation(body, settings, ticket)
        log.info("cas_ticket_validated", username=user.username)
        return user
