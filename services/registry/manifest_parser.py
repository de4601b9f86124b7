"""Manifest parsing and validation: OCI image manifest and index, Docker schema 2 and manifest list."""

from __future__ import annotations

import json
import re
from typing import Any

from wharf_registry.datatypes import Descriptor, ParsedManifest
from wharf_registry.metadata import artifact_type_of
from wharf_shared import media_types as mt
from wharf_shared.digests import Digest, DigestError
from wharf_shared.errors.domain import InvalidManifest
from wharf_shared.platforms import parse_platform

_GENERIC_TYPES = {"", "application/json", "application/octet-stream"}
# RFC 6838 section 4.2: type "/" subtype, each a restricted-name of at most 127 characters.
# The artifact type is stored (and indexed), so it is held to this before it reaches SQL.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def _fail(reason: str, **detail: Any) -> InvalidManifest:
    return InvalidManifest(f"manifest invalid: {reason}", reason=reason, **detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _fail(f"{where} is not a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _fail(f"{where}.mediaType is missing")
    if not isinstance(digest, str):
        raise _fail(f"{where}.digest is missing")
    try:
        Digest.parse(digest)
    except DigestError as exc:
        raise _fail(f"{where}.digest: {exc}") from exc
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail(f"{where}.size must be a non-negative integer")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _fail(f"{where}.urls must be a list of strings")
    annotations = _annotations(value.get("annotations"), f"{where}.annotations")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _fail(f"{where}.artifactType must be a string")
    # The platform is optional and never a reason to refuse a push: what is unusable is dropped.
    platform = parse_platform(value.get("platform"))
    return Descriptor(media_type, digest, size, artifact_type, annotations, tuple(urls), platform)


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(f"{where} must map strings to strings")
    return value


def _media_type(content_type: str | None, document: dict[str, Any]) -> str:
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    in_body = document.get("mediaType")
    if in_body is not None and not isinstance(in_body, str):
        raise _fail("mediaType must be a string")
    if declared in _GENERIC_TYPES:
        if in_body:
            return in_body
        # Neither says: OCI allows an absent mediaType; the shape decides.
        return mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST
    if in_body and in_body != declared:
        raise _fail(
            "Content-Type does not match the manifest's mediaType", content_type=declared, media_type=in_body
        )
    return declared


def parse_manifest(body: bytes, content_type: str | None, digest: Digest) -> ParsedManifest:
    """Validate a pushed manifest; raise InvalidManifest with the reason."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and over-long integers;
        # RecursionError, nesting deeper than the parser goes.
        raise _fail(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _fail("not a JSON object")
    media_type = _media_type(content_type, document)
    if media_type in mt.SCHEMA1:
        raise _fail("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in mt.MANIFESTS:
        raise _fail(f"unsupported manifest media type {media_type!r}")
    if document.get("schemaVersion") != 2:
        raise _fail("schemaVersion must be 2")
    subject = _descriptor(document["subject"], "subject") if document.get("subject") is not None else None
    annotations = _annotations(document.get("annotations"), "annotations")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _fail("artifactType must be a string")
    if artifact_type is not None and not _MEDIA_TYPE.fullmatch(artifact_type):
        raise _fail("artifactType is not a media type (RFC 6838)")
    if media_type in mt.INDEXES:
        raw_children = document.get("manifests")
        if not isinstance(raw_children, list):
            raise _fail("manifests must be a list")
        children = tuple(_descriptor(c, f"manifests[{i}]") for i, c in enumerate(raw_children))
        for i, child in enumerate(children):
            if child.media_type not in mt.MANIFESTS:
                raise _fail(f"manifests[{i}] is not a manifest ({child.media_type})")
        return ParsedManifest(
            media_type=media_type,
            digest=str(digest),
            size=len(body),
            blobs=(),
            children=children,
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations,
        )
    config = _descriptor(document.get("config"), "config")
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list):
        raise _fail("layers must be a list")
    layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(raw_layers))
    # Foreign layers (with urls) live elsewhere and need not be in the registry.
    blobs = (config, *(layer for layer in layers if not layer.urls))
    if artifact_type is None and not _MEDIA_TYPE.fullmatch(config.media_type):
        raise _fail("config.mediaType is not a media type (RFC 6838)")
    return ParsedManifest(
        media_type=media_type,
        digest=str(digest),
        size=len(body),
        blobs=blobs,
        children=(),
        subject=subject,
        artifact_type=artifact_type_of(media_type, artifact_type, config.media_type),
        annotations=annotations,
    )
