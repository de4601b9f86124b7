"""The audit log as a JSON-lines file, for a log shipper: one line per record, appended and
flushed per batch. Rotation: `copytruncate` needs nothing (writes append at the new end);
`create` (the file moved away, a new one expected) is noticed before each batch (the path no
longer names the open file) or forced with SIGHUP (`reopen`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from wharf_shared.db.audit import AuditRecord


def line(record: AuditRecord) -> str:
    return json.dumps(
        {
            "event_id": record.event_id,
            "op_time": record.op_time.isoformat(),
            "username": record.username,
            "operation": record.operation,
            "operation_description": record.description,
            "resource_type": record.resource_type,
            "resource": record.resource,
            "project": record.project,
            "project_id": record.project_id,
        },
        separators=(",", ":"),
    )


class AuditFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._reopen = False

    def reopen(self) -> None:
        """Reopen before the next write (SIGHUP)."""
        self._reopen = True

    def _rotated(self) -> bool:
        assert self._file is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def _open(self) -> IO[str]:
        if self._file is not None and (self._reopen or self._rotated()):
            self._file.close()
            self._file = None
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            self._reopen = False
        return self._file

    def write(self, records: Sequence[AuditRecord]) -> None:
        """Append and flush (to the kernel: a crash of this process loses nothing written)."""
        if not records:
            return
        out = self._open()
        out.write("".join(line(r) + "\n" for r in records))
        out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
