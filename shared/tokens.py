"""Docker registry tokens (JWT with an `access` claim): issuing and verifying.

The token service signs with one private key; registries trust a PEM bundle of public keys,
so a key rotates by adding its public half to the bundle before the issuer switches to it.
Key ids use libtrust's format, which distribution registries also understand.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")
LEEWAY_SECONDS = 30


class TokenError(Exception):
    """A token that is not valid here; the message says why (never shown with the token)."""


@dataclass(frozen=True, slots=True)
class Access:
    type: str
    name: str
    actions: frozenset[str]

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows."""

    subject: str
    access: tuple[Access, ...]
    issued_at: float
    expires_at: float
    token_id: str = ""
    unrestricted: bool = False  # no auth configured: everything is allowed
    _index: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for entry in self.access:
            key = (entry.type, entry.name)
            self._index[key] = self._index.get(key, frozenset()) | entry.actions

    def allows(self, type_: str, name: str, action: str) -> bool:
        if self.unrestricted:
            return True
        actions = self._index.get((type_, name), frozenset())
        return action in actions or "*" in actions


def key_id(public_key: PublicKeyTypes) -> str:
    """libtrust key id: base32 of the first 240 bits of SHA-256 over the DER public key, in 4s."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def algorithm_for(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    raise TokenError(f"unsupported key type {type(key).__name__}: use an EC P-256 or RSA key")


def generate_private_key(kind: str = "ec") -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TokenError(f"cannot read the token signing key {path}: {exc}") from exc


def load_public_keys(pem: bytes) -> list[PublicKeyTypes]:
    """Public keys and certificates from a PEM bundle, in order."""
    keys: list[PublicKeyTypes] = []
    for block in _pem_blocks(pem):
        if b"CERTIFICATE" in block.split(b"\n", 1)[0]:
            keys.append(x509.load_pem_x509_certificate(block).public_key())
        elif b"PUBLIC KEY" in block.split(b"\n", 1)[0]:
            keys.append(serialization.load_pem_public_key(block))
    return keys


def _pem_blocks(pem: bytes) -> Iterable[bytes]:
    for part in pem.split(b"-----END ")[:-1]:
        begin = part.find(b"-----BEGIN ")
        if begin < 0:
            continue
        label = part[begin + len(b"-----BEGIN ") :].split(b"-----", 1)[0]
        yield part[begin:] + b"-----END " + label + b"-----\n"


class TokenIssuer:
    def __init__(
        self,
        private_key: PrivateKeyTypes,
        *,
        service: str,
        issuer: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self.algorithm = algorithm_for(private_key)
        self.kid = key_id(private_key.public_key())
        self.service = service
        self.issuer = issuer
        self._clock = clock

    def issue(
        self, subject: str, access: Sequence[Access], lifetime: int, *, now: float | None = None
    ) -> tuple[str, float]:
        issued = self._clock() if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": int(issued) + lifetime,
            "nbf": int(issued) - 1,
            "iat": int(issued),
            "jti": secrets.token_hex(16),
            "access": [a.to_claim() for a in access],
        }
        token = jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid})  # type: ignore[arg-type]
        return token, issued


class TokenVerifier:
    """Verifies tokens against a trusted key bundle; keeps recent results for their lifetime.

    Registry tokens carry no `typ` claim; a token that does is some other kind of token (a
    refresh token, say) and is refused, whatever its audience.
    """

    def __init__(
        self,
        keys: Sequence[PublicKeyTypes],
        *,
        service: str,
        issuer: str,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise TokenError("the trusted key bundle holds no public key")
        self._keys = {key_id(k): k for k in keys}
        self.service = service
        self.issuer = issuer
        self._cache: OrderedDict[str, Grant] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    @classmethod
    def from_bundle(
        cls, path: Path, *, service: str, issuer: str, clock: Callable[[], float] = time.time
    ) -> TokenVerifier:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise TokenError(f"cannot read the trusted key bundle {path}: {exc}") from exc
        return cls(load_public_keys(pem), service=service, issuer=issuer, clock=clock)

    def verify(self, token: str, *, now: float | None = None, expired_grace: float = 0.0) -> Grant:
        """The token's grant; `expired_grace` accepts a token that expired at most that long ago
        (everything else is still checked)."""
        current = self._clock() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + LEEWAY_SECONDS + expired_grace > current:
                return cached
            del self._cache[token]
        grant = self._verify(token, current, expired_grace)
        self._cache[token] = grant
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return grant

    def _verify(self, token: str, now: float, expired_grace: float = 0.0) -> Grant:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        if header.get("alg") not in ALGORITHMS:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if kid is not None:
            key = self._keys.get(kid)
            if key is None:
                raise TokenError("token signed by an unknown key")
            candidates = [key]
        else:
            candidates = list(self._keys.values())
        last: Exception | None = None
        for key in candidates:
            if algorithm_for(key)[:2] != header["alg"][:2]:
                continue
            try:
                claims = jwt.decode(
                    token,
                    key,  # type: ignore[arg-type]
                    algorithms=list(ALGORITHMS),
                    audience=self.service,
                    issuer=self.issuer,
                    leeway=LEEWAY_SECONDS,
                    # exp and nbf are checked below against `now`, the clock cached grants use too.
                    options={
                        "require": ["exp", "iss", "aud"],
                        "verify_iat": False,
                        "verify_exp": False,
                        "verify_nbf": False,
                    },
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.PyJWTError as exc:
                raise TokenError(str(exc)) from exc
            if "typ" in claims:
                raise TokenError(f"a token of type {str(claims['typ'])[:40]!r} is not a registry token")
            _check_lifetime(claims, now, expired_grace)
            return _grant(claims)
        raise TokenError(f"token signature does not verify{': ' + str(last) if last else ''}")


def _check_lifetime(claims: dict[str, Any], now: float, expired_grace: float = 0.0) -> None:
    expires, not_before = claims["exp"], claims.get("nbf", now)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (expires, not_before)):
        raise TokenError("token `exp` or `nbf` is not a number")
    if expires + LEEWAY_SECONDS + expired_grace <= now:
        raise TokenError("token has expired")
    if not_before - LEEWAY_SECONDS > now:
        raise TokenError("token is not yet valid (nbf)")


def _grant(claims: dict[str, Any]) -> Grant:
    access: list[Access] = []
    raw = claims.get("access") or []
    if not isinstance(raw, list):
        raise TokenError("token `access` claim is not a list")
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("actions", []), list):
            raise TokenError("token `access` claim is malformed")
        access.append(
            Access(
                type=str(item.get("type", "")),
                name=str(item.get("name", "")),
                actions=frozenset(map(str, item.get("actions") or [])),
            )
        )
    return Grant(
        subject=str(claims.get("sub", "")),
        access=tuple(access),
        issued_at=float(claims.get("iat", 0)),
        expires_at=float(claims["exp"]),
        token_id=str(claims.get("jti", "")),
    )
