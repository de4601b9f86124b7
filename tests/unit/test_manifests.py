"""parse_manifest: what the registry takes from each manifest kind, and why it refuses bad ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wharf_registry.manifest_parser import parse_manifest
from wharf_shared import media_types as mt
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import InvalidManifest
from wharf_shared.platforms import Platform


def d(n: int, algorithm: str = "sha256") -> str:
    return str(Digest.of(b"content %d" % n, algorithm))


CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def descriptor(n: int, media_type: str = LAYER_TYPE, size: int = 100, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": d(n), "size": size, **extra}


def oci_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(1, CONFIG_TYPE, 50),
        "layers": [descriptor(2), descriptor(3, size=0)],
        **extra,
    }


def oci_index(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(10, mt.OCI_MANIFEST, 500, platform={"architecture": "amd64", "os": "linux"}),
            descriptor(11, mt.OCI_MANIFEST, 501, platform={"architecture": "arm64", "os": "linux"}),
        ],
        **extra,
    }


def docker_list() -> dict[str, Any]:
    """A Docker manifest list: its entries' `platform` is the same object as an OCI index's."""
    document = oci_index(mediaType=mt.DOCKER_MANIFEST_LIST)
    for entry in document["manifests"]:
        entry["mediaType"] = mt.DOCKER_MANIFEST
    return document


def parse(document: Any, content_type: str | None = None) -> Any:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    if content_type is None and isinstance(document, dict):
        content_type = document.get("mediaType")
    return parse_manifest(body, content_type, Digest.of(body))


def reason_of(document: Any, content_type: str | None = None) -> str:
    with pytest.raises(InvalidManifest) as info:
        parse(document, content_type)
    error = info.value
    assert error.message == f"manifest invalid: {error.detail['reason']}"
    return str(error.detail["reason"])


# -- what each kind yields -----------------------------------------------------------------


def test_oci_image_manifest() -> None:
    document = oci_manifest(annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    body = json.dumps(document).encode()
    parsed = parse_manifest(body, mt.OCI_MANIFEST, Digest.of(body))
    assert parsed.media_type == mt.OCI_MANIFEST
    assert parsed.digest == str(Digest.of(body))
    assert parsed.size == len(body)
    assert [b.digest for b in parsed.blobs] == [d(1), d(2), d(3)]
    assert parsed.blobs[0].media_type == CONFIG_TYPE
    assert [b.size for b in parsed.blobs] == [50, 100, 0]
    assert parsed.children == ()
    assert parsed.subject is None
    assert parsed.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert parsed.artifact_type == CONFIG_TYPE  # no artifactType: the config's media type


def test_oci_index() -> None:
    parsed = parse(oci_index(annotations={"a": "b"}))
    assert parsed.media_type == mt.OCI_INDEX
    assert parsed.blobs == ()
    assert [(c.digest, c.media_type, c.size) for c in parsed.children] == [
        (d(10), mt.OCI_MANIFEST, 500),
        (d(11), mt.OCI_MANIFEST, 501),
    ]
    assert parsed.artifact_type is None  # an index has no config to fall back on
    assert parsed.annotations == {"a": "b"}


def test_index_of_indexes_and_mixed_kinds() -> None:
    document = oci_index()
    document["manifests"].append(descriptor(12, mt.OCI_INDEX, 300))
    document["manifests"].append(descriptor(13, mt.DOCKER_MANIFEST, 300))
    assert [c.media_type for c in parse(document).children][2:] == [mt.OCI_INDEX, mt.DOCKER_MANIFEST]


def test_empty_index() -> None:
    assert parse(oci_index(manifests=[])).children == ()


# What an index's entry says its platform is. Optional in the spec, so nothing here refuses the
# push: what is unusable is dropped, the entry whole without a usable os and architecture.
PLATFORMS: list[tuple[str, Any, Platform | None]] = [
    ("os and architecture", {"os": "linux", "architecture": "amd64"}, Platform("linux", "amd64")),
    (
        "every field",
        {"os": "windows", "architecture": "amd64", "variant": "v8", "os.version": "10.0.20348.2340"},
        Platform("windows", "amd64", "v8", "10.0.20348.2340"),
    ),
    (
        "os.features not kept",
        {"os": "linux", "architecture": "arm", "os.features": ["x"]},
        Platform("linux", "arm"),
    ),
    (
        "the longest of each",
        {"os": "o" * 64, "architecture": "a" * 64, "variant": "v" * 32, "os.version": "9" * 128},
        Platform("o" * 64, "a" * 64, "v" * 32, "9" * 128),
    ),
    ("no platform", None, None),
    ("platform a string", "linux/amd64", None),
    ("platform a list", ["linux", "amd64"], None),
    ("os missing", {"architecture": "amd64"}, None),
    ("architecture a number", {"os": "linux", "architecture": 64}, None),
    ("os too long", {"os": "o" * 65, "architecture": "amd64"}, None),
    ("architecture empty", {"os": "linux", "architecture": ""}, None),
    ("os with a NUL", {"os": "lin\x00ux", "architecture": "amd64"}, None),
    ("os not ASCII", {"os": "línux", "architecture": "amd64"}, None),
    ("architecture with a space", {"os": "linux", "architecture": "amd 64"}, None),
    (
        "variant too long",
        {"os": "linux", "architecture": "arm", "variant": "v" * 33},
        Platform("linux", "arm"),
    ),
    (
        "variant an object",
        {"os": "linux", "architecture": "arm", "variant": {"v": 7}},
        Platform("linux", "arm"),
    ),
    ("variant null", {"os": "linux", "architecture": "arm", "variant": None}, Platform("linux", "arm")),
    (
        "os.version too long",
        {"os": "windows", "architecture": "amd64", "variant": "v1", "os.version": "1" * 129},
        Platform("windows", "amd64", "v1"),
    ),
]


@pytest.mark.parametrize(("platform", "expected"), [p[1:] for p in PLATFORMS], ids=[p[0] for p in PLATFORMS])
def test_index_entries_platforms(platform: Any, expected: Platform | None) -> None:
    for document in (oci_index(), docker_list()):
        document["manifests"][0]["platform"] = platform
        if platform is None:
            del document["manifests"][0]["platform"]
        parsed = parse(document)
        assert parsed.children[0].platform == expected
        assert parsed.children[1].platform == Platform("linux", "arm64")


def test_platform_as_text_and_harbors_object() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("windows", "amd64", None, "10.0.20348.2340")) == "windows/amd64"
    assert Platform("linux", "arm64", "v8").to_json() == {
        "os": "linux",
        "architecture": "arm64",
        "variant": "v8",
    }
    assert Platform("windows", "amd64", None, "10.0.1").to_json() == {
        "os": "windows",
        "architecture": "amd64",
        "os.version": "10.0.1",
    }
    assert Platform.from_columns("linux", "amd64", None, None) == Platform("linux", "amd64")
    assert Platform.from_columns(None, None, None, None) is None
    assert Platform.from_columns("linux", None, "v8", None) is None


def test_docker_schema2() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(1, DOCKER_CONFIG, 1469),
        "layers": [descriptor(2, DOCKER_LAYER, 2_000_000)],
    }
    parsed = parse(document)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert [b.digest for b in parsed.blobs] == [d(1), d(2)]
    assert parsed.artifact_type == DOCKER_CONFIG


def test_docker_manifest_list() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            descriptor(10, mt.DOCKER_MANIFEST, 528, platform={"architecture": "amd64", "os": "linux"})
        ],
    }
    parsed = parse(document)
    assert parsed.media_type == mt.DOCKER_MANIFEST_LIST
    assert [c.digest for c in parsed.children] == [d(10)]
    assert parsed.blobs == ()


def test_artifact_type_wins_over_config() -> None:
    document = oci_manifest(artifactType="application/vnd.example.sbom.v1")
    document["config"] = descriptor(1, mt.OCI_EMPTY, 2)
    assert parse(document).artifact_type == "application/vnd.example.sbom.v1"


def test_artifact_type_falls_back_to_config_even_when_empty() -> None:
    document = oci_manifest()
    document["config"] = descriptor(1, mt.OCI_EMPTY, 2)
    assert parse(document).artifact_type == mt.OCI_EMPTY


def test_index_artifact_type() -> None:
    assert parse(oci_index(artifactType="application/vnd.example.bundle")).artifact_type == (
        "application/vnd.example.bundle"
    )


def test_subject() -> None:
    subject = descriptor(99, mt.OCI_MANIFEST, 1234, artifactType="application/x")
    parsed = parse(oci_manifest(subject=subject, artifactType="application/vnd.example.sig"))
    assert parsed.subject is not None
    assert (parsed.subject.digest, parsed.subject.media_type, parsed.subject.size) == (
        d(99),
        mt.OCI_MANIFEST,
        1234,
    )
    assert parsed.subject.artifact_type == "application/x"
    # the subject is a reference, not a blob the repository must hold
    assert d(99) not in [b.digest for b in parsed.blobs]
    assert parse(oci_index(subject=descriptor(98, mt.OCI_INDEX, 10))).subject is not None


def test_foreign_layers_are_not_blobs() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(1, DOCKER_CONFIG, 10),
        "layers": [
            descriptor(2, DOCKER_FOREIGN, 1000, urls=["https://mcr.microsoft.com/v2/blobs/x"]),
            descriptor(3, DOCKER_LAYER, 10),
            descriptor(4, LAYER_TYPE, 10, urls=[]),  # an empty list is not foreign
        ],
    }
    parsed = parse(document)
    assert [b.digest for b in parsed.blobs] == [d(1), d(3), d(4)]


def test_descriptor_fields_kept() -> None:
    layer = descriptor(2, annotations={"org.opencontainers.image.title": "a.txt"})
    parsed = parse(oci_manifest(layers=[layer]))
    assert parsed.blobs[1].annotations == {"org.opencontainers.image.title": "a.txt"}


def test_sha512_descriptors() -> None:
    document = oci_manifest(layers=[{"mediaType": LAYER_TYPE, "digest": d(2, "sha512"), "size": 1}])
    assert parse(document).blobs[1].digest.startswith("sha512:")


def test_big_sizes() -> None:
    parsed = parse(oci_manifest(layers=[descriptor(2, size=2**53)]))
    assert parsed.blobs[1].size == 2**53


# -- media type: Content-Type and the body -------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream"])
def test_generic_content_type_uses_the_body(content_type: str | None) -> None:
    body = json.dumps(oci_index()).encode()
    assert parse_manifest(body, content_type, Digest.of(body)).media_type == mt.OCI_INDEX


@pytest.mark.parametrize(
    ("document", "expected"),
    [(oci_manifest(mediaType=None), mt.OCI_MANIFEST), (oci_index(mediaType=None), mt.OCI_INDEX)],
)
def test_no_media_type_anywhere_shape_decides(document: dict[str, Any], expected: str) -> None:
    document = {k: v for k, v in document.items() if v is not None}
    body = json.dumps(document).encode()
    assert parse_manifest(body, None, Digest.of(body)).media_type == expected


def test_content_type_without_media_type_in_body() -> None:
    document = {k: v for k, v in oci_manifest().items() if k != "mediaType"}
    assert parse(document, mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST


def test_content_type_parameters_and_case() -> None:
    body = json.dumps(oci_manifest()).encode()
    content_type = "Application/VND.oci.image.manifest.v1+JSON; charset=utf-8"
    assert parse_manifest(body, content_type, Digest.of(body)).media_type == mt.OCI_MANIFEST


# -- refusals, each with its reason --------------------------------------------------------


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


def _layer(**changes: Any) -> dict[str, Any]:
    layer = descriptor(2)
    layer.update(changes)
    return {k: v for k, v in layer.items() if v is not None}


INVALID: list[tuple[str, Any, str | None, str]] = [
    ("not json", b"{not json", mt.OCI_MANIFEST, "not valid JSON"),
    ("not utf-8", b"\xff\xfe{}", mt.OCI_MANIFEST, "not valid JSON"),
    ("a list", b"[]", mt.OCI_MANIFEST, "not a JSON object"),
    ("a string", b'"manifest"', mt.OCI_MANIFEST, "not a JSON object"),
    (
        "content type disagrees",
        oci_manifest(),
        mt.DOCKER_MANIFEST,
        "Content-Type does not match the manifest's mediaType",
    ),
    ("mediaType not a string", oci_manifest(mediaType=7), mt.OCI_MANIFEST, "mediaType must be a string"),
    (
        "schema 1",
        {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []},
        mt.DOCKER_SCHEMA1_SIGNED,
        "Docker schema 1 manifests are not supported",
    ),
    ("schema 1 unsigned", {"schemaVersion": 1}, mt.DOCKER_SCHEMA1, "Docker schema 1"),
    (
        "unknown type",
        oci_manifest(mediaType="application/x-foo"),
        "application/x-foo",
        "unsupported manifest media type",
    ),
    ("no schemaVersion", _without(oci_manifest(), "schemaVersion"), None, "schemaVersion must be 2"),
    ("schemaVersion 1", oci_manifest(schemaVersion=1), None, "schemaVersion must be 2"),
    ("schemaVersion string", oci_manifest(schemaVersion="2"), None, "schemaVersion must be 2"),
    ("no config", _without(oci_manifest(), "config"), None, "config is not a descriptor object"),
    ("config a string", oci_manifest(config=d(1)), None, "config is not a descriptor object"),
    ("no layers", _without(oci_manifest(), "layers"), None, "layers must be a list"),
    ("layers an object", oci_manifest(layers={"0": descriptor(2)}), None, "layers must be a list"),
    ("layer not an object", oci_manifest(layers=[d(2)]), None, "layers[0] is not a descriptor object"),
    ("no mediaType", oci_manifest(layers=[_layer(mediaType=None)]), None, "layers[0].mediaType is missing"),
    ("empty mediaType", oci_manifest(layers=[_layer(mediaType="")]), None, "layers[0].mediaType is missing"),
    ("no digest", oci_manifest(layers=[_layer(digest=None)]), None, "layers[0].digest is missing"),
    ("bad digest", oci_manifest(layers=[_layer(digest="sha256:abc")]), None, "layers[0].digest:"),
    (
        "unknown algorithm",
        oci_manifest(layers=[_layer(digest="md5:" + "0" * 32)]),
        None,
        "layers[0].digest: unsupported digest algorithm",
    ),
    (
        "no size",
        oci_manifest(layers=[_layer(size=None)]),
        None,
        "layers[0].size must be a non-negative integer",
    ),
    ("negative size", oci_manifest(layers=[_layer(size=-1)]), None, "layers[0].size must be"),
    ("float size", oci_manifest(layers=[_layer(size=1.5)]), None, "layers[0].size must be"),
    ("bool size", oci_manifest(layers=[_layer(size=True)]), None, "layers[0].size must be"),
    ("string size", oci_manifest(layers=[_layer(size="10")]), None, "layers[0].size must be"),
    ("urls a string", oci_manifest(layers=[_layer(urls="https://x")]), None, "layers[0].urls must be a list"),
    ("urls of numbers", oci_manifest(layers=[_layer(urls=[1])]), None, "layers[0].urls must be a list"),
    (
        "descriptor annotations",
        oci_manifest(layers=[_layer(annotations={"a": 1})]),
        None,
        "layers[0].annotations must map strings to strings",
    ),
    (
        "descriptor artifactType",
        oci_manifest(layers=[_layer(artifactType=5)]),
        None,
        "layers[0].artifactType must be a string",
    ),
    (
        "second layer",
        oci_manifest(layers=[descriptor(2), _layer(size=None)]),
        None,
        "layers[1].size must be",
    ),
    ("config digest", oci_manifest(config=descriptor(1, CONFIG_TYPE, digest="x")), None, "config.digest:"),
    ("annotations a list", oci_manifest(annotations=["a"]), None, "annotations must map strings to strings"),
    ("annotation value", oci_manifest(annotations={"a": None}), None, "annotations must map strings"),
    ("artifactType", oci_manifest(artifactType=["x"]), None, "artifactType must be a string"),
    ("subject a string", oci_manifest(subject=d(9)), None, "subject is not a descriptor object"),
    ("subject no digest", oci_manifest(subject=_layer(digest=None)), None, "subject.digest is missing"),
    ("no manifests", _without(oci_index(), "manifests"), None, "manifests must be a list"),
    ("manifests null", oci_index(manifests=None), None, "manifests must be a list"),
    ("child not a descriptor", oci_index(manifests=[7]), None, "manifests[0] is not a descriptor object"),
    (
        "child a layer",
        oci_index(manifests=[descriptor(10, mt.OCI_MANIFEST), descriptor(2, LAYER_TYPE)]),
        None,
        f"manifests[1] is not a manifest ({LAYER_TYPE})",
    ),
    (
        "child bad size",
        oci_index(manifests=[descriptor(10, mt.OCI_MANIFEST, -5)]),
        None,
        "manifests[0].size must be",
    ),
]


@pytest.mark.parametrize(
    ("document", "content_type", "reason"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_invalid(document: Any, content_type: str | None, reason: str) -> None:
    assert reason in reason_of(document, content_type)


def test_mismatch_detail_names_both_types() -> None:
    with pytest.raises(InvalidManifest) as info:
        parse(oci_manifest(), mt.DOCKER_MANIFEST)
    assert info.value.detail["content_type"] == mt.DOCKER_MANIFEST
    assert info.value.detail["media_type"] == mt.OCI_MANIFEST
