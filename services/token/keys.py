"""The token service's typed app keys."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from wharf_shared.keys import RUNTIME
from wharf_shared.tokens import TokenIssuer
from wharf_token.logins import TokenLogins
from wharf_token.metrics import TokenMetrics
from wharf_token.refresh import RefreshTokens

ISSUER = web.AppKey("issuer", TokenIssuer)
REFRESH = web.AppKey("refresh", RefreshTokens)
LOGINS = web.AppKey("logins", TokenLogins)
TOKEN_METRICS = web.AppKey("token_metrics", TokenMetrics)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", list[ipaddress.IPv4Network | ipaddress.IPv6Network])

__all__ = ["ISSUER", "LOGINS", "REFRESH", "RUNTIME", "TOKEN_METRICS", "TRUSTED_PROXIES"]
