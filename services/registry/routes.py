"""The registry's whole URL map: (method, path, handler, name) and what each route needs.

Upload routes come before `blobs/{digest}` so that `…/blobs/uploads/…` is never read as a
digest; `{name}` spans slashes and is validated by the middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from wharf_registry.handlers import base, blobs, discovery, manifests, uploads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NAME = "{name:.+?}"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str
    need: str  # "base", "catalog", or the repository action: "pull", "push", "delete"
    challenge: str = ""  # actions to ask for in the challenge's scope, when not just `need`
    continues_upload: bool = False  # acts on an upload that was started: tokens get the grace
    completes_push: bool = False  # makes pushed content visible: push access is re-checked in SQL


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v2/", base.get_base, "base", "base"),
    Route("GET", "/v2/_catalog", discovery.catalog, "catalog", "catalog"),
    Route("GET", f"/v2/{NAME}/tags/list", discovery.list_tags, "tags", "pull"),
    Route("GET", f"/v2/{NAME}/referrers/{{digest}}", discovery.list_referrers, "referrers", "pull"),
    Route("GET", f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest, "manifest", "pull"),
    Route(
        "PUT",
        f"/v2/{NAME}/manifests/{{reference}}",
        manifests.put_manifest,
        "manifest_put",
        "push",
        "pull,push",
        completes_push=True,
    ),
    Route(
        "DELETE",
        f"/v2/{NAME}/manifests/{{reference}}",
        manifests.delete_manifest,
        "manifest_delete",
        "delete",
    ),
    Route("POST", f"/v2/{NAME}/blobs/uploads/", uploads.post_upload, "upload_start", "push", "pull,push"),
    # Some clients leave out the trailing slash of the upload-start URL.
    Route(
        "POST", f"/v2/{NAME}/blobs/uploads", uploads.post_upload, "upload_start_noslash", "push", "pull,push"
    ),
    *(
        Route(
            method,
            f"/v2/{NAME}/blobs/uploads/{{upload_id}}",
            handler,
            name,
            "push",
            "pull,push",
            continues_upload=True,
            completes_push=method == "PUT",
        )
        for method, handler, name in (
            ("GET", uploads.get_upload, "upload"),
            ("PATCH", uploads.patch_upload, "upload_patch"),
            ("PUT", uploads.put_upload, "upload_put"),
            ("DELETE", uploads.delete_upload, "upload_delete"),
        )
    ),
    Route("GET", f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob, "blob", "pull"),
    Route("DELETE", f"/v2/{NAME}/blobs/{{digest}}", blobs.delete_blob, "blob_delete", "delete"),
)

BY_NAME: dict[str, Route] = {route.name: route for route in ROUTES}


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler, name=route.name, allow_head=True)
        else:
            app.router.add_route(route.method, route.path, route.handler, name=route.name)
