"""The token service's own metrics: sign-ins, tokens issued, requests refused by a lockout."""

from __future__ import annotations

from prometheus_client import Counter

from wharf_shared.metrics import Metrics

REFRESH_BACKEND = "refresh_token"  # the `backend` of a sign-in with a refresh token


class TokenMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.logins = Counter(
            "wharf_token_logins",
            "Sign-ins by result (success, failure, throttled; error when Redis or the database "
            "failed before a verdict) and backend (the auth backend that checks the password, e.g. "
            "db_auth; refresh_token for the OAuth2 refresh grant)",
            ["result", "backend"],
            registry=registry,
        )
        self.issued = Counter(
            "wharf_token_tokens_issued",
            "Registry tokens issued, by grant (password, refresh_token, anonymous)",
            ["grant"],
            registry=registry,
        )
        self.throttled = Counter(
            "wharf_token_throttled_requests",
            "Sign-ins refused while a lockout was in force, by what was locked: `account` (that "
            "account from that client address) or `address` (the client address, any account)",
            ["lock"],
            registry=registry,
        )
