"""The ui service's typed app keys (shared ones in `wharf_shared.keys`)."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.runtime import RuntimeConfig
from wharf_ui.security import AUTHENTICATOR

RUNTIME = web.AppKey("runtime", RuntimeConfig)

__all__ = ["AUTHENTICATOR", "RUNTIME"]
