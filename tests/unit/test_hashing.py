"""Resumable SHA-256/512: a saved state, resumed anywhere, gives hashlib's digest; a saved state
that is not exactly what this library would have saved at that offset is refused, never used."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from wharf_shared import hashing

PIECES = [os.urandom(n) for n in (0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 4096, 1 << 20)]
CONTEXT = {"sha256": 112, "sha512": 216}  # sizeof(SHA256_CTX), sizeof(SHA512_CTX)


def saved_after(algorithm: str, data: bytes) -> bytes:
    hasher = hashing.new(algorithm)
    hasher.update(data)
    state = hasher.state()
    assert state is not None
    return state


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_resume_at_every_boundary(algorithm: str) -> None:
    assert hashing.resumable(), "libcrypto is on every supported machine"
    for cut in range(len(PIECES) + 1):
        done = b"".join(PIECES[:cut])
        resumed = hashing.resume(algorithm, saved_after(algorithm, done), len(done))
        assert resumed is not None
        for piece in PIECES[cut:]:
            resumed.update(piece)
        assert resumed.hexdigest() == hashlib.new(algorithm, b"".join(PIECES)).hexdigest()


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


def test_a_saved_state_names_what_wrote_it() -> None:
    saved = saved_after("sha256", b"x" * 100)
    assert saved.startswith(b"WHSH\x01\x01")  # magic, format 1, sha256
    assert b"OpenSSL" in saved[: -CONTEXT["sha256"]]
    assert struct.unpack_from("<Q", saved, len(saved) - CONTEXT["sha256"] - 8) == (100,)  # bytes hashed


# -- what is refused -------------------------------------------------------------------------------

DATA = os.urandom(1000)  # 1000 bytes: num = 1000 % 64 = 40 for SHA-256, 1000 % 128 = 104 for SHA-512


def _context_field(algorithm: str, field: str) -> tuple[int, str]:
    """(offset from the end of the saved state, struct format) of a context field."""
    size, word = CONTEXT[algorithm], 4 if algorithm == "sha256" else 8
    return {
        "Nl": (size - 8 * word, "=I" if word == 4 else "=Q"),
        "Nh": (size - 9 * word, "=I" if word == 4 else "=Q"),
        "num": (8, "=I"),
        "md_len": (4, "=I"),
    }[field]


def _with(algorithm: str, saved: bytes, field: str, value: int) -> bytes:
    back, fmt = _context_field(algorithm, field)
    out = bytearray(saved)
    struct.pack_into(fmt, out, len(out) - back, value)
    return bytes(out)


def _foreign_version(saved: bytes) -> bytes:
    text_at = 7  # magic, format, algorithm, length of the version text
    length = saved[6]
    return saved[:text_at] + b"OpenSSL 9.9.9 1 Jan 2099".ljust(length)[:length] + saved[text_at + length :]


def _foreign_number(saved: bytes) -> bytes:
    at = len(saved) - CONTEXT["sha256"] - 16  # OpenSSL_version_num, then the offset
    return saved[:at] + struct.pack("<Q", 0x10101000) + saved[at + 8 :]


CORRUPTIONS: dict[str, Callable[[str, bytes], bytes]] = {
    "num past the block": lambda a, s: _with(a, s, "num", 64 if a == "sha256" else 128),
    "num far past the block": lambda a, s: _with(a, s, "num", 0xFFFF_FF00),
    "num not the offset's": lambda a, s: _with(a, s, "num", 3),
    "md_len too large": lambda a, s: _with(a, s, "md_len", 4096),
    "md_len of SHA-224": lambda a, s: _with(a, s, "md_len", 28),
    "bit count too small": lambda a, s: _with(a, s, "Nl", 8),
    "bit count high word": lambda a, s: _with(a, s, "Nh", 1),
    "truncated": lambda a, s: s[:-1],
    "truncated to the header": lambda a, s: s[: -CONTEXT[a]],
    "padded": lambda a, s: s + b"\0",
    "empty": lambda a, s: b"",
    "a raw context (no header)": lambda a, s: s[-CONTEXT[a] :],
    "bad magic": lambda a, s: b"XXXX" + s[4:],
    "other format": lambda a, s: s[:4] + b"\x02" + s[5:],
    "another library version": lambda a, s: _foreign_version(s),
}


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_unusable_states_are_refused_and_logged(algorithm: str, case: str) -> None:
    saved = saved_after(algorithm, DATA)
    assert hashing.resume(algorithm, saved, len(DATA)) is not None
    with capture_logs() as logs:
        assert hashing.resume(algorithm, CORRUPTIONS[case](algorithm, saved), len(DATA)) is None
    assert [e["event"] for e in logs] == ["hash_state_unusable"]
    assert logs[0]["reason"]


def test_a_state_from_another_openssl_build_is_refused() -> None:
    saved = saved_after("sha256", DATA)
    assert hashing.check("sha256", _foreign_number(saved), len(DATA)) == "written by another library version"


@pytest.mark.parametrize("offset", [0, 999, 1001, 1000 + 64, 1 << 40])
def test_a_state_of_another_offset_is_refused(offset: int) -> None:
    saved = saved_after("sha256", DATA)
    assert hashing.check("sha256", saved, offset) == "saved at another offset"


def test_a_state_of_another_algorithm_is_refused() -> None:
    assert hashing.check("sha256", saved_after("sha512", DATA), len(DATA)) is not None
    assert hashing.check("sha512", saved_after("sha256", DATA), len(DATA)) is not None
    assert hashing.check("md5", saved_after("sha256", DATA), len(DATA)) is not None


def test_counters_are_checked_even_with_a_consistent_header() -> None:
    """A header that claims the offset of a context saved elsewhere: the context's own counters
    give it away."""
    short = saved_after("sha256", DATA[:936])  # num 40 as well, but 936 bytes counted
    header_length = len(short) - CONTEXT["sha256"] - 8
    forged = short[:header_length] + struct.pack("<Q", len(DATA)) + short[-CONTEXT["sha256"] :]
    assert hashing.check("sha256", forged, len(DATA)) == "bit count does not match the offset"
