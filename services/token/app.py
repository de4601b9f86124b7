"""`create_app(settings)`: the token service's only constructor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from wharf_shared import keys as shared_keys
from wharf_shared.addresses import parse_networks
from wharf_shared.auth.logins import Throttling
from wharf_shared.auth.modes import build_modes
from wharf_shared.config import Settings
from wharf_shared.events import EventPublisher
from wharf_shared.health import add_health_and_metrics, dependency_checks
from wharf_shared.metrics import Metrics, metrics_middleware
from wharf_shared.request_ids import request_id_middleware
from wharf_shared.runtime_watch import runtime_context
from wharf_shared.secrets import SecretBox
from wharf_shared.stores import open_stores
from wharf_shared.tokens import TokenIssuer, load_private_key
from wharf_token import keys
from wharf_token.logins import TokenLogins
from wharf_token.metrics import TokenMetrics
from wharf_token.middleware import errors_middleware
from wharf_token.refresh import RefreshTokens
from wharf_token.routes import add_routes


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """`clock`: what every expiry and lockout is measured against (tests move it)."""
    metrics = Metrics("token")
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware(metrics), errors_middleware])
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    app[keys.TOKEN_METRICS] = TokenMetrics(metrics)
    private_key = load_private_key(settings.token_private_key_path)
    token = settings.token
    app[keys.ISSUER] = TokenIssuer(private_key, service=token.service, issuer=token.issuer, clock=clock)
    app[keys.REFRESH] = RefreshTokens(
        private_key,
        service=token.service,
        issuer=token.issuer,
        lifetime=token.refresh_lifetime_seconds,
        clock=clock,
    )
    app[keys.TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app.cleanup_ctx.append(lambda app: _resources(app, clock))
    app.cleanup_ctx.append(runtime_context)
    add_routes(app)
    add_health_and_metrics(
        app, metrics, lambda: dependency_checks(app[shared_keys.DB], app[shared_keys.REDIS])
    )
    return app


def _secret_key(settings: Settings) -> bytes | None:
    try:
        return settings.secret_key_bytes() or None
    except OSError:
        return None


async def _resources(app: web.Application, clock: Callable[[], float]) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    db, redis = await open_stores(settings, app[shared_keys.METRICS])
    # Closed in reverse whatever happens: a closer that fails (or a start that does) must not
    # leave Redis open, its connections connected until the GC finds them, nor the database.
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(db.close)
        stack.push_async_callback(redis.aclose)
        app[shared_keys.DB] = db
        app[shared_keys.REDIS] = redis
        # Logins go to the event stream (for the audit log), batched off the request's path.
        events = EventPublisher(
            redis, settings.events_stream, settings.events_max_len, app[shared_keys.METRICS]
        )
        app[shared_keys.EVENTS] = events
        # The backend of each login follows `auth_mode` (read per login from the runtime settings).
        key = _secret_key(settings)
        box = SecretBox(key) if key else None
        modes, closers = build_modes(db, lambda: app[shared_keys.RUNTIME].get(), box=lambda: box)
        for close in closers:
            stack.push_async_callback(close)
        token = settings.token
        app[keys.LOGINS] = TokenLogins(
            db,
            redis,
            modes,
            refresh_tokens=app[keys.REFRESH],
            jobservice_key=_secret_key(settings),
            secret=settings.secret_key_path.read_bytes().strip(),
            cache_seconds=token.credential_cache_seconds,
            throttling=Throttling(
                pair_failures=token.throttle_failures,
                address_failures=token.throttle_address_failures,
                lockout_seconds=token.throttle_lockout_seconds,
            ),
            clock=clock,
            metrics=app[keys.TOKEN_METRICS],
        )
        await events.start()
        stack.push_async_callback(events.close)
        yield
