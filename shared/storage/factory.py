"""Drivers chosen by name (`WHARF_STORAGE__DRIVER`) from one explicit table."""

from __future__ import annotations

from collections.abc import Callable

from wharf_shared.config import Settings
from wharf_shared.metrics import Metrics
from wharf_shared.storage.base import Instrumented, StorageDriver
from wharf_shared.storage.filesystem import FilesystemDriver


def _s3(settings: Settings) -> StorageDriver:
    from wharf_shared.storage.s3 import S3Driver  # boto3 takes a third of a second to import

    return S3Driver.from_settings(settings.storage.s3)


DRIVERS: dict[str, Callable[[Settings], StorageDriver]] = {
    "filesystem": lambda settings: FilesystemDriver(settings.storage_root),
    "s3": _s3,
}


async def check_storage(settings: Settings) -> None:
    """What the registry checks of its storage once, before it serves: that the S3 bucket
    exists (or, with `WHARF_STORAGE__S3__CREATE_BUCKET`, makes it). A StorageError says what
    is wrong."""
    if settings.storage.driver != "s3":
        return
    from wharf_shared.storage.s3 import S3Driver

    driver = S3Driver.from_settings(settings.storage.s3)
    try:
        await driver.ensure_bucket(create=settings.storage.s3.create_bucket)
    finally:
        driver.close()


def open_storage(settings: Settings, metrics: Metrics) -> Instrumented:
    try:
        make = DRIVERS[settings.storage.driver]
    except KeyError:
        raise ValueError(f"unknown storage driver {settings.storage.driver!r}") from None
    return Instrumented(make(settings), metrics)
