"""`/api/v2.0/ping`, `/health`, `/systeminfo` and `/swagger.json`."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import urllib.parse

from aiohttp import web

from wharf_shared import keys as shared_keys
from wharf_shared.health import dependency_checks
from wharf_ui import openapi
from wharf_ui.keys import RUNTIME
from wharf_ui.responses import json_response, timestamp
from wharf_ui.security import caller


def version() -> str:
    try:
        return "v" + importlib.metadata.version("wharf")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


async def ping(_request: web.Request) -> web.Response:
    return web.Response(text="Pong")


async def health(request: web.Request) -> web.Response:
    """Harbor's shape: `status` and one entry per component; always 200 (the body says)."""
    checks = await dependency_checks(request.app[shared_keys.DB], request.app[shared_keys.REDIS])
    components = [{"name": "core", "status": "healthy"}]
    for name, outcome in checks.items():
        component = {"name": name, "status": "healthy" if outcome == "ok" else "unhealthy"}
        if outcome != "ok":
            component["error"] = outcome
        components.append(component)
    healthy = all(c["status"] == "healthy" for c in components)
    return json_response({"status": "healthy" if healthy else "unhealthy", "components": components})


async def systeminfo(request: web.Request) -> web.Response:
    """What Harbor tells everyone (auth mode, self-registration, version), and signed-in callers
    more (addresses, project creation, read-only)."""
    identity = await caller(request)
    runtime = await request.app[RUNTIME].get()
    settings = request.app[shared_keys.SETTINGS]
    info: dict[str, object] = {
        "auth_mode": runtime.auth_mode,
        "primary_auth_mode": False,
        "self_registration": runtime.self_registration,
        "harbor_version": version(),
        "banner_message": "",
        "current_time": timestamp(dt.datetime.now(dt.UTC)),
    }
    if not identity.anonymous:
        external = settings.external_url.rstrip("/")
        info.update(
            {
                "external_url": external,
                "registry_url": urllib.parse.urlsplit(external).netloc,
                "project_creation_restriction": runtime.project_creation_restriction,
                "read_only": runtime.read_only,
                "has_ca_root": False,
                "with_chartmuseum": False,
                "notification_enable": False,
                "registry_storage_provider_name": settings.storage.driver,
            }
        )
    return json_response(info)


async def swagger(_request: web.Request) -> web.Response:
    return json_response(openapi.DOCUMENT)
