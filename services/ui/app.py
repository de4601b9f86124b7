"""`create_app(settings)`: the ui service's only constructor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from wharf_shared import keys as shared_keys
from wharf_shared.addresses import parse_networks
from wharf_shared.auth.cas import CasClient
from wharf_shared.auth.ldap_auth import NAME as LDAP_AUTH
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.auth.logins import Logins, Throttling
from wharf_shared.auth.modes import build_modes
from wharf_shared.auth.oidc import OidcClient
from wharf_shared.config import Settings
from wharf_shared.events import EventPublisher, EventRelay
from wharf_shared.health import add_health_and_metrics, dependency_checks
from wharf_shared.metrics import Metrics, metrics_middleware
from wharf_shared.request_ids import request_id_middleware
from wharf_shared.runtime_watch import runtime_context
from wharf_shared.secrets import SecretBox
from wharf_shared.stores import open_stores
from wharf_ui import keys
from wharf_ui.changes import RELAY, relay_middleware
from wharf_ui.middleware import errors_middleware
from wharf_ui.portal.errors import portal_errors_middleware
from wharf_ui.portal.routes import add_portal_routes
from wharf_ui.readonly import read_only_middleware
from wharf_ui.routes import add_routes
from wharf_ui.security import SESSION, Authenticator, BasicAuth, SessionCookie, set_csrf
from wharf_ui.sessions import CSRF_HEADER, Sessions
from wharf_ui.sso import SSO, SsoClients


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """`clock`: what login lockouts and session expiry are measured against (tests move it)."""
    metrics = Metrics("ui")
    app = web.Application(
        middlewares=[
            request_id_middleware,
            metrics_middleware(metrics),
            relay_middleware,
            errors_middleware,
            portal_errors_middleware,
            read_only_middleware,
        ]
    )
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    app[keys.SECURE_COOKIES] = settings.external_url.lower().startswith("https://")
    app[keys.TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app.cleanup_ctx.append(lambda app: _resources(app, clock))
    app.cleanup_ctx.append(runtime_context)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_sso_clients)
    app.on_response_prepare.append(_csrf_token)
    add_routes(app)
    add_portal_routes(app)
    add_health_and_metrics(
        app, metrics, lambda: dependency_checks(app[shared_keys.DB], app[shared_keys.REDIS])
    )
    return app


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
        # Logins share the token service's settings and Redis keys: one throttle for every surface.
        # The backend of each login follows `auth_mode` (read per login from the runtime settings).
        app[keys.BOX] = SecretBox(settings.secret_key_bytes())
        modes, closers = build_modes(
            db, lambda: app[shared_keys.RUNTIME].get(), secret_key=settings.secret_key_bytes()
        )
        for close in closers:
            stack.push_async_callback(close)
        ldap = modes.backend(LDAP_AUTH)
        assert isinstance(ldap, LdapAuthBackend)
        app[keys.LDAP] = ldap  # the /ldap endpoints use its directory and settings
        token = settings.token
        logins = Logins(
            db,
            redis,
            modes,
            secret=settings.secret_key_path.read_bytes().strip(),
            cache_seconds=token.credential_cache_seconds,
            throttling=Throttling(
                pair_failures=token.throttle_failures,
                address_failures=token.throttle_address_failures,
                lockout_seconds=token.throttle_lockout_seconds,
            ),
            clock=clock,
        )
        app[keys.LOGINS] = logins
        trusted = app[keys.TRUSTED_PROXIES]
        sessions = Sessions(db, redis, lifetime=settings.ui.session_seconds, clock=clock)
        app[keys.SESSIONS] = sessions
        app[keys.AUTHENTICATOR] = Authenticator(
            [
                BasicAuth(logins, trusted),
                SessionCookie(sessions, secure=app[keys.SECURE_COOKIES]),
            ]
        )
        # Portal logins go to the event stream (for the audit log), as the token service's do.
        events = EventPublisher(
            redis, settings.events_stream, settings.events_max_len, app[shared_keys.METRICS]
        )
        app[shared_keys.EVENTS] = events
        await events.start()
        stack.push_async_callback(events.close)
        # Changes through the API write their events to the outbox; this instance relays them.
        relay = EventRelay(
            db,
            redis,
            settings.events_stream,
            settings.events_max_len,
            app[shared_keys.METRICS],
            interval=settings.events_relay_interval_seconds,
            backoff_max=settings.events_relay_backoff_max_seconds,
        )
        app[RELAY] = relay
        await relay.start()
        stack.push_async_callback(relay.close)
        yield


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    """One client session for what pages fetch from other services (the dashboard's proxies)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        app[keys.HTTP] = session
        yield


async def _sso_clients(app: web.Application) -> AsyncIterator[None]:
    """The single sign-on clients (their discovery and key caches live as long as the process)."""
    app[SSO] = SsoClients(OidcClient(app[keys.HTTP]), CasClient(app[keys.HTTP]))
    yield


async def _csrf_token(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer to a session-authenticated request carries the session's CSRF token."""
    session = request.get(SESSION)
    if session is not None and CSRF_HEADER not in response.headers:
        set_csrf(response, session, secure=request.app[keys.SECURE_COOKIES])
