"""Where replication reads and writes: this Wharf (a policy's NULL registry), reached over the
registry protocol at `settings.local_registry_url` with the job service's own account, or a
registered registry with its stored (decrypted) credential."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.config import Settings
from wharf_shared.db import replication
from wharf_shared.secrets import JOBSERVICE_USERNAME, SecretBox, jobservice_password


class SiteError(Exception):
    """A registry a policy names is gone, or its credential cannot be read."""


@dataclass(frozen=True, slots=True)
class Site:
    registry_id: int | None  # None: this Wharf
    url: str
    kind: str  # harbor, docker-registry
    username: str | None = None
    password: str | None = None
    insecure: bool = False

    def __repr__(self) -> str:  # never the password in a log line
        return f"Site({self.registry_id}, {self.url!r}, {self.kind!r}, user={self.username!r})"


def local_site(settings: Settings) -> Site:
    key = settings.secret_key_bytes()
    return Site(
        None, settings.local_registry_url, replication.HARBOR, JOBSERVICE_USERNAME, jobservice_password(key)
    )


def registry_site(registry: replication.Registry, key: bytes) -> Site:
    password = SecretBox(key).decrypt(registry.access_secret) if registry.access_secret else None
    return Site(
        registry.id, registry.url.rstrip("/"), registry.type, registry.access_key, password, registry.insecure
    )


async def resolve_site(conn: AsyncConnection, registry_id: int | None, settings: Settings) -> Site:
    if registry_id is None:
        return local_site(settings)
    registry = await replication.get_registry(conn, registry_id)
    if registry is None:
        raise SiteError(f"registry {registry_id} no longer exists")
    try:
        return registry_site(registry, settings.secret_key_bytes())
    except Exception as exc:
        raise SiteError(f"registry {registry.name}: {exc}") from exc
