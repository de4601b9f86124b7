"""The portal's frame, in-process on each database: the way in (`/` and pages without a session
lead to the sign-in page, with the way back in `next`, a local path only), pages with their
security headers and the session's CSRF token, error pages in HTML with the right status, escaped
input, and the static files."""

from __future__ import annotations

import re
import urllib.parse

from tests.service.ui.conftest import ALICE_PASSWORD, Ui
from tests.service.ui.test_sessions import CSRF, sign_in


def _location(resp: object) -> str:
    return resp.headers["Location"]  # type: ignore[attr-defined,no-any-return]


async def test_without_a_session_every_page_leads_to_sign_in(ui: Ui) -> None:
    client = ui.client
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303
    assert _location(resp) == "/harbor/sign-in"
    resp = await client.get("/harbor/projects?name=web&page=2", allow_redirects=False)
    assert resp.status == 303
    target = urllib.parse.urlsplit(_location(resp))
    assert target.path == "/harbor/sign-in"
    assert urllib.parse.parse_qs(target.query) == {"next": ["/harbor/projects?name=web&page=2"]}
    # Basic credentials are not a page session: a browser would send them to every page.
    resp = await client.get(
        "/harbor/projects", headers={"Authorization": "Basic YWxpY2U6eA=="}, allow_redirects=False
    )
    assert resp.status == 303


async def test_an_ended_session_is_sent_to_sign_in_and_its_cookie_removed(ui: Ui) -> None:
    resp = await ui.client.get("/harbor/projects", headers={"Cookie": "sid=gone"}, allow_redirects=False)
    assert resp.status == 303
    assert any(c.startswith("sid=;") and "Max-Age=0" in c for c in resp.headers.getall("Set-Cookie"))


async def test_sign_in_page_keeps_only_a_local_next(ui: Ui) -> None:
    for asked, kept in [
        ("/harbor/projects/x/members", "/harbor/projects/x/members"),
        ("//evil.example/x", "/harbor/projects"),
        ("/\\evil.example", "/harbor/projects"),
        ("https://evil.example/", "/harbor/projects"),
        ("/harbor/sign-in?next=/x", "/harbor/projects"),
    ]:
        resp = await ui.client.get("/harbor/sign-in", params={"next": asked})
        assert resp.status == 200
        html = await resp.text()
        assert f'data-next="{kept}"' in html, (asked, html)


async def test_a_page_carries_security_headers_and_the_sessions_csrf_token(ui: Ui) -> None:
    signed = await sign_in(ui.client)
    resp = await ui.client.get("/harbor/projects", headers=signed.cookie())
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers[CSRF] == signed.csrf
    html = await resp.text()
    assert f'<meta name="csrf-token" content="{signed.csrf}">' in html
    # A signed-in user who is not a system admin sees no administration links.
    assert "/harbor/users" not in html
    assert 'aria-label="Your account: ' not in html  # the account link's name is its hidden prefix
    assert "Your account: </span>alice" in html


async def test_a_signed_in_visitor_of_sign_in_goes_on(ui: Ui) -> None:
    signed = await sign_in(ui.client)
    resp = await ui.client.get(
        "/harbor/sign-in?next=/harbor/projects%3Fname%3Da", headers=signed.cookie(), allow_redirects=False
    )
    assert resp.status == 303
    assert _location(resp) == "/harbor/projects?name=a"


async def test_errors_are_pages_with_their_status(ui: Ui) -> None:
    signed = await sign_in(ui.client)
    resp = await ui.client.get("/harbor/no-such-page", headers=signed.cookie())
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "<h1>Not found</h1>" in await resp.text()
    resp = await ui.client.get("/harbor/projects?page=zero", headers=signed.cookie())
    assert resp.status == 400
    html = await resp.text()
    assert "<h1>Something is wrong with this request</h1>" in html
    assert "page" in html
    # The API keeps its JSON errors.
    resp = await ui.client.get("/api/v2.0/no-such-path")
    assert resp.status == 404
    assert resp.content_type == "application/json"


async def test_what_a_visitor_typed_comes_back_escaped(ui: Ui) -> None:
    signed = await sign_in(ui.client)
    resp = await ui.client.get(
        "/harbor/projects", params={"name": '"><script>alert(1)</script>'}, headers=signed.cookie()
    )
    assert resp.status == 200
    html = await resp.text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_projects_page_lists_what_the_viewer_may_see(ui: Ui) -> None:
    await ui.add_project("seen-by-alice", ui.alice_id)
    await ui.add_project("admins-own", ui.admin_id)
    signed = await sign_in(ui.client, "alice", ALICE_PASSWORD)
    html = await (await ui.client.get("/harbor/projects", headers=signed.cookie())).text()
    assert "seen-by-alice" in html
    assert "admins-own" not in html
    assert "Project admin" in html  # alice's role in her project
    # Filters come from the URL.
    html = await (
        await ui.client.get("/harbor/projects?name=nothing-like-it", headers=signed.cookie())
    ).text()
    assert "No project matches." in html


async def test_static_files_are_served_and_nothing_beside_them(ui: Ui) -> None:
    resp = await ui.client.get("/static/portal/portal.js")
    assert resp.status == 200
    assert "javascript" in resp.content_type
    assert re.search(r"X-Harbor-CSRF-Token", await resp.text())
    resp = await ui.client.get("/static/portal/portal.css")
    assert resp.status == 200
    assert resp.content_type == "text/css"
    for path in ("/static/portal/../render.py", "/static/portal/%2e%2e/render.py", "/static/portal/nope.js"):
        resp = await ui.client.get(path)
        assert resp.status in (403, 404), path
