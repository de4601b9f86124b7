"""The pools from a file (`WHARF_PROXY__UPSTREAMS_FILE`), re-read live when it changes.

The file is TOML with one list of base URLs per pool, validated as the
`WHARF_PROXY__UPSTREAMS__*` lists are (`http://` or `https://`, trailing slash dropped; a
comma-separated string is taken too); a pool left out has no instance, and any other key is an
error:

    registry = ["http://10.0.0.11:5000", "http://10.0.0.12:5000"]
    token = ["http://10.0.0.21:8082"]
    ui = []

A change is noticed by its stat signature (device, inode, size, mtime): cheap enough to look
every health interval, and a file replaced by a rename (what Ansible's `template` and `copy` do)
always has a new inode. reloader.py looks; pools.py's `reload` swaps the pools.

Nothing here loads prometheus_client: `__main__` reads the file before choosing the metrics mode.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from wharf_proxy.board import POOL_NAMES
from wharf_shared.config import Settings, UrlList

Lists = dict[str, list[str]]  # pool name → base URLs, every pool of POOL_NAMES present
Signature = tuple[int, int, int, int]


class UpstreamsFileError(Exception):
    """The file cannot be read, is not TOML, or lists what cannot be pools; the message says why."""


class _Pools(BaseModel):
    model_config = {"extra": "forbid"}

    registry: UrlList = Field(default_factory=list)
    token: UrlList = Field(default_factory=list)
    ui: UrlList = Field(default_factory=list)


def parse(text: str, capacity: int) -> Lists:
    """The pools `text` lists (UpstreamsFileError naming the first problem); an upstream listed
    twice in one pool counts once. At most `capacity` upstreams in all (the board's slots)."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UpstreamsFileError(f"not TOML: {exc}") from exc
    try:
        pools = _Pools(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors()
        )
        raise UpstreamsFileError(problems) from exc
    lists = {name: list(dict.fromkeys(getattr(pools, name))) for name in POOL_NAMES}
    total = sum(len(urls) for urls in lists.values())
    if total > capacity:
        raise UpstreamsFileError(
            f"{total} upstreams listed; the proxy keeps at most {capacity} (WHARF_PROXY__UPSTREAM_SLOTS)"
        )
    return lists


def signature(path: Path) -> Signature | None:
    """What tells one version of the file from the next; None while there is no file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Snapshot:
    """One version of the file: its signature (taken before it was read, so that a change made
    while reading is noticed next time) and the pools it lists."""

    signature: Signature | None
    lists: Lists


def read(path: Path, capacity: int) -> Snapshot:
    seen = signature(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UpstreamsFileError(f"cannot read {path}: {exc}") from exc
    return Snapshot(seen, parse(text, capacity))


def initial_pools(settings: Settings) -> Snapshot:
    """The pools the proxy starts with: the upstreams file's (UpstreamsFileError when it will
    not do), else the `WHARF_PROXY__UPSTREAMS__*` lists."""
    proxy = settings.proxy
    if proxy.upstreams_file is not None:
        return read(proxy.upstreams_file, proxy.upstream_slots)
    return Snapshot(None, {name: list(getattr(proxy.upstreams, name)) for name in POOL_NAMES})
