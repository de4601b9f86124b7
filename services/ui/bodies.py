"""JSON request bodies, read into pydantic models: a body that is not JSON, a field of the wrong
type or out of bounds is a 400 naming the field, never a 500; too large a body is a 413."""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ValidationError

from wharf_shared.errors.harbor import BadRequest, PayloadTooLarge
from wharf_shared.keys import SETTINGS

M = TypeVar("M", bound=BaseModel)


def _storable(value: str) -> str:
    """Text every database keeps as given: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not hold a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def read_json(request: web.Request, model: type[M]) -> M:
    limit = request.app[SETTINGS].ui.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(message=f"the body exceeds {limit} bytes")
    body = bytearray()
    try:
        while chunk := await request.content.read(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(message=f"the body exceeds {limit} bytes")
    except web.RequestPayloadError:
        raise BadRequest(message="the request body is malformed") from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(message="the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(message="the request body must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BadRequest(message=_describe(exc)) from None
