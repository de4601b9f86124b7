"""`/api/v2.0/configurations`: the runtime settings, for system admins."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model

from wharf_shared import runtime
from wharf_shared.keys import DB, REDIS, SETTINGS
from wharf_shared.secrets import SecretBox
from wharf_ui import configurations
from wharf_ui.bodies import Text, read_json
from wharf_ui.keys import RUNTIME
from wharf_ui.responses import empty_ok, json_response
from wharf_ui.security import sysadmin

_TYPES: dict[str, Any] = {"string": Text, "boolean": bool, "integer": int}
_BOUNDED: dict[str, Any] = {
    "token_expiration": Annotated[int, Field(ge=1, le=configurations.TOKEN_MINUTES_MAX)],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Harbor's Configurations body, the keys Wharf has (`configurations.KEYS`); any other key is a
# 400 naming it. Values are checked in the domain, which knows Harbor's words for them.
Configurations: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Configurations",
    __base__=_Strict,
    **{
        name: (_BOUNDED.get(name, _TYPES[key.kind]) | None, None) for name, key in configurations.KEYS.items()
    },
)


async def get_configurations(request: web.Request) -> web.Response:
    await sysadmin(request)
    # Straight from SQL, not the cache: an admin reads back what was just written elsewhere.
    async with request.app[DB].read() as conn:
        shown = await configurations.current(conn, runtime.defaults(request.app[SETTINGS]))
    return json_response(shown)


async def update_configurations(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, Configurations)
    settings = request.app[SETTINGS]
    fields = configurations.changes(
        body.model_dump(exclude_none=True), lambda: SecretBox(settings.secret_key_bytes())
    )
    await configurations.update(
        request.app[DB],
        request.app[REDIS],
        request.app[RUNTIME],
        request.app[SETTINGS].runtime_channel,
        fields,
        identity,
    )
    return empty_ok()
