"""The OIDC group sync: each OIDC user's groups (type 3) and admin flag made what the provider says
now, with the refresh token kept from their last sign-in (`wharf_shared.auth.refresh_tokens`), so
that someone removed from a group at the provider loses its projects at the next run even when
they only use their CLI secret and never sign in to the portal again (Harbor sets them at sign-in
only).

A run first asks the provider for every stored token (`OidcClient.refresh`), then applies the
answers, one transaction per user:

- an answer: the user's OIDC group memberships replaced by the groups it names (kept by
  `oidc_group_filter`), their admin flag set by `oidc_admin_group` when one is set, as a sign-in
  does; the rotated refresh token stored when the provider sent one;
- a refused grant (`invalid_grant`: the person removed, their session or consent revoked; or a
  token that speaks for another identity): the directory no longer vouches for them, so their
  OIDC group memberships and the stored token are dropped (and the admin flag, when
  `oidc_admin_group` gives it). Their direct project memberships and CLI secret stay;
- another failure for that user alone (an ID token that does not verify, a token this secret key
  cannot decrypt): they are left as they are and named in `failed`.

When the provider cannot be reached, times out or answers 5xx, the run stops and changes no one's
groups (an outage must not strip anyone): `error` says so and `failed` names everyone. Tokens
rotated by the answers already received are stored all the same (the old ones are spent).

Each group membership added or removed writes one `user_group.sync` event (the audit log: the
group, the user added or removed), each admin flag changed a `user.update`, by `wharf$jobservice`,
in the user's transaction. The job service's leader runs it on `oidc_group_sync_schedule` while
`auth_mode` is `oidc_auth`, and when asked (`request`); the last run's report is kept in Redis.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import group_sync
from wharf_shared.auth.oidc import (
    OidcClient,
    OidcError,
    OidcGrantRefused,
    OidcSettings,
    OidcUnavailable,
    OidcUser,
)
from wharf_shared.auth.refresh_tokens import (
    StoredToken,
    drop_refresh_token,
    store_refresh_token,
    stored_refresh_tokens,
)
from wharf_shared.db import accounts, groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.db.types import utcnow
from wharf_shared.events import new_event, write_events
from wharf_shared.logging import get_logger
from wharf_shared.rbac import JOBSERVICE
from wharf_shared.secrets import SecretBox, SecretError

log = get_logger(__name__)

PREFIX = "wharf:oidc_group_sync"  # of its Redis keys, as the LDAP sync's
REQUEST_KEY = f"{PREFIX}:requested"
REPORT_KEY = f"{PREFIX}:report"


@dataclass
class OidcSyncReport:
    """One run: when and why, the users the provider answered for (`checked`), those whose
    groups or admin flag changed, those it refused (`dropped`), and those left unchanged
    (`failed`, usernames)."""

    trigger: str  # "schedule" or "manual"
    started_at: str
    request_id: str = ""
    finished_at: str = ""  # "" while it runs
    checked: int = 0
    changed: int = 0
    dropped: int = 0
    failed: list[str] = field(default_factory=list)
    error: str = ""  # why the run changed nothing (the provider down, settings, the database)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def request(redis: Redis) -> str:
    """Ask the job service's leader for a run now; the request id its report will carry."""
    return await group_sync.request(redis, REQUEST_KEY)


async def last_report(redis: Redis) -> dict[str, Any] | None:
    return await group_sync.last_report(redis, REPORT_KEY)


@dataclass(frozen=True)
class _Answer:
    stored: StoredToken
    user: OidcUser | None  # None: the provider refused the grant


async def _oidc_groups(conn: AsyncConnection, user_id: int) -> dict[int, str]:
    return {
        g.id: g.group_name for g in await groups.groups_of(conn, user_id) if g.group_type == GroupType.OIDC
    }


async def apply_answer(db: Database, box: SecretBox, settings: OidcSettings, answer: _Answer) -> bool:
    """One user made as the provider's answer says (see the module's docstring); True when their
    groups or admin flag changed."""
    stored, user = answer.stored, answer.user

    async def go(conn: AsyncConnection) -> bool:
        found = await accounts.get_user(conn, stored.user_id)
        if found is None:
            return False  # deleted meanwhile
        before = await _oidc_groups(conn, stored.user_id)
        if user is None:
            await drop_refresh_token(conn, stored.user_id)
        elif user.refresh_token:
            await store_refresh_token(conn, box, stored.user_id, user.refresh_token)
        await groups.replace_memberships(conn, stored.user_id, GroupType.OIDC, user.groups if user else ())
        after = await _oidc_groups(conn, stored.user_id)
        events = [
            group_sync.sync_event(
                name,
                group_id,
                GroupType.OIDC,
                added=[stored.username] if group_id in after else [],
                removed=[stored.username] if group_id in before else [],
            )
            for group_id, name in sorted({**before, **after}.items())
            if (group_id in before) != (group_id in after)
        ]
        admin = (user is not None and user.admin) if settings.oidc_admin_group else found.sysadmin
        if admin != found.sysadmin:
            u = t.user_account.c
            changed = update(t.user_account).where(u.id == stored.user_id)
            await conn.execute(changed.values(sysadmin=admin, updated_at=utcnow()))
            events.append(
                new_event(
                    "user.update",
                    operator=JOBSERVICE.username,
                    username=stored.username,
                    user_id=stored.user_id,
                    changed="sysadmin" if admin else "sysadmin removed",
                )
            )
        if events:
            await write_events(conn, events)
        return bool(events)

    changed: bool = await db.run(go)
    return changed


async def _store_rotated(db: Database, box: SecretBox, answers: list[_Answer]) -> None:
    async def go(conn: AsyncConnection) -> None:
        for answer in answers:
            if answer.user is not None and answer.user.refresh_token:
                await store_refresh_token(conn, box, answer.stored.user_id, answer.user.refresh_token)

    await db.run(go)


async def sync_oidc_groups(
    db: Database,
    client: OidcClient,
    settings: OidcSettings,
    box: SecretBox,
    *,
    now: Callable[[], dt.datetime],
    trigger: str,
    request_id: str = "",
) -> OidcSyncReport:
    """Every OIDC user with a stored refresh token synced from the provider (see the module's
    docstring)."""
    report = OidcSyncReport(trigger=trigger, started_at=now().isoformat(), request_id=request_id)
    async with db.read() as conn:
        stored = await stored_refresh_tokens(conn)
    answers: list[_Answer] = []
    for entry in stored:
        try:
            token = box.decrypt(entry.ciphertext)
        except SecretError:
            log.warning("oidc_group_sync_token_undecryptable", username=entry.username)
            report.failed.append(entry.username)
            continue
        try:
            answers.append(_Answer(entry, await client.refresh(settings, token, subject=entry.subject)))
        except OidcGrantRefused as exc:
            log.info("oidc_group_sync_refused", username=entry.username, reason=str(exc)[:300])
            answers.append(_Answer(entry, None))
        except OidcUnavailable as exc:
            # Nobody changes; the tokens already rotated are the ones that work from now on.
            log.warning("oidc_group_sync_provider_unavailable", error=str(exc)[:500])
            await _store_rotated(db, box, answers)
            report.error = f"the provider is unavailable: {exc}"
            report.failed = [e.username for e in stored]
            report.finished_at = now().isoformat()
            return report
        except OidcError as exc:
            log.warning("oidc_group_sync_failed", username=entry.username, error=str(exc)[:500])
            report.failed.append(entry.username)
    report.checked = len(answers)
    for answer in answers:
        if await apply_answer(db, box, settings, answer):
            report.changed += 1
            log.info("oidc_group_synced", username=answer.stored.username, dropped=answer.user is None)
        if answer.user is None:
            report.dropped += 1
    report.finished_at = now().isoformat()
    return report
