"""Drivers chosen by name (`WHARF_STORAGE__DRIVER`) from one explicit table."""

from __future__ import annotations

from collections.abc import Callable

from wharf_shared.config import Settings
from wharf_shared.metrics import Metrics
from wharf_shared.storage.base import Instrumented, StorageDriver
from wharf_shared.storage.filesystem import FilesystemDriver

DRIVERS: dict[str, Callable[[Settings], StorageDriver]] = {
    "filesystem": lambda settings: FilesystemDriver(settings.storage_root),
}


def open_storage(settings: Settings, metrics: Metrics) -> Instrumented:
    try:
        make = DRIVERS[settings.storage.driver]
    except KeyError:
        raise ValueError(f"unknown storage driver {settings.storage.driver!r}") from None
    return Instrumented(make(settings), metrics)
