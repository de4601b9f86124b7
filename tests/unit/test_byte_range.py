"""`Range` headers for blobs streamed from drivers without local files."""

from __future__ import annotations

import pytest

from wharf_registry.handlers.blobs import byte_range
from wharf_shared.errors.oci import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=900-5000", (900, 999)),
        ("BYTES = 5-6", (5, 6)),
    ],
)
def test_satisfiable(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=5-4", "bytes=-0", "items=0-1", "bytes=0-1,5-6", "bytes=a-b", "bytes=0"]
)
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        byte_range(header, 1000)
    assert caught.value.headers["Content-Range"] == "bytes */1000"
