"""SHA-256/512 whose running state can be saved and resumed, so an upload's digest can travel
between registry instances instead of being recomputed from stored bytes.

Python's hashlib objects cannot be serialised, so this calls OpenSSL's libcrypto (which
hashlib itself uses) through ctypes: `SHA256_Update` runs at hashlib's speed and, being a
foreign call, releases the GIL. Where libcrypto cannot be loaded, `new` falls back to hashlib
and `state()` is None.

A saved state is the raw context struct behind a header naming what wrote it:

    magic "WHSH" | format 1 | algorithm (1 sha256, 2 sha512) | length of the library's version
    text, the text ("OpenSSL 3.0.13 30 Jan 2024") | OpenSSL_version_num | bytes hashed | context

A saved state comes back from Redis, where anything may have changed it, and `SHA*_Update`
writes into the context at its `num` counter, so `resume` takes nothing on trust: the header
must be this library's, this algorithm's and at the caller's offset, and every counter of the
context must agree with that offset. Anything else is refused (and logged): the caller then
hashes the stored bytes again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
from dataclasses import dataclass
from typing import Protocol

from wharf_shared.logging import get_logger

log = get_logger(__name__)


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    def state(self) -> bytes | None:
        """The running state, tagged (resume it with `resume`), or None when it cannot be saved."""


@dataclass(frozen=True, slots=True)
class _Layout:
    """OpenSSL's context struct (unchanged since 1.1): h[8], Nl, Nh, data block, num, md_len."""

    prefix: str
    tag: int  # the algorithm's byte in the header
    word: int  # bytes per word of h, Nl, Nh and the data block
    digest_size: int  # md_len

    @property
    def block(self) -> int:
        return 16 * self.word

    @property
    def size(self) -> int:
        return 8 * self.word + 2 * self.word + self.block + 8

    def counters(self, ctx: bytes) -> tuple[int, int, int]:
        """(bit count, num, md_len) read from a context."""
        fmt = "=QQ" if self.word == 8 else "=II"
        low, high = struct.unpack_from(fmt, ctx, 8 * self.word)
        num, md_len = struct.unpack_from("=II", ctx, self.size - 8)
        return (high << (8 * self.word)) | low, num, md_len


_LAYOUTS = {
    "sha256": _Layout("SHA256", 1, 4, 32),
    "sha512": _Layout("SHA512", 2, 8, 64),
}
_MAGIC = b"WHSH"
_FORMAT = 1
_TAIL = struct.Struct("<QQ")  # OpenSSL_version_num, bytes hashed


def _load() -> tuple[ctypes.CDLL, bytes, int] | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for prefix in ("SHA256", "SHA512"):
            for suffix, argtypes in (
                ("_Init", [ctypes.c_void_p]),
                ("_Update", [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
                ("_Final", [ctypes.c_void_p, ctypes.c_void_p]),
            ):
                function = getattr(lib, prefix + suffix)
                function.argtypes = argtypes
                function.restype = ctypes.c_int
        lib.OpenSSL_version.argtypes = [ctypes.c_int]
        lib.OpenSSL_version.restype = ctypes.c_char_p
        lib.OpenSSL_version_num.argtypes = []
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        version: bytes = lib.OpenSSL_version(0)[:255]  # OPENSSL_VERSION: "OpenSSL 3.0.13 30 Jan 2024"
        number = int(lib.OpenSSL_version_num())
    except (OSError, AttributeError):
        return None
    return lib, version, number


_LOADED = _load()
_LIB = _LOADED[0] if _LOADED is not None else None


def _header(layout: _Layout) -> bytes:
    version = _LOADED[1] if _LOADED is not None else b""
    return _MAGIC + bytes([_FORMAT, layout.tag, len(version)]) + version


class ResumableHash:
    def __init__(self, algorithm: str, ctx: bytes | None = None, length: int = 0) -> None:
        assert _LIB is not None
        layout = _LAYOUTS[algorithm]
        self.algorithm = algorithm
        self._layout = layout
        self._update = getattr(_LIB, layout.prefix + "_Update")
        self._final = getattr(_LIB, layout.prefix + "_Final")
        self.length = length  # bytes hashed so far
        if ctx is None:
            self._ctx = ctypes.create_string_buffer(layout.size)
            if getattr(_LIB, layout.prefix + "_Init")(self._ctx) != 1:
                raise RuntimeError(f"{layout.prefix}_Init failed")
        else:
            assert len(ctx) == layout.size  # checked by `resume`
            self._ctx = ctypes.create_string_buffer(ctx, layout.size)

    def update(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._update(self._ctx, data, len(data)) != 1:
            raise RuntimeError("hash update failed")
        self.length += len(data)

    def hexdigest(self) -> str:
        # Final consumes a context: finish a copy, so this one can go on.
        copy = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(self._layout.digest_size)
        if self._final(out, copy) != 1:
            raise RuntimeError("hash final failed")
        return out.raw.hex()

    def state(self) -> bytes | None:
        assert _LOADED is not None
        return _header(self._layout) + _TAIL.pack(_LOADED[2], self.length) + self._ctx.raw


class _Hashlib:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def state(self) -> bytes | None:
        return None


def new(algorithm: str) -> Hasher:
    if _LIB is not None and algorithm in _LAYOUTS:
        return ResumableHash(algorithm)
    return _Hashlib(algorithm)


def check(algorithm: str, saved: bytes, offset: int) -> str | None:
    """Why `saved` cannot continue a hash of `offset` bytes here, or None when it can."""
    layout = _LAYOUTS.get(algorithm)
    if _LOADED is None or layout is None:
        return "no resumable hash of this algorithm here"
    header = _header(layout)
    if not saved.startswith(_MAGIC):
        return "not a saved hash state"
    if saved[: len(header)] != header:
        return "written by another library, version or algorithm"
    rest = saved[len(header) :]
    if len(rest) != _TAIL.size + layout.size:
        return "truncated or padded"
    number, length = _TAIL.unpack_from(rest)
    if number != _LOADED[2]:
        return "written by another library version"
    if length != offset:
        return "saved at another offset"
    bits, num, md_len = layout.counters(rest[_TAIL.size :])
    # `num` indexes the data block that Update writes into: the one field that could make it write
    # outside the context. The bit count and md_len are what Final trusts.
    if md_len != layout.digest_size:
        return "md_len is not the digest size"
    if num >= layout.block or num != offset % layout.block:
        return "num does not match the offset"
    if bits != 8 * offset:
        return "bit count does not match the offset"
    return None


def resume(algorithm: str, saved: bytes, offset: int) -> Hasher | None:
    """A hasher continuing a saved state of `offset` bytes; None (logged) when it is unusable here."""
    reason = check(algorithm, saved, offset)
    if reason is not None:
        log.warning("hash_state_unusable", algorithm=algorithm, offset=offset, reason=reason)
        return None
    layout = _LAYOUTS[algorithm]
    return ResumableHash(algorithm, saved[-layout.size :], offset)


def resumable() -> bool:
    return _LIB is not None
