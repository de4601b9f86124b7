"""The ui service's URL map: every `/api/v2.0` route, one row each."""

from __future__ import annotations

from aiohttp import web

from wharf_ui.handlers import configurations, statistics, system, users

API = "/api/v2.0"

ROUTES = (
    ("GET", "/ping", system.ping, "ping"),
    ("GET", "/health", system.health, "api_health"),
    ("GET", "/systeminfo", system.systeminfo, "systeminfo"),
    ("GET", "/swagger.json", system.swagger, "swagger"),
    ("GET", "/users", users.list_users, "list_users"),
    ("POST", "/users", users.create_user, "create_user"),
    ("GET", "/users/search", users.search_users, "search_users"),
    ("GET", "/users/current", users.current_user, "current_user"),
    ("GET", "/users/current/permissions", users.current_permissions, "current_permissions"),
    ("GET", "/users/{user_id}", users.get_user, "get_user"),
    ("PUT", "/users/{user_id}", users.update_user, "update_user"),
    ("DELETE", "/users/{user_id}", users.delete_user, "delete_user"),
    ("PUT", "/users/{user_id}/password", users.update_password, "update_password"),
    ("PUT", "/users/{user_id}/sysadmin", users.set_sysadmin, "set_sysadmin"),
    # runtime configuration and statistics
    ("GET", "/configurations", configurations.get_configurations, "get_configurations"),
    ("PUT", "/configurations", configurations.update_configurations, "update_configurations"),
    ("GET", "/statistics", statistics.get_statistic, "get_statistic"),
)


def add_routes(app: web.Application) -> None:
    for method, path, handler, name in ROUTES:
        if method == "GET":
            app.router.add_get(API + path, handler, name=name, allow_head=False)
        else:
            app.router.add_route(method, API + path, handler, name=name)
