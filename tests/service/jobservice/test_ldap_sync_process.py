"""The LDAP group sync in a real `wharf-jobservice worker` against a real slapd: asked for
through Redis (as `POST /api/v2.0/ldap/groups/sync` does), run by the leader, its report read
back; a member removed in the directory loses the group, a known user added gains it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.jobservice.test_worker_process import finished_report, metrics, running_worker
from tests.support.slapd import USERS, Slapd, group_dn, running_slapd
from wharf_shared import group_sync, runtime
from wharf_shared.db import accounts, groups
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.secrets import SecretBox

pytestmark = pytest.mark.slow
SECRET = "worker-test-secret"  # worker_env's WHARF_SECRET_KEY
DEVELOPERS = group_dn("developers")


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    with running_slapd(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_the_worker_syncs_groups_when_asked(
    db: Database, database_url: str, redis_url: str, tmp_path: Path, slapd: Slapd
) -> None:
    conf: dict[str, Any] = slapd.configuration("ldaps")
    conf["ldap_search_password"] = SecretBox(SECRET.encode()).encrypt(conf["ldap_search_password"])
    async with db.transaction() as conn:
        await runtime.store(conn, auth_mode="ldap_auth", ldap_group_sync_schedule="", **conf)
        ids = {}
        for uid in ("alice", "bob", "carol"):
            user = await accounts.create_user(
                conn, uid, None, email=USERS[uid].mail, auth_backend="ldap_auth"
            )
            ids[uid] = user.id
        (developers,) = await groups.replace_memberships(conn, ids["bob"], GroupType.LDAP, [DEVELOPERS])
    slapd.remove_member("developers", USERS["bob"].dn)
    slapd.add_member("developers", USERS["carol"].dn)

    async with running_worker(database_url, redis_url, tmp_path) as (worker, redis):
        request_id = await group_sync.request(redis)
        report = await finished_report(request_id, lambda: group_sync.last_report(redis))
        assert (report["trigger"], report["groups"], report["failed"], report["error"]) == (
            "manual",
            1,
            [],
            "",
        )
        async with db.read() as conn:
            members = await groups.members_of(conn, developers)
        assert members == sorted([ids["alice"], ids["carol"]])
        assert 'wharf_jobservice_ldap_group_syncs_total{outcome="ok"} 1.0' in metrics(worker)
