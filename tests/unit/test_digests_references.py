"""Digests (`algorithm:hex`) and repository names and tags, as the OCI specs define them."""

from __future__ import annotations

import hashlib

import pytest

from wharf_shared.digests import Digest, DigestError, is_digest
from wharf_shared.references import NAME_MAX_LENGTH, is_valid_name, is_valid_tag

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = (
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)

# -- digests -------------------------------------------------------------------------------


def test_of_sha256_known_vector() -> None:
    digest = Digest.of(b"")
    assert digest == Digest("sha256", EMPTY_SHA256)
    assert str(digest) == f"sha256:{EMPTY_SHA256}"
    assert str(Digest.of(b"abc")) == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_of_sha512_known_vector() -> None:
    assert str(Digest.of(b"", "sha512")) == f"sha512:{EMPTY_SHA512}"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_parse_round_trip(algorithm: str) -> None:
    data = b"some blob bytes"
    text = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    digest = Digest.parse(text)
    assert digest.algorithm == algorithm
    assert str(digest) == text
    assert digest == Digest.of(data, algorithm)
    hasher = digest.hasher()
    hasher.update(data)
    assert hasher.hexdigest() == digest.hex


def test_digests_are_values() -> None:
    assert Digest.parse(f"sha256:{EMPTY_SHA256}") == Digest.parse(f"sha256:{EMPTY_SHA256}")
    assert len({Digest.parse(f"sha256:{EMPTY_SHA256}"), Digest.of(b"")}) == 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        f":{EMPTY_SHA256}",
        EMPTY_SHA256,
        f"sha256:{EMPTY_SHA256[:-1]}",  # too short
        f"sha256:{EMPTY_SHA256}0",  # too long
        f"sha256:{EMPTY_SHA256.upper()}",  # the registered algorithms are lower-case hex
        f"sha256:{EMPTY_SHA256[:-1]}g",
        f"sha256:{EMPTY_SHA256}\n",
        f" sha256:{EMPTY_SHA256}",
        f"SHA256:{EMPTY_SHA256}",
        f"sha512:{EMPTY_SHA256}",  # sha256 length under sha512
        f"sha256:{EMPTY_SHA512}",
        f"sha256::{EMPTY_SHA256}",
        f"sha256:{EMPTY_SHA256[:32]}/{EMPTY_SHA256[33:]}",
        f"sha256+:{EMPTY_SHA256}",
        f"md5:{hashlib.md5(b'', usedforsecurity=False).hexdigest()}",  # grammatical, not registered
        f"blake3:{EMPTY_SHA256}",
    ],
)
def test_parse_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        Digest.parse(value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(DigestError):
        Digest.parse(None)  # type: ignore[arg-type]


def test_unregistered_algorithm_is_named() -> None:
    with pytest.raises(DigestError, match="unsupported digest algorithm 'sha384'"):
        Digest.parse("sha384:" + "0" * 96)


def test_digest_error_is_a_value_error() -> None:
    assert issubclass(DigestError, ValueError)


@pytest.mark.parametrize(("reference", "expected"), [("latest", False), (f"sha256:{EMPTY_SHA256}", True)])
def test_is_digest(reference: str, expected: bool) -> None:
    assert is_digest(reference) is expected


# -- repository names ----------------------------------------------------------------------
# distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*

VALID_NAMES = [
    "a",
    "library/alpine",
    "0",
    "a/b/c/d/e",
    "my-app",
    "my--app",
    "my---app",
    "my_app",
    "my__app",
    "my.app",
    "v1.2.3",
    "project/sub_dir/img-name.v2",
    "a0/b1",
]
INVALID_NAMES = [
    "",
    "Library/alpine",  # upper case
    "/alpine",
    "alpine/",
    "a//b",
    "-a",
    "a-",
    "_a",
    "a_",
    ".a",
    "a.",
    "a___b",  # three underscores
    "a..b",
    "a._b",
    "a-.b",
    "a b",
    "a:b",
    "a@b",
    "café",
    "a/-b",
    "a/../b",
    "alpine\n",
    "alpine\nfoo",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


def test_name_length_limit() -> None:
    assert NAME_MAX_LENGTH == 255
    longest = "/".join(["a" * 63] * 4)  # 255 characters
    assert len(longest) == 255
    assert is_valid_name(longest)
    assert not is_valid_name(longest + "b")
    assert not is_valid_name("a" * 256)


# -- tags ----------------------------------------------------------------------------------
# distribution-spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}

VALID_TAGS = [
    "latest",
    "v1.2.3",
    "_private",
    "0",
    "UPPER",
    "a-b_c.d",
    "1.0.0-rc.1",
    "a" * 128,
    "A_" + "-" * 126,
]
INVALID_TAGS = [
    "",
    ".hidden",
    "-dash",
    "a" * 129,
    "a/b",
    "a:b",
    "a+b",
    "a b",
    "tag@sha",
    "latest\n",
    "ünïcode",
]


@pytest.mark.parametrize("tag", VALID_TAGS)
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)


@pytest.mark.parametrize("tag", INVALID_TAGS)
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)
