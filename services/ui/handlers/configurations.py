"""`/api/v2.0/configurations`: the runtime settings, for system admins."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from wharf_shared import runtime
from wharf_shared.keys import DB, REDIS, SETTINGS
from wharf_ui import configurations
from wharf_ui.bodies import Text, read_json
from wharf_ui.keys import RUNTIME
from wharf_ui.responses import empty_ok, json_response
from wharf_ui.security import sysadmin


class Configurations(BaseModel):
    """Harbor's Configurations body, the keys Wharf has (`configurations.KEYS`); any other key
    is a 400 naming it. Values are checked in the domain, which knows Harbor's words for them."""

    model_config = ConfigDict(extra="forbid")

    auth_mode: Text | None = None
    project_creation_restriction: Text | None = None
    self_registration: bool | None = None
    token_expiration: Annotated[int, Field(ge=1, le=configurations.TOKEN_MINUTES_MAX)] | None = None
    read_only: bool | None = None
    anonymous_access: bool | None = None


async def get_configurations(request: web.Request) -> web.Response:
    await sysadmin(request)
    # Straight from SQL, not the cache: an admin reads back what was just written elsewhere.
    async with request.app[DB].read() as conn:
        shown = await configurations.current(conn, runtime.defaults(request.app[SETTINGS]))
    return json_response(shown)


async def update_configurations(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, Configurations)
    fields = configurations.changes(body.model_dump(exclude_none=True))
    await configurations.update(
        request.app[DB],
        request.app[REDIS],
        request.app[RUNTIME],
        request.app[SETTINGS].runtime_channel,
        fields,
        identity,
    )
    return empty_ok()
