"""CasClient against a real CAS server (django-mama-cas, its own process): login through its form,
ticket validation with attributes over CAS 2.0 and 3.0, refused tickets, hostile XML answers
(served by a real HTTP server in the test), and single logout end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.cas_server import CasServer, CasUserSeed, running_cas_server
from tests.support.processes import free_port
from tests.support.sign_in import SignInRefused, browser, sign_in
from wharf_shared.auth.cas import (
    CasClient,
    CasError,
    CasSettings,
    CasTicketError,
    cas_settings,
    login_url,
    logout_url,
    parse_logout_request,
    parse_validation,
)

USERS = {
    "alice": CasUserSeed("Alice-pass-1", "Alice Liddell", "alice@example.test", ("dev", "ops")),
    "bob": CasUserSeed("Bob-pass-1", "Bob Builder", "bob@example.test"),
}
SERVICE = "http://127.0.0.1:9/c/cas/callback"  # never served: the tests stop at the redirect


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasServer]:
    with running_cas_server(tmp_path_factory.mktemp("cas"), USERS) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[CasClient]:
    async with aiohttp.ClientSession() as session:
        yield CasClient(session, timeout_seconds=5)


async def ticket_for(settings: CasSettings, username: str = "alice", service: str = SERVICE) -> str:
    async with browser() as session:
        location = await sign_in(session, login_url(settings, service), username, USERS[username].password)
    assert str(location).startswith(service + "?"), location
    return location.query["ticket"]


@pytest.mark.parametrize("version", ["2.0", "3.0"])
async def test_login_and_validation_with_attributes(cas: CasServer, client: CasClient, version: str) -> None:
    settings = cas_settings(cas.configuration(cas_version=version))
    ticket = await ticket_for(settings)
    assert ticket.startswith("ST-")
    user = await client.validate(settings, ticket=ticket, service=SERVICE)
    assert (user.username, user.email, user.groups, user.ticket) == (
        "alice",
        "alice@example.test",
        ("dev", "ops"),
        ticket,
    )
    assert user.attributes["displayName"] == ("Alice Liddell",)


async def test_attribute_mapping(cas: CasServer, client: CasClient) -> None:
    settings = cas_settings(cas.configuration(cas_username_attribute="mail", cas_groups_attribute=""))
    user = await client.validate(settings, ticket=await ticket_for(settings, "bob"), service=SERVICE)
    assert (user.username, user.groups) == ("bob@example.test", ())
    missing = cas_settings(cas.configuration(cas_username_attribute="employeeNumber"))
    with pytest.raises(CasError, match="no attribute 'employeeNumber'"):
        await client.validate(missing, ticket=await ticket_for(missing), service=SERVICE)


async def test_wrong_password_gets_no_ticket(cas: CasServer) -> None:
    settings = cas_settings(cas.configuration())
    async with browser() as session:
        with pytest.raises(SignInRefused):
            await sign_in(session, login_url(settings, SERVICE), "alice", "not-her-password")


async def test_a_ticket_is_good_once(cas: CasServer, client: CasClient) -> None:
    settings = cas_settings(cas.configuration())
    ticket = await ticket_for(settings)
    await client.validate(settings, ticket=ticket, service=SERVICE)
    with pytest.raises(CasTicketError, match="INVALID_TICKET") as refused:
        await client.validate(settings, ticket=ticket, service=SERVICE)
    assert refused.value.code == "INVALID_TICKET"


async def test_forged_and_misdirected_tickets_are_refused(cas: CasServer, client: CasClient) -> None:
    settings = cas_settings(cas.configuration())
    with pytest.raises(CasTicketError) as forged:
        await client.validate(settings, ticket="ST-1234567890-forgedforgedforgedforged", service=SERVICE)
    assert forged.value.code == "INVALID_TICKET"
    ticket = await ticket_for(settings)
    with pytest.raises(CasTicketError) as elsewhere:
        await client.validate(settings, ticket=ticket, service="http://127.0.0.1:9/another/service")
    assert elsewhere.value.code == "INVALID_SERVICE"
    # Not service tickets at all: refused without asking CAS.
    for bad in ("", "PT-123-abc", "ST-" + "a" * 300, "ST-1 2", "ST-\u00e9"):
        with pytest.raises(CasTicketError, match="not a service ticket"):
            await client.validate(settings, ticket=bad, service=SERVICE)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationSuccess>
<cas:user>&lol4;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationSuccess>
<cas:user>&secret;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"""
PLAIN_DTD = """<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationSuccess>
<cas:user>alice</cas:user></cas:authenticationSuccess></cas:serviceResponse>"""


@pytest.fixture
async def hostile_cas() -> AsyncIterator[tuple[str, dict[str, tuple[int, str]]]]:
    """A real HTTP server playing CAS: it answers validations with whatever the test sets."""
    answers: dict[str, tuple[int, str]] = {}

    async def validate(request: web.Request) -> web.Response:
        status, body = answers["next"]
        return web.Response(status=status, text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/cas/p3/serviceValidate", validate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/cas")), answers
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, BILLION_LAUGHS, "hostile XML, refused: DTDForbidden"),
        (200, EXTERNAL_ENTITY, "hostile XML, refused: DTDForbidden"),
        (200, PLAIN_DTD, "hostile XML, refused: DTDForbidden"),
        (200, "<cas:serviceResponse", "not XML"),
        (200, "<html>Login</html>", "not a cas:serviceResponse"),
        (200, '<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"/>', "neither a success nor"),
        (200, "<x>" + "a" * 300_000 + "</x>", "larger than"),
        (500, "oops", "CAS answered 500"),
    ],
)
async def test_hostile_or_broken_answers_are_refused(
    hostile_cas: tuple[str, dict[str, tuple[int, str]]],
    client: CasClient,
    status: int,
    body: str,
    message: str,
) -> None:
    url, answers = hostile_cas
    answers["next"] = (status, body)
    with pytest.raises(CasError, match=message):
        await client.validate(cas_settings({"cas_url": url}), ticket="ST-1-abc", service=SERVICE)


async def test_unreachable_cas_and_bad_settings(client: CasClient) -> None:
    down = cas_settings({"cas_url": f"http://127.0.0.1:{free_port()}/cas"})
    with pytest.raises(CasError, match="cannot reach CAS"):
        await client.validate(down, ticket="ST-1-abc", service=SERVICE)
    with pytest.raises(CasError, match="cas_version"):
        await client.validate(
            cas_settings({"cas_url": "http://x/cas", "cas_version": "1.0"}), ticket="ST-1-a", service=SERVICE
        )
    with pytest.raises(CasError, match="cas_url"):
        login_url(cas_settings({"cas_url": "javascript:alert(1)"}), SERVICE)


async def test_single_logout_reaches_the_service(cas: CasServer, client: CasClient) -> None:
    """CAS's logout POSTs a LogoutRequest naming the ticket to the service that validated it."""
    received: asyncio.Queue[str] = asyncio.Queue()

    async def callback(request: web.Request) -> web.Response:
        form = await request.post()
        await received.put(str(form["logoutRequest"]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/c/cas/callback", callback)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        service = str(server.make_url("/c/cas/callback"))
        settings = cas_settings(cas.configuration())
        async with browser() as session:
            location = await sign_in(session, login_url(settings, service), "alice", USERS["alice"].password)
            ticket = location.query["ticket"]
            await client.validate(settings, ticket=ticket, service=service)
            async with session.get(logout_url(settings), allow_redirects=False) as response:
                assert response.status == 302
        body = await asyncio.wait_for(received.get(), timeout=10)
    finally:
        await server.close()
    assert parse_logout_request(body) == ticket


def test_logout_request_parsing_refuses_junk() -> None:
    ok = (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="x" Version="2.0" IssueInstant="now">'
        "<saml:NameID>@NOT_USED@</saml:NameID><samlp:SessionIndex>ST-1-abc</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )
    assert parse_logout_request(ok) == "ST-1-abc"
    with pytest.raises(CasError, match="hostile"):
        parse_logout_request(BILLION_LAUGHS)
    with pytest.raises(CasError, match="not a samlp:LogoutRequest"):
        parse_logout_request("<LogoutRequest><SessionIndex>ST-1</SessionIndex></LogoutRequest>")
    with pytest.raises(CasError, match="no usable SessionIndex"):
        parse_logout_request(ok.replace("ST-1-abc", ""))
    with pytest.raises(CasError, match="not XML"):
        parse_logout_request("logoutRequest=")


def test_urls_and_failure_answers() -> None:
    settings = cas_settings({"cas_url": "https://sso.example.test/cas/", "cas_version": "2.0"})
    url = login_url(settings, "https://wharf.example.test/c/cas/callback?x=1")
    assert url.startswith("https://sso.example.test/cas/login?service=")
    assert parse_qs(urlsplit(url).query) == {"service": ["https://wharf.example.test/c/cas/callback?x=1"]}
    assert logout_url(settings) == "https://sso.example.test/cas/logout"
    assert logout_url(settings, "https://w/").endswith("/logout?service=https%3A%2F%2Fw%2F")
    failure = (
        '<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">'
        '<cas:authenticationFailure code="INVALID_TICKET">'
        "Ticket ST-1 not recognized</cas:authenticationFailure>"
        "</cas:serviceResponse>"
    )
    with pytest.raises(CasTicketError, match="INVALID_TICKET: Ticket ST-1 not recognized"):
        parse_validation(failure, settings)
