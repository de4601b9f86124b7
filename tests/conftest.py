"""Fixtures every test tree shares: isolated settings, real databases and Redis, the registry app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import backends

# Tests decide their own settings: a WHARF_* variable in the developer's shell must not leak in.
for _name in [n for n in os.environ if n.startswith("WHARF_") and not n.startswith("WHARF_TEST_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


_session_databases: dict[str, str] = {}


@pytest.fixture(scope="session")
def _database_registry(session_tmp: Path) -> Iterator[dict[str, str]]:
    yield _session_databases
    for kind, url in _session_databases.items():
        backends.drop_database(kind, url)


def session_database(kind: str, registry: dict[str, str], tmp: Path) -> str:
    """One migrated database per backend per test process, emptied between tests."""
    if kind not in registry:
        url = backends.create_database(kind, str(tmp))
        backends.migrate(url)
        registry[kind] = url
    return registry[kind]


@pytest.fixture(params=backends.BACKENDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Both below reset their backend when a test starts, not when it ends: a fixture set up before
# them (aiohttp_client, say) is torn down after them, and the app it closes may still be writing
# (the event relay holds outbox rows locked for a moment); emptying tables under it would wait
# on its locks while its event loop waits on us.


@pytest.fixture
def database_url(db_kind: str, _database_registry: dict[str, str], session_tmp: Path) -> str:
    url = session_database(db_kind, _database_registry, session_tmp)
    backends.empty_tables(url)
    return url


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[str]:
    with backends.leased_redis_db() as url:
        yield url


@pytest.fixture
def redis_url(_session_redis: str) -> str:
    backends.flush_redis(_session_redis)
    return _session_redis


@pytest.fixture(scope="session")
def moto_endpoint(session_tmp: Path) -> Iterator[str]:
    """One moto S3 server per test process."""
    from tests.support.s3 import moto_server

    with moto_server(session_tmp / "moto") as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> Iterator[str]:
    """A fresh, empty bucket on the test process's moto server, emptied afterwards."""
    from tests.support.s3 import create_bucket, empty_bucket

    bucket = create_bucket(moto_endpoint)
    yield bucket
    empty_bucket(moto_endpoint, bucket)
