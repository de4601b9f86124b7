"""URL passwords are masked wherever Wharf shows a URL: settings, errors, every log line."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from wharf_shared.config import mask_url
from wharf_shared.db.engine import DatabaseURLError, normalize_url
from wharf_shared.logging import configure_logging, get_logger

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"postgresql://wharf:{SECRET}@db:5432/wharf", "postgresql://wharf:********@db:5432/wharf"),
        (f"redis://:{SECRET}@cache:6379/0", "redis://:********@cache:6379/0"),
        ("redis://:p@ss/w0rd@cache:6379/0", "redis://:********@cache:6379/0"),  # to the last @
        (
            f"error: 'mysql://root:{SECRET}@h/db' refused, see a@b",
            "error: 'mysql://root:********@h/db' refused, see a@b",
        ),
        (
            f"a https://u:{SECRET}@x/ b https://v:{SECRET}@y/",
            "a https://u:********@x/ b https://v:********@y/",
        ),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////var/lib/wharf/wharf.db", "sqlite:////var/lib/wharf/wharf.db"),
        ("library/hello@sha256:abc", "library/hello@sha256:abc"),
    ],
)
def test_mask_url(text: str, shown: str) -> None:
    assert mask_url(text) == shown


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@h:port/db", f"postgresql:/u:{SECRET}@h/db"])
def test_database_url_error_hides_the_password(url: str) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        normalize_url(url)
    assert SECRET not in str(caught.value)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_mask_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    # Here, not in a fixture: pytest puts its own sys.stderr back between setup and the test.
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)  # for the structlog writer and the stdlib handler
    configure_logging("debug", "test")
    url = f"postgresql://wharf:{SECRET}@db/wharf"
    get_logger("wharf_test").error("dependency_unavailable", error=f"cannot connect to {url}")
    try:
        raise ConnectionError(f"while connecting to {url!r}")
    except ConnectionError:
        get_logger("wharf_test").exception("unhandled_error")
        logging.getLogger("some.library").exception("connection to %s failed", url)
    lines = stderr.getvalue()
    assert len(lines.splitlines()) == 3, lines
    assert SECRET not in lines
    assert lines.count("wharf:********@db/wharf") >= 4, lines  # messages and tracebacks
