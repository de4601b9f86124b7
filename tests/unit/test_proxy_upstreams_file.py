"""The upstreams file (wharf_proxy.upstreams_file): what it may list, and how a change is seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wharf_proxy.upstreams_file import UpstreamsFileError, parse, read, signature


def test_lists_each_pool_as_the_environment_lists_do() -> None:
    lists = parse(
        'registry = ["http://10.0.0.11:5000/", "https://10.0.0.12:5000", "http://10.0.0.11:5000"]\n'
        'token = " http://10.0.0.21:8082 ,http://10.0.0.22:8082,"\n',
        capacity=256,
    )
    assert lists == {
        # The trailing slash dropped, the one listed twice counted once.
        "registry": ["http://10.0.0.11:5000", "https://10.0.0.12:5000"],
        # A comma-separated string, as in WHARF_PROXY__UPSTREAMS__TOKEN.
        "token": ["http://10.0.0.21:8082", "http://10.0.0.22:8082"],
        "ui": [],  # left out: no instance (not the environment's default)
    }
    assert parse("", capacity=1) == {"registry": [], "token": [], "ui": []}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('registry = ["http://a:5000"', "not TOML"),
        (
            'registry = ["10.0.0.11:5000"]',
            "registry: Value error, '10.0.0.11:5000' is not an http:// or https://",
        ),
        ('registry = ["ftp://a"]', "registry"),
        ('registy = ["http://a:5000"]', "registy: Extra inputs are not permitted"),
        ("registry = 5000", "registry"),
        ('[registry]\nurl = "http://a:5000"', "registry"),
    ],
)
def test_a_file_that_will_not_do_says_why(text: str, reason: str) -> None:
    with pytest.raises(UpstreamsFileError) as info:
        parse(text, capacity=256)
    assert reason in str(info.value)


def test_no_more_upstreams_than_the_board_has_slots() -> None:
    text = 'registry = ["http://a:5000", "http://b:5000"]\ntoken = ["http://a:8082"]\n'
    assert parse(text, capacity=3)["token"] == ["http://a:8082"]
    with pytest.raises(
        UpstreamsFileError, match=r"3 upstreams listed; .* at most 2 \(WHARF_PROXY__UPSTREAM_SLOTS\)"
    ):
        parse(text, capacity=2)


def test_reading_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UpstreamsFileError, match="cannot read"):
        read(tmp_path / "upstreams.toml", 256)
    assert signature(tmp_path / "upstreams.toml") is None


def test_a_file_replaced_by_a_rename_has_a_new_signature(tmp_path: Path) -> None:
    """What Ansible does (write a temporary file, rename it over the old one) is always seen,
    even when the new text is as long as the old and written within the same mtime tick."""
    path = tmp_path / "upstreams.toml"
    path.write_text('registry = ["http://a:5000"]\n')
    first = read(path, 256)
    assert first.signature == signature(path)
    staged = tmp_path / ".upstreams.toml.tmp"
    staged.write_text('registry = ["http://b:5000"]\n')  # same size
    os.utime(staged, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))  # same mtime
    os.rename(staged, path)
    second = read(path, 256)
    assert second.signature != first.signature
    assert second.lists["registry"] == ["http://b:5000"]
