"""Registry tokens: issue and verify with EC and RSA keys, and every reason to refuse one.

Time is a clock the tests hold (fixed, or moved by hand), never the machine's."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from wharf_shared.tokens import (
    LEEWAY_SECONDS,
    Access,
    Grant,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    algorithm_for,
    key_id,
    load_public_keys,
    private_key_pem,
    public_key_pem,
)

SERVICE = "wharf-registry"
ISSUER = "wharf-token-issuer"
REPO = "library/app"
PULL = Access("repository", REPO, frozenset({"pull"}))
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec_key_2() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["ec", "rsa"])
def key(request: pytest.FixtureRequest, ec_key: PrivateKeyTypes, rsa_key: PrivateKeyTypes) -> PrivateKeyTypes:
    return ec_key if request.param == "ec" else rsa_key


def issuer_for(
    key: PrivateKeyTypes, *, service: str = SERVICE, issuer: str = ISSUER, clock: Clock | None = None
) -> TokenIssuer:
    return TokenIssuer(key, service=service, issuer=issuer, clock=clock or Clock())


def verifier_for(*keys: PrivateKeyTypes, clock: Clock | None = None) -> TokenVerifier:
    return TokenVerifier(
        [k.public_key() for k in keys], service=SERVICE, issuer=ISSUER, clock=clock or Clock()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(NOW)
    base = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": "abc",
        "access": [PULL.to_claim()],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: PrivateKeyTypes, payload: dict[str, Any], **headers: Any) -> str:
    headers.setdefault("kid", key_id(key.public_key()))
    return jwt.encode(payload, key, algorithm=algorithm_for(key), headers=headers)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- issue and verify ----------------------------------------------------------------------


def test_issue_then_verify(key: PrivateKeyTypes) -> None:
    issuer = issuer_for(key)
    access = [PULL, Access("repository", "library/other", frozenset({"pull", "push"}))]
    token, issued = issuer.issue("alice", access, 600)
    grant = verifier_for(key).verify(token)
    assert grant.subject == "alice"
    assert set(grant.access) == set(access)
    assert grant.expires_at == int(issued) + 600
    assert grant.issued_at == int(issued)
    assert grant.token_id
    assert grant.allows("repository", REPO, "pull")
    assert not grant.allows("repository", REPO, "push")
    assert grant.allows("repository", "library/other", "push")


def test_header_and_claims(key: PrivateKeyTypes) -> None:
    issuer = issuer_for(key)
    token, _ = issuer.issue("bob", [PULL], 300, now=1_800_000_000)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == ("ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256")
    assert header["kid"] == key_id(key.public_key())
    payload = json.loads(unb64(token.split(".")[1]))
    assert payload["iss"] == ISSUER
    assert payload["aud"] == SERVICE
    assert payload["sub"] == "bob"
    assert payload["iat"] == 1_800_000_000
    assert payload["exp"] == 1_800_000_300
    assert payload["nbf"] <= payload["iat"]
    assert payload["access"] == [{"type": "repository", "name": REPO, "actions": ["pull"]}]


def test_token_ids_are_unique(ec_key: PrivateKeyTypes) -> None:
    issuer = issuer_for(ec_key)
    verifier = verifier_for(ec_key)
    ids = {verifier.verify(issuer.issue("alice", [PULL], 300)[0]).token_id for _ in range(5)}
    assert len(ids) == 5


def test_other_curves(ec_key: PrivateKeyTypes) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token, _ = issuer_for(p384).issue("alice", [PULL], 300)
    assert jwt.get_unverified_header(token)["alg"] == "ES384"
    assert verifier_for(ec_key, p384).verify(token).subject == "alice"


def test_unsupported_key_type() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(TokenError, match="unsupported key type"):
        issuer_for(ed25519.Ed25519PrivateKey.generate())  # type: ignore[arg-type]


# -- refusals ------------------------------------------------------------------------------


def test_tampered_payload(key: PrivateKeyTypes) -> None:
    token, _ = issuer_for(key).issue("alice", [PULL], 300)
    header, payload, signature = token.split(".")
    body = json.loads(unb64(payload))
    body["access"][0]["actions"] = ["pull", "push", "delete"]
    forged = ".".join([header, b64(json.dumps(body).encode()), signature])
    with pytest.raises(TokenError, match="signature"):
        verifier_for(key).verify(forged)


def test_tampered_signature(key: PrivateKeyTypes) -> None:
    token, _ = issuer_for(key).issue("alice", [PULL], 300)
    header, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(TokenError, match="signature"):
        verifier_for(key).verify(".".join([header, payload, b64(bytes(raw))]))
    with pytest.raises(TokenError):
        verifier_for(key).verify(".".join([header, payload, ""]))


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c", "e30.e30.", "Bearer xyz"])
def test_malformed(ec_key: PrivateKeyTypes, garbage: str) -> None:
    with pytest.raises(TokenError):
        verifier_for(ec_key).verify(garbage)


def test_expired(key: PrivateKeyTypes) -> None:
    clock = Clock()
    token, _ = issuer_for(key, clock=clock).issue("alice", [PULL], 600)
    verifier = verifier_for(key, clock=clock)
    assert verifier.verify(token).subject == "alice"
    clock.advance(600 + LEEWAY_SECONDS - 1)
    assert verifier.verify(token).subject == "alice"  # within the leeway
    clock.advance(1)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)


def test_expiry_leeway(key: PrivateKeyTypes) -> None:
    now = int(NOW)
    verifier = verifier_for(key)
    assert verifier.verify(sign(key, claims(exp=now - LEEWAY_SECONDS // 3))).subject == "alice"
    with pytest.raises(TokenError):
        verifier.verify(sign(key, claims(exp=now - LEEWAY_SECONDS * 3)))


def test_cached_grant_does_not_outlive_the_token(ec_key: PrivateKeyTypes) -> None:
    clock = Clock()
    token, _ = issuer_for(ec_key, clock=clock).issue("alice", [PULL], 120)
    verifier = verifier_for(ec_key, clock=clock)
    assert verifier.verify(token).subject == "alice"
    clock.advance(60)
    assert verifier.verify(token).subject == "alice"  # from the cache
    clock.advance(60 + LEEWAY_SECONDS + 5)
    with pytest.raises(TokenError):
        verifier.verify(token)


def test_not_yet_valid(key: PrivateKeyTypes) -> None:
    now = int(NOW)
    with pytest.raises(TokenError, match="not yet valid"):
        verifier_for(key).verify(sign(key, claims(nbf=now + 3600, iat=now + 3600, exp=now + 7200)))


def test_issued_by_a_clock_ahead(ec_key: PrivateKeyTypes) -> None:
    token, _ = issuer_for(ec_key, clock=Clock(NOW + 3600)).issue("alice", [PULL], 300)
    with pytest.raises(TokenError, match="not yet valid"):
        verifier_for(ec_key).verify(token)


def test_an_explicit_time_wins_over_the_clock(ec_key: PrivateKeyTypes) -> None:
    token, issued = issuer_for(ec_key).issue("alice", [PULL], 300, now=NOW - 3600)
    assert issued == NOW - 3600
    with pytest.raises(TokenError, match="expired"):
        verifier_for(ec_key).verify(token)
    assert verifier_for(ec_key).verify(token, now=NOW - 3600).subject == "alice"


@pytest.mark.parametrize("times", [{"exp": "4102444800"}, {"exp": True}, {"nbf": "0"}, {"exp": None}])
def test_lifetime_claims_must_be_numbers(ec_key: PrivateKeyTypes, times: dict[str, Any]) -> None:
    with pytest.raises(TokenError):
        verifier_for(ec_key).verify(sign(ec_key, claims(**times)))


def test_wrong_audience(key: PrivateKeyTypes) -> None:
    token, _ = issuer_for(key, service="another-registry").issue("alice", [PULL], 300)
    with pytest.raises(TokenError, match=r"[Aa]udience"):
        verifier_for(key).verify(token)


def test_wrong_issuer(key: PrivateKeyTypes) -> None:
    token, _ = issuer_for(key, issuer="someone-else").issue("alice", [PULL], 300)
    with pytest.raises(TokenError, match=r"[Ii]ssuer"):
        verifier_for(key).verify(token)


@pytest.mark.parametrize("typ", ["wharf-refresh", "JWT", "", None])
def test_tokens_of_another_type_are_refused(key: PrivateKeyTypes, typ: str | None) -> None:
    """A refresh token (or any token with a `typ` claim) is no registry token, even signed by a
    trusted key for this very audience."""
    token = sign(key, {**claims(), "typ": typ})
    with pytest.raises(TokenError, match="not a registry token"):
        verifier_for(key).verify(token)


@pytest.mark.parametrize("missing", ["exp", "iss", "aud"])
def test_required_claims(ec_key: PrivateKeyTypes, missing: str) -> None:
    with pytest.raises(TokenError, match=missing):
        verifier_for(ec_key).verify(sign(ec_key, claims(**{missing: None})))


def test_unknown_kid(key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes) -> None:
    foreign = sign(ec_key_2, claims())  # kid of a key the bundle does not hold
    with pytest.raises(TokenError, match="unknown key"):
        verifier_for(key).verify(foreign)


def test_trusted_kid_foreign_signature(ec_key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes) -> None:
    forged = sign(ec_key_2, claims(), kid=key_id(ec_key.public_key()))
    with pytest.raises(TokenError, match="signature"):
        verifier_for(ec_key).verify(forged)


def test_no_kid_foreign_key(
    key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes, rsa_key: PrivateKeyTypes
) -> None:
    foreign_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for signer in (ec_key_2, foreign_rsa):
        token = jwt.encode(claims(), signer, algorithm=algorithm_for(signer))  # type: ignore[arg-type]
        assert "kid" not in jwt.get_unverified_header(token)
        with pytest.raises(TokenError, match="signature"):
            verifier_for(key).verify(token)


def test_no_kid_trusted_key(key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes) -> None:
    token = jwt.encode(claims(), key, algorithm=algorithm_for(key))  # type: ignore[arg-type]
    assert verifier_for(ec_key_2, key).verify(token).subject == "alice"


def test_alg_none(ec_key: PrivateKeyTypes) -> None:
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": key_id(ec_key.public_key())}):
        token = ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims()).encode()), ""])
        with pytest.raises(TokenError, match="algorithm"):
            verifier_for(ec_key).verify(token)


def test_hmac_with_the_public_key_as_secret(key: PrivateKeyTypes) -> None:
    """The classic confusion attack: HS256 keyed with the (public) verification key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(key.public_key())}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims()).encode())
    mac = hmac.new(public_key_pem(key.public_key()), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="algorithm"):
        verifier_for(key).verify(signing_input + "." + b64(mac))


def test_algorithm_family_must_match_the_key(ec_key: PrivateKeyTypes, rsa_key: PrivateKeyTypes) -> None:
    token = sign(rsa_key, claims(), kid=key_id(ec_key.public_key()))  # RS256 claiming the EC key
    with pytest.raises(TokenError):
        verifier_for(ec_key, rsa_key).verify(token)


# -- the access claim ----------------------------------------------------------------------


def test_access_for_another_repository(key: PrivateKeyTypes) -> None:
    other = Access("repository", "library/other", frozenset({"pull", "push", "*"}))
    token, _ = issuer_for(key).issue("alice", [other], 300)
    grant = verifier_for(key).verify(token)
    for action in ("pull", "push", "delete"):
        assert not grant.allows("repository", REPO, action)
        assert grant.allows("repository", "library/other", action)  # "*" is every action
    assert not grant.allows("repository", "library", "pull")
    assert not grant.allows("repository", "library/other/sub", "pull")
    assert not grant.allows("registry", "library/other", "pull")


def test_no_access_claim(ec_key: PrivateKeyTypes) -> None:
    grant = verifier_for(ec_key).verify(sign(ec_key, claims(access=None)))
    assert grant.access == ()
    assert not grant.allows("repository", REPO, "pull")


def test_entries_for_one_repository_merge(ec_key: PrivateKeyTypes) -> None:
    access = [
        {"type": "repository", "name": REPO, "actions": ["pull"]},
        {"type": "repository", "name": REPO, "actions": ["push"]},
    ]
    grant = verifier_for(ec_key).verify(sign(ec_key, claims(access=access)))
    assert grant.allows("repository", REPO, "pull")
    assert grant.allows("repository", REPO, "push")
    assert not grant.allows("repository", REPO, "delete")


@pytest.mark.parametrize(
    "access",
    [{"type": "repository"}, "repository:x:pull", [["repository", REPO, "pull"]], [{"actions": "pull"}]],
)
def test_malformed_access_claim(ec_key: PrivateKeyTypes, access: Any) -> None:
    with pytest.raises(TokenError, match="access"):
        verifier_for(ec_key).verify(sign(ec_key, claims(access=access)))


def test_unrestricted_grant() -> None:
    grant = Grant(subject="", access=(), issued_at=0, expires_at=0, unrestricted=True)
    assert grant.allows("repository", "anything", "delete")


# -- keys: ids, rotation, bundles ----------------------------------------------------------

LIBTRUST_KID = re.compile(r"^[A-Z2-7]{4}(:[A-Z2-7]{4}){11}$")


def test_key_id_libtrust_format(key: PrivateKeyTypes) -> None:
    public = key.public_key()
    kid = key_id(public)
    assert LIBTRUST_KID.match(kid), kid
    # libtrust: base32 (no padding) of the first 30 bytes of SHA-256 over the DER SubjectPublicKeyInfo,
    # split in groups of four.
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert kid.replace(":", "") == encoded
    assert key_id(key.public_key()) == kid  # stable
    assert key_id(ec.generate_private_key(ec.SECP256R1()).public_key()) != kid


def test_key_rotation(ec_key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes, rsa_key: PrivateKeyTypes) -> None:
    old, new = issuer_for(ec_key), issuer_for(rsa_key)
    old_token, _ = old.issue("alice", [PULL], 300)
    new_token, _ = new.issue("alice", [PULL], 300)
    # Before: the bundle has the old key only.
    assert verifier_for(ec_key).verify(old_token)
    with pytest.raises(TokenError):
        verifier_for(ec_key).verify(new_token)
    # During: both verify.
    both = verifier_for(ec_key, rsa_key)
    assert both.verify(old_token).subject == "alice"
    assert both.verify(new_token).subject == "alice"
    # After: the old key is gone.
    with pytest.raises(TokenError, match="unknown key"):
        verifier_for(rsa_key, ec_key_2).verify(old_token)


def test_empty_bundle() -> None:
    with pytest.raises(TokenError, match="no public key"):
        TokenVerifier([], service=SERVICE, issuer=ISSUER)


def self_signed(key: PrivateKeyTypes, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_bundle_mixing_certificates_and_public_keys(
    tmp_path: Path, ec_key: PrivateKeyTypes, ec_key_2: PrivateKeyTypes, rsa_key: PrivateKeyTypes
) -> None:
    rsa_pkcs1 = rsa_key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    bundle = b"".join(
        [
            b"# trusted token keys, site A then site B\n",
            self_signed(ec_key, "token-a"),
            b"\nsome commentary between blocks\n",
            public_key_pem(ec_key_2.public_key()),
            private_key_pem(ec.generate_private_key(ec.SECP256R1())),  # not a public key: ignored
            rsa_pkcs1,  # "RSA PUBLIC KEY"
        ]
    )
    keys = load_public_keys(bundle)
    assert [key_id(k) for k in keys] == [
        key_id(ec_key.public_key()),
        key_id(ec_key_2.public_key()),
        key_id(rsa_key.public_key()),
    ]
    path = tmp_path / "token-keys.pem"
    path.write_bytes(bundle)
    verifier = TokenVerifier.from_bundle(path, service=SERVICE, issuer=ISSUER, clock=Clock())
    for signer in (ec_key, ec_key_2, rsa_key):
        token, _ = issuer_for(signer).issue("alice", [PULL], 300)
        assert verifier.verify(token).allows("repository", REPO, "pull")


def test_bundle_without_trailing_newline(ec_key: PrivateKeyTypes) -> None:
    pem = self_signed(ec_key, "x").rstrip(b"\n")
    assert [key_id(k) for k in load_public_keys(pem)] == [key_id(ec_key.public_key())]


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="cannot read"):
        TokenVerifier.from_bundle(tmp_path / "nope.pem", service=SERVICE, issuer=ISSUER)


def test_bundle_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_text("nothing here\n")
    with pytest.raises(TokenError, match="no public key"):
        TokenVerifier.from_bundle(path, service=SERVICE, issuer=ISSUER)
