"""The registry app in-process (aiohttp test client) on a real database and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.support.oci import V2
from wharf_registry.app import create_app
from wharf_shared.config import Settings
from wharf_shared.setup import ensure_files
from wharf_shared.tokens import TokenIssuer, load_private_key


def registry_settings(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    storage: dict[str, object] | None = None,
    **registry: object,
) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        redis_url=redis_url,
        external_url="http://registry.test",
        registry={"auth": "none", **registry},  # type: ignore[arg-type]
        storage=storage or {},  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return registry_settings(tmp_path, database_url, redis_url)


@pytest.fixture
async def client(aiohttp_client: object, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(settings))  # type: ignore[operator,no-any-return]


@pytest.fixture
async def v2(client: TestClient) -> V2:  # type: ignore[type-arg]
    return V2(client)


@pytest.fixture
def token_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    settings = registry_settings(tmp_path, database_url, redis_url, auth="token")
    ensure_files(settings)
    return settings


@pytest.fixture
def issuer(token_settings: Settings) -> TokenIssuer:
    return TokenIssuer(
        load_private_key(token_settings.token_private_key_path),
        service=token_settings.token.service,
        issuer=token_settings.token.issuer,
    )


@pytest.fixture
async def token_client(aiohttp_client: object, token_settings: Settings) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(token_settings))  # type: ignore[operator]
