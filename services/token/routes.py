"""The token service's URL map."""

from __future__ import annotations

from aiohttp import web

from wharf_token.handlers import token

ROUTES = (
    ("GET", "/service/token", token.get_token, "token"),
    ("POST", "/service/token", token.post_token, "token_oauth2"),
)


def add_routes(app: web.Application) -> None:
    for method, path, handler, name in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler, name=name, allow_head=False)
        else:
            app.router.add_route(method, path, handler, name=name)
