"""One run of the CMDB sync: fetch, map, then each entry planned (a dry run) or planned and applied
in a transaction of its own, so one project's failure (a race with another run, a constraint)
is reported and the others still sync. The caller (the ui's endpoint, the job service's schedule)
gets the whole report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.cmdb.plan import Change, Outcome, sync_entry
from wharf_shared.cmdb.source import Entry, Skipped, entries, fetch
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger
from wharf_shared.runtime import CmdbSettings
from wharf_shared.secrets import SecretBox

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    index: int
    project: str
    error: str


@dataclass
class Report:
    dry_run: bool
    entries: int = 0
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "entries": self.entries,
            "changes": [change.as_json() for change in self.changes],
            "skipped": [skip.as_json() for skip in self.skipped],
            "failed": [{"index": f.index, "project": f.project, "error": f.error} for f in self.failed],
        }


async def run(
    db: Database, session: aiohttp.ClientSession, config: CmdbSettings, box: SecretBox, *, dry_run: bool
) -> Report:
    """The report of one run; `CmdbUnavailable` (nothing changed) when the CMDB gave nothing usable."""
    started = time.monotonic()
    document = await fetch(session, config, box)
    found, skipped = entries(document, config)
    report = Report(dry_run, entries=len(found) + len(skipped), skipped=skipped)
    for entry in found:
        try:
            outcome = await _one(db, entry, config, dry_run)
        except Exception as exc:  # this project is reported; the others still sync
            error = str(exc)[:300] or type(exc).__name__
            log.warning("cmdb_sync_entry_failed", project=entry.project, error=error)
            report.failed.append(Failure(entry.index, entry.project, error))
            continue
        report.changes.extend(outcome.changes)
        report.skipped.extend(outcome.skipped)
    log.info(
        "cmdb_sync_done",
        dry_run=dry_run,
        entries=report.entries,
        changes=len(report.changes),
        skipped=len(report.skipped),
        failed=len(report.failed),
        seconds=round(time.monotonic() - started, 3),
    )
    return report


async def _one(db: Database, entry: Entry, config: CmdbSettings, dry_run: bool) -> Outcome:
    if dry_run:
        async with db.read() as conn:
            return await sync_entry(conn, entry, config, apply=False)

    async def go(conn: AsyncConnection) -> Outcome:
        return await sync_entry(conn, entry, config, apply=True)

    return await db.run(go)
