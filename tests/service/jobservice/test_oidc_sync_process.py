"""The OIDC group sync in a real `wharf-jobservice worker` against a real OIDC provider (Authlib):
a user signed in at the provider (her refresh token stored as the portal stores it), asked for
through Redis, run by the leader with the worker's HTTP client; a group the provider removed is
gone from her, the rotated token kept, the run counted in the worker's metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update

from tests.service.jobservice.test_worker_process import finished_report, metrics, running_worker
from tests.support.oidc_provider import REDIRECT_URI, OidcProvider, OidcUserSeed, running_oidc_provider
from tests.support.sign_in import browser, sign_in
from wharf_shared import oidc_group_sync, runtime
from wharf_shared.auth.oidc import OidcClient, OidcUser, oidc_settings, subject_key
from wharf_shared.auth.refresh_tokens import store_refresh_token, stored_refresh_tokens
from wharf_shared.db import accounts, groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.secrets import SecretBox

pytestmark = pytest.mark.slow
SECRET = "worker-test-secret"  # worker_env's WHARF_SECRET_KEY
USERS = {"olivia": OidcUserSeed("Olivia-pass-1", "Olivia Oidc", "olivia@example.test", ("devs", "ops"))}


@pytest.fixture
def oidc(tmp_path: Path) -> Iterator[OidcProvider]:
    with running_oidc_provider(tmp_path / "oidc", USERS) as provider:
        yield provider


async def signed_in(oidc: OidcProvider) -> OidcUser:
    """olivia through the provider's login form, as the portal's callback sees her."""
    settings = oidc_settings(oidc.configuration())
    async with aiohttp.ClientSession() as http:
        client = OidcClient(http)
        request = await client.authorization_request(settings, REDIRECT_URI)
        async with browser() as session:
            back = await sign_in(session, request.url, "olivia", USERS["olivia"].password)
        return await client.complete_login(
            settings, request, code=back.query["code"], state=back.query["state"]
        )


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_the_worker_syncs_oidc_groups_when_asked(
    db: Database, database_url: str, redis_url: str, tmp_path: Path, oidc: OidcProvider
) -> None:
    user = await signed_in(oidc)
    assert user.refresh_token
    box = SecretBox(SECRET.encode())
    conf: dict[str, Any] = oidc.configuration()
    conf["oidc_client_secret"] = box.encrypt(conf["oidc_client_secret"])
    async with db.transaction() as conn:
        await runtime.store(conn, auth_mode="oidc_auth", oidc_group_sync_schedule="", **conf)
        olivia = await accounts.create_user(conn, "olivia", None, email=user.email, auth_backend="oidc_auth")
        bind = update(t.user_account).where(t.user_account.c.id == olivia.id)
        await conn.execute(bind.values(sso_subject=subject_key(user.issuer, user.subject)))
        await groups.replace_memberships(conn, olivia.id, GroupType.OIDC, user.groups)
        await store_refresh_token(conn, box, olivia.id, user.refresh_token)
    oidc.set_groups("olivia", ["ops"])

    async with running_worker(database_url, redis_url, tmp_path) as (worker, redis):
        request_id = await oidc_group_sync.request(redis)
        report = await finished_report(request_id, lambda: oidc_group_sync.last_report(redis))
        assert (
            report["trigger"],
            report["checked"],
            report["changed"],
            report["failed"],
            report["error"],
        ) == (
            "manual",
            1,
            1,
            [],
            "",
        )
        async with db.read() as conn:
            names = [g.group_name for g in await groups.groups_of(conn, olivia.id)]
            (stored,) = await stored_refresh_tokens(conn)
        assert names == ["ops"]
        assert box.decrypt(stored.ciphertext) != user.refresh_token  # rotated, the new one kept
        assert 'wharf_jobservice_oidc_group_syncs_total{outcome="ok"} 1.0' in metrics(worker)
