"""The registry's typed app and request keys."""

from __future__ import annotations

from aiohttp import web

from wharf_registry.auth import Authorizer
from wharf_registry.blobs import Blobs
from wharf_registry.cache import ManifestCache
from wharf_registry.manifests import Manifests
from wharf_registry.uploads import Uploads
from wharf_shared.addresses import Network
from wharf_shared.storage.base import Instrumented
from wharf_shared.tokens import Grant

STORAGE = web.AppKey("storage", Instrumented)
UPLOADS = web.AppKey("uploads", Uploads)
MANIFEST_CACHE = web.AppKey("manifest_cache", ManifestCache)
MANIFESTS = web.AppKey("manifests", Manifests)
BLOBS = web.AppKey("blobs", Blobs)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
TRUSTED_PROXIES = web.AppKey[list[Network]]("trusted_proxies")  # may offer to send blobs themselves

GRANT = web.RequestKey("grant", Grant)
