"""A batch of events into the audit log and pull counts: one transaction per batch.

Idempotent by event id (`wharf_shared.db.audit.record`). With an audit file, its lines are
written and flushed before the transaction, for the events not yet recorded: a crash between
the two writes them again on redelivery (at least once; each line carries its event id), never
not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_jobservice.audit import Mapper
from wharf_jobservice.audit_file import AuditFile
from wharf_shared.db import audit
from wharf_shared.db.audit import AuditRecord
from wharf_shared.db.engine import Database


class AuditWriter:
    def __init__(
        self,
        db: Database,
        *,
        mapper: Mapper | None = None,
        audit_file: AuditFile | None = None,
        on_recorded: Callable[[Sequence[AuditRecord]], None] | None = None,
    ) -> None:
        self._db = db
        self._mapper = mapper or Mapper()
        self._file = audit_file
        self._on_recorded = on_recorded

    async def apply(self, events: list[dict[str, Any]]) -> None:
        records: list[AuditRecord] = []
        ids: set[str] = set()
        for event in events:
            record = self._mapper.map(event)
            if record is not None and record.event_id not in ids:  # an entry appended twice
                ids.add(record.event_id)
                records.append(record)
        if not records:
            return
        if self._file is not None:
            async with self._db.read() as conn:
                done = await audit.recorded(conn, [r.event_id for r in records])
            self._file.write([r for r in records if r.event_id not in done])

        async def write(conn: AsyncConnection) -> list[AuditRecord]:
            return await audit.record(conn, records)

        # A unique-key conflict is another consumer recording the same event at the same time:
        # the retry finds it recorded and skips it.
        written = await self._db.run(write, retry_on=(IntegrityError,))
        if self._on_recorded is not None:
            self._on_recorded(written)
