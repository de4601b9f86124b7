"""`wharf drain on`: the registry and the token service answer readiness 503 with
`"drain": "draining"` beside their other checks, and still serve every request they get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.service.token.conftest import Suite, start_suite
from wharf_shared import drain


@pytest.fixture(params=["sqlite"])  # the switch is a file: one backend is enough
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


READY = {
    "registry": {"database": "ok", "redis": "ok", "storage": "ok"},
    "token": {"database": "ok", "redis": "ok"},
}


async def readiness(suite: Suite) -> dict[str, tuple[int, dict[str, object]]]:
    found = {}
    for name, client in (("registry", suite.registry), ("token", suite.token)):
        resp = await client.get("/health/ready")
        found[name] = (resp.status, await resp.json())
    return found


async def test_readiness_while_draining(suite: Suite) -> None:
    drain_file = suite.settings.drain_path
    assert drain_file == (suite.settings.data_dir / "drain").resolve()  # the default
    assert await readiness(suite) == {
        name: (200, {"status": "ok", "checks": checks}) for name, checks in READY.items()
    }

    assert drain.start(drain_file)
    assert await readiness(suite) == {
        name: (503, {"status": "unavailable", "checks": {**checks, "drain": "draining"}})
        for name, checks in READY.items()
    }
    # Still serving: an anonymous pull token for the public project, and the registry takes it.
    token = await suite.token_for("repository:library/app:pull")
    resp = await suite.registry.get("/v2/", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200

    assert drain.stop(drain_file)
    assert await readiness(suite) == {
        name: (200, {"status": "ok", "checks": checks}) for name, checks in READY.items()
    }


async def test_the_drain_file_setting(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    elsewhere = tmp_path / "run" / "wharf-drain"
    elsewhere.parent.mkdir()
    suite = await start_suite(aiohttp_client, tmp_path, database_url, redis_url, drain_file=elsewhere)
    assert suite.settings.drain_path == elsewhere.resolve()
    (suite.settings.data_dir / "drain").touch()  # not the file this host watches
    assert {name: status for name, (status, _) in (await readiness(suite)).items()} == {
        "registry": 200,
        "token": 200,
    }
    drain.start(elsewhere)
    assert {name: body["checks"]["drain"] for name, (_, body) in (await readiness(suite)).items()} == {  # type: ignore[index]
        "registry": "draining",
        "token": "draining",
    }
