"""Small images and the requests docker sends to push one: shared by the small-push scenario and
the mixed load.

A small-image push is what docker sends for an image of one config blob and one layer that the
registry does not have yet (docker checks and uploads layers before the config):
  1. HEAD  /v2/<repo>/blobs/<layer>          → 404
  2. POST  /v2/<repo>/blobs/uploads/         → 202 + Location
  3. PUT   <Location>&digest=<layer> (body)  → 201
  4. HEAD  /v2/<repo>/blobs/<config>         → 404
  5. POST  /v2/<repo>/blobs/uploads/         → 202 + Location
  6. PUT   <Location>&digest=<config> (body) → 201
  7. PUT   /v2/<repo>/manifests/<tag>        → 201 (Docker schema 2)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from tests.bench.http import Connection, expect
from tests.support.oci import DOCKER_MANIFEST, image_manifest

ACCEPT = ", ".join(
    (
        DOCKER_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
OCTETS = {"Content-Type": "application/octet-stream"}
PUSH_REQUESTS = 7


def sha256(data: bytes | bytearray | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def with_digest(target_path: str, digest: str) -> str:
    return f"{target_path}{'&' if '?' in target_path else '?'}digest={digest}"


@dataclass(frozen=True)
class SmallImage:
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def small_image(seed: str, layer_bytes: int = 2048) -> SmallImage:
    block = hashlib.sha256(seed.encode()).digest()
    layer = (block * (layer_bytes // len(block) + 1))[:layer_bytes]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        },
        sort_keys=True,
    ).encode()
    manifest = image_manifest(config, [layer], media_type=DOCKER_MANIFEST)
    return SmallImage(config, layer, manifest)


def push_small(conn: Connection, repo: str, tag: str, image: SmallImage, auth: dict[str, str]) -> None:
    """The 7 requests of a docker push of a one-layer image the registry lacks (module docstring)."""
    for blob in (image.layer, image.config):
        digest = sha256(blob)
        path = f"/v2/{repo}/blobs/{digest}"
        expect(conn.request("HEAD", path, headers=auth), 404, what=f"HEAD {path}")
        uploads = f"/v2/{repo}/blobs/uploads/"
        started = expect(conn.request("POST", uploads, headers=auth), 202, what=f"POST {uploads}")
        location = with_digest(conn.target(started.header("Location")), digest)
        expect(
            conn.request("PUT", location, headers={**auth, **OCTETS}, body=blob), 201, what=f"PUT {location}"
        )
    path = f"/v2/{repo}/manifests/{tag}"
    expect(
        conn.request("PUT", path, headers={**auth, "Content-Type": DOCKER_MANIFEST}, body=image.manifest),
        201,
        what=f"PUT {path}",
    )
