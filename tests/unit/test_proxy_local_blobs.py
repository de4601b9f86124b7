"""What the proxy accepts of an upstream's internal redirect (services/proxy/local_blobs.py), which
requests it offers to serve itself, and where it looks for the storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from wharf_proxy.local_blobs import LocalBlobs, Unavailable, open_blob
from wharf_shared.accel import REDIRECT_PREFIX, redirect_uri
from wharf_shared.config import Settings
from wharf_shared.digests import Digest
from wharf_shared.storage.paths import blob_path

DATA = b"layer bytes " * 1000
DIGEST = Digest("sha256", hashlib.sha256(DATA).hexdigest())
OTHER = Digest("sha256", hashlib.sha256(b"another blob").hexdigest())


def place(root: Path, digest: Digest, data: bytes) -> Path:
    path = root / blob_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    storage.mkdir()
    place(storage, DIGEST, DATA)
    place(storage, OTHER, b"another blob")
    return storage


def test_the_blob_data_path_of_the_asked_digest_is_accepted(root: Path) -> None:
    found = open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA))
    assert found == root / blob_path(DIGEST)
    assert found.read_bytes() == DATA


def test_a_storage_root_that_is_a_symlink_is_resolved_once(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "storage-link"
    link.symlink_to(root, target_is_directory=True)
    local = LocalBlobs(link)
    assert local.root == root
    assert open_blob(local.root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA)).read_bytes() == DATA


FORGED = [
    pytest.param("blobs/sha256/ab/x/data", id="no prefix"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param(REDIRECT_PREFIX + "/etc/passwd", id="absolute after the prefix"),
    pytest.param(REDIRECT_PREFIX + "../token.key", id="dot-dot"),
    pytest.param(
        REDIRECT_PREFIX + blob_path(DIGEST) + "/../../../../../token.key", id="dot-dot after a blob"
    ),
    pytest.param(REDIRECT_PREFIX + blob_path(DIGEST).replace("/data", "/./data"), id="dot segment"),
    pytest.param(REDIRECT_PREFIX + blob_path(OTHER), id="another blob"),
    pytest.param(REDIRECT_PREFIX + "uploads/abc/part", id="an upload"),
    pytest.param(REDIRECT_PREFIX + blob_path(DIGEST).upper(), id="case"),
    pytest.param(REDIRECT_PREFIX + blob_path(DIGEST) + "\x00", id="nul"),
    pytest.param(REDIRECT_PREFIX.rstrip("/") + blob_path(DIGEST), id="prefix without its slash"),
]


@pytest.mark.parametrize("target", FORGED)
def test_a_forged_redirect_is_refused(root: Path, target: str) -> None:
    with pytest.raises(Unavailable):
        open_blob(root, target, DIGEST, len(DATA))


def test_a_data_file_that_is_a_symlink_out_of_the_root_is_refused(tmp_path: Path, root: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * len(DATA))  # even the right size
    data = root / blob_path(DIGEST)
    data.unlink()
    data.symlink_to(secret)
    with pytest.raises(Unavailable, match="outside the storage root"):
        open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA))


def test_a_blob_directory_that_is_a_symlink_out_of_the_root_is_refused(tmp_path: Path, root: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    place(elsewhere, DIGEST, DATA)
    fan_out = (root / blob_path(DIGEST)).parent.parent  # blobs/sha256/<xx>
    for child in fan_out.rglob("*"):
        if child.is_file():
            child.unlink()
    for child in sorted(fan_out.rglob("*"), reverse=True):
        child.rmdir()
    fan_out.rmdir()
    fan_out.symlink_to((elsewhere / blob_path(DIGEST)).parent.parent, target_is_directory=True)
    with pytest.raises(Unavailable, match="outside the storage root"):
        open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA))


def test_a_symlink_that_stays_under_the_root_is_followed(root: Path) -> None:
    """An operator may move the fan-out elsewhere under the root: only leaving the root is refused."""
    data = root / blob_path(DIGEST)
    moved = root / "moved-data"
    data.rename(moved)
    data.symlink_to(moved)
    assert open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA)) == moved


@pytest.mark.parametrize("length", [0, len(DATA) - 1, len(DATA) + 1])
def test_a_file_of_another_size_than_the_registry_recorded_is_refused(root: Path, length: int) -> None:
    with pytest.raises(Unavailable, match="bytes"):
        open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, length)


def test_a_missing_file_or_a_directory_is_unavailable(root: Path) -> None:
    data = root / blob_path(DIGEST)
    data.unlink()
    with pytest.raises(Unavailable, match="cannot open"):
        open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA))
    data.mkdir()
    with pytest.raises(Unavailable, match="not a regular file"):
        open_blob(root, redirect_uri(blob_path(DIGEST)), DIGEST, len(DATA))


@pytest.mark.parametrize(
    ("method", "path", "offered"),
    [
        ("GET", f"/v2/library/app/blobs/{DIGEST}", True),
        ("GET", f"/v2/a/b/c/blobs/{DIGEST}", True),
        ("HEAD", f"/v2/library/app/blobs/{DIGEST}", False),
        ("DELETE", f"/v2/library/app/blobs/{DIGEST}", False),
        ("GET", f"/v2/library/app/manifests/{DIGEST}", False),
        ("GET", "/v2/library/app/blobs/uploads/", False),
        ("GET", "/v2/library/app/blobs/uploads/abc", False),
        ("GET", "/v2/library/app/blobs/sha256:abc", False),  # DIGEST_INVALID is the registry's
        ("GET", "/v2/library/app/blobs/md5:" + "0" * 32, False),
        ("GET", f"/service/token/blobs/{DIGEST}", False),
    ],
)
def test_only_blob_gets_are_offered(tmp_path: Path, method: str, path: str, offered: bool) -> None:
    offer = LocalBlobs(tmp_path).offer(make_mocked_request(method, path))
    assert (offer is not None) == offered
    if offer is not None:
        assert offer.digest == DIGEST


def test_where_the_proxy_looks_for_the_storage(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).proxy_storage_root == (tmp_path / "storage").resolve()
    explicit = Settings(data_dir=tmp_path, storage={"filesystem": {"root": tmp_path / "blobs"}})  # type: ignore[arg-type]
    assert explicit.proxy_storage_root == (tmp_path / "blobs").resolve()
    mounted = Settings(data_dir=tmp_path, proxy={"storage_root": tmp_path / "mnt"})  # type: ignore[arg-type]
    assert mounted.proxy_storage_root == (tmp_path / "mnt").resolve()
    assert Settings(data_dir=tmp_path, storage={"driver": "s3"}).proxy_storage_root is None  # type: ignore[arg-type]
    off = Settings(data_dir=tmp_path, proxy={"local_blobs": False})  # type: ignore[arg-type]
    assert off.proxy_storage_root is None
