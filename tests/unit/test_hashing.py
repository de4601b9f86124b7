"""Resumable SHA-256/512: a saved state, resumed anywhere, gives hashlib's digest."""

from __future__ import annotations

import hashlib
import os

import pytest

from wharf_shared import hashing


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_resume_at_every_boundary(algorithm: str) -> None:
    assert hashing.resumable(), "libcrypto is on every supported machine"
    pieces = [os.urandom(n) for n in (0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 4096, 1 << 20)]
    for cut in range(len(pieces) + 1):
        hasher = hashing.new(algorithm)
        for piece in pieces[:cut]:
            hasher.update(piece)
        saved = hasher.state()
        assert saved is not None
        resumed = hashing.resume(algorithm, saved)
        assert resumed is not None
        for piece in pieces[cut:]:
            resumed.update(piece)
        assert resumed.hexdigest() == hashlib.new(algorithm, b"".join(pieces)).hexdigest()


def test_hexdigest_does_not_end_the_hash() -> None:
    hasher = hashing.new("sha256")
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    hasher.update(b"def")
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_memoryview_and_bytearray_input() -> None:
    hasher = hashing.new("sha256")
    hasher.update(bytearray(b"ab"))  # type: ignore[arg-type]
    hasher.update(memoryview(b"cd"))  # type: ignore[arg-type]
    assert hasher.hexdigest() == hashlib.sha256(b"abcd").hexdigest()


def test_foreign_states_are_refused() -> None:
    assert hashing.resume("sha256", b"too short") is None
    assert hashing.resume("sha256", hashing.new("sha512").state() or b"") is None
    assert hashing.resume("md5", b"\0" * 112) is None
