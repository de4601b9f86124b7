"""Replication peers, one of each per test module (their repositories are named per test):
Debian's distribution, and two Wharf sites of their own (SQLite, a leased Redis DB each); and the
test's database (each backend in turn) opened as the job service opens it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support.distribution import distribution
from tests.support.replication import Site, wharf_site
from wharf_shared.db.engine import Database


@pytest.fixture(scope="module")
def distribution_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with distribution(tmp_path_factory.mktemp("distribution")) as process:
        yield process.url


@pytest.fixture(scope="module")
def site_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with wharf_site(tmp_path_factory.mktemp("site-a")) as site:
        yield site


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with wharf_site(tmp_path_factory.mktemp("site-b")) as site:
        yield site


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    try:
        yield database
    finally:
        await database.close()
