"""SHA-256/512 whose running state can be saved and resumed, so an upload's digest can travel
between registry instances instead of being recomputed from stored bytes.

Python's hashlib objects cannot be serialised, so this calls OpenSSL's libcrypto (which
hashlib itself uses) through ctypes: `SHA256_Update` runs at hashlib's speed and, being a
foreign call, releases the GIL. The context structs have had the same layout since OpenSSL
1.1. Where libcrypto cannot be loaded, `new` falls back to hashlib and `state()` is None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    def state(self) -> bytes | None:
        """The running state (resume it with `resume`), or None when it cannot be saved."""


# name → (context size, digest size, Init, Update, Final)
_LAYOUT = {"sha256": (112, 32, "SHA256"), "sha512": (216, 64, "SHA512")}


def _load() -> ctypes.CDLL | None:
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
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()


class ResumableHash:
    def __init__(self, algorithm: str, state: bytes | None = None) -> None:
        assert _LIB is not None
        size, self._digest_size, prefix = _LAYOUT[algorithm]
        self.algorithm = algorithm
        self._update = getattr(_LIB, prefix + "_Update")
        self._final = getattr(_LIB, prefix + "_Final")
        if state is None:
            self._ctx = ctypes.create_string_buffer(size)
            if getattr(_LIB, prefix + "_Init")(self._ctx) != 1:
                raise RuntimeError(f"{prefix}_Init failed")
        else:
            if len(state) != size:
                raise ValueError(f"a saved {algorithm} state is {size} bytes, not {len(state)}")
            self._ctx = ctypes.create_string_buffer(state, size)

    def update(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._update(self._ctx, data, len(data)) != 1:
            raise RuntimeError("hash update failed")

    def hexdigest(self) -> str:
        # Final consumes a context: finish a copy, so this one can go on.
        copy = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(self._digest_size)
        if self._final(out, copy) != 1:
            raise RuntimeError("hash final failed")
        return out.raw.hex()

    def state(self) -> bytes | None:
        return self._ctx.raw


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
    if _LIB is not None and algorithm in _LAYOUT:
        return ResumableHash(algorithm)
    return _Hashlib(algorithm)


def resume(algorithm: str, state: bytes) -> Hasher | None:
    """A hasher continuing from a saved state; None when states cannot be used here."""
    if _LIB is None or algorithm not in _LAYOUT:
        return None
    try:
        return ResumableHash(algorithm, state)
    except ValueError:
        return None


def resumable() -> bool:
    return _LIB is not None
