"""Errors of the HTTP layer itself: what a connection is refused with (shared/serving.py) and what
the front door answers when no service does (the proxy).

One class per condition; code, message and status come from the class, never from the call site.
Bodies have the `{"errors":[{"code","message","detail"}]}` shape that the OCI and Harbor APIs
share, so that a docker client and a portal both read them.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from wharf_shared.errors.coded import CodedError

SERVER = "Wharf"  # the `Server` header of every response (no version: nothing to fingerprint)


class HTTPError(CodedError):
    """An answer of the HTTP layer itself (a refused connection, a path nobody serves)."""

    def body(self) -> bytes:
        return json.dumps({"errors": [self.to_dict()]}).encode()

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=self.status,
            body=self.body(),
            content_type="application/json",
            headers={**(headers or {}), **self.headers, "Server": SERVER},
        )

    def raw(self) -> bytes:
        """The whole response as bytes, for a connection that has no request to answer through
        (a head that never completed, a client over its connection cap). It closes the connection."""
        body = self.body()
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"Server: {SERVER}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BadRequest(HTTPError):
    code, message, status = "BAD_REQUEST", "malformed request", 400


class NotFound(HTTPError):
    code, message, status = "NOT_FOUND", "nothing is served at this path", 404


class MethodNotAllowed(HTTPError):
    code, message, status = "METHOD_NOT_ALLOWED", "method not allowed at this path", 405


class RequestTimeout(HTTPError):
    code, message, status = "REQUEST_TIMEOUT", "the request head did not arrive in time", 408


class URITooLong(HTTPError):
    code, message, status = "URI_TOO_LONG", "request line too long", 414


class TooManyRequests(HTTPError):
    code, message, status = "TOOMANYREQUESTS", "too many connections from this address", 429


class HeadersTooLarge(HTTPError):
    code, message, status = "HEADERS_TOO_LARGE", "request header fields too large", 431


class Unknown(HTTPError):
    code, message, status = "UNKNOWN", "unknown error", 500


class BadGateway(HTTPError):
    code, message, status = "BAD_GATEWAY", "the upstream failed", 502


class Unavailable(HTTPError):
    code, message, status = "UNAVAILABLE", "service unavailable", 503


class GatewayTimeout(HTTPError):
    code, message, status = "GATEWAY_TIMEOUT", "the upstream did not answer in time", 504


ALL: tuple[type[HTTPError], ...] = (
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    URITooLong,
    TooManyRequests,
    HeadersTooLarge,
    Unknown,
    BadGateway,
    Unavailable,
    GatewayTimeout,
)
