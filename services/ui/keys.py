"""The ui service's typed app keys (shared ones in `wharf_shared.keys`)."""

from __future__ import annotations

from aiohttp import ClientSession, web

from wharf_shared.addresses import Network
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.auth.logins import Logins
from wharf_shared.keys import RUNTIME
from wharf_shared.secrets import SecretBox
from wharf_ui.security import AUTHENTICATOR
from wharf_ui.sessions import Sessions

LOGINS = web.AppKey("logins", Logins)
SESSIONS = web.AppKey("sessions", Sessions)
SECURE_COOKIES = web.AppKey("secure_cookies", bool)  # the external URL is https
TRUSTED_PROXIES: web.AppKey[list[Network]] = web.AppKey("trusted_proxies")
LDAP = web.AppKey("ldap", LdapAuthBackend)  # the ldap_auth backend: its directory for /ldap/*
HTTP = web.AppKey("http", ClientSession)  # outgoing calls of pages (the proxies' health)
BOX = web.AppKey("box", SecretBox)  # the secret key's: CLI secrets

__all__ = ["AUTHENTICATOR", "LOGINS", "RUNTIME", "SECURE_COOKIES", "SESSIONS", "TRUSTED_PROXIES"]
