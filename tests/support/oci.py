"""A tiny `/v2/` client for tests, over any aiohttp client (in-process TestClient or a ClientSession)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def image_manifest(
    config: bytes,
    layers: list[bytes],
    *,
    media_type: str = OCI_MANIFEST,
    config_type: str | None = None,
    layer_type: str | None = None,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config, config_type or (DOCKER_CONFIG if docker else OCI_CONFIG)),
        "layers": [
            descriptor(layer, layer_type or (DOCKER_LAYER if docker else OCI_LAYER)) for layer in layers
        ],
    }
    if subject is not None:
        doc["subject"] = subject
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if annotations is not None:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


def index_manifest(children: list[tuple[bytes, str]], *, media_type: str = OCI_INDEX) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {**descriptor(body, child_type), "platform": {"architecture": f"arch{i}", "os": "linux"}}
                for i, (body, child_type) in enumerate(children)
            ],
        }
    ).encode()


@dataclass
class V2:
    """Thin helpers over a client whose `.request(method, path, ...)` returns an aiohttp response."""

    client: Any
    headers: dict[str, str] | None = None

    def _h(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**(self.headers or {}), **(extra or {})}

    async def request(self, method: str, path: str, **kwargs: Any) -> ClientResponse:
        headers = self._h(kwargs.pop("headers", None))
        response: ClientResponse = await self.client.request(method, path, headers=headers, **kwargs)
        return response

    async def push_blob(self, name: str, data: bytes) -> str:
        digest = digest_of(data)
        resp = await self.request("POST", f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data)
        assert resp.status == 201, (resp.status, await resp.text())
        return digest

    async def push_blob_chunked(self, name: str, data: bytes, chunk: int) -> str:
        digest = digest_of(data)
        resp = await self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            resp = await self.request(
                "PATCH",
                location,
                data=piece,
                headers={
                    "Content-Range": f"{start}-{start + len(piece) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert resp.status == 202, (resp.status, await resp.text())
            location = resp.headers["Location"]
        resp = await self.request("PUT", location, params={"digest": digest})
        assert resp.status == 201, (resp.status, await resp.text())
        return digest

    async def push_manifest(
        self, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
    ) -> ClientResponse:
        return await self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
        )

    async def push_image(
        self,
        name: str,
        tag: str | None,
        *,
        seed: str = "x",
        media_type: str = OCI_MANIFEST,
        **manifest_kwargs: Any,
    ) -> tuple[str, bytes]:
        """Push config + one layer + manifest; returns (manifest digest, manifest bytes)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        layer = hashlib.sha256(seed.encode()).digest() * 64
        await self.push_blob(name, config)
        await self.push_blob(name, layer)
        body = image_manifest(config, [layer], media_type=media_type, **manifest_kwargs)
        digest = digest_of(body)
        resp = await self.push_manifest(name, tag or digest, body, media_type)
        assert resp.status == 201, (resp.status, await resp.text())
        return digest, body


async def error_code(response: ClientResponse) -> str:
    body = await response.json(content_type=None)
    return str(body["errors"][0]["code"])
