"""Real, small container images for tests: OCI image layouts on disk that skopeo can copy."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class Image:
    manifest: bytes
    config: bytes
    layers: list[bytes]
    platform: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(seed: str, *, arch: str = "amd64", layer_sizes: tuple[int, ...] = (2048, 4096)) -> Image:
    """An image whose layers hold pseudo-random (incompressible) bytes derived from `seed`."""
    layers = []
    diff_ids = []
    for i, size in enumerate(layer_sizes):
        content = _noise(f"{seed}/{arch}/{i}", size)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"data/{i}.bin")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        diff_ids.append(sha256(raw.getvalue()))
        layers.append(gzip.compress(raw.getvalue(), mtime=0))
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers
            ],
        },
        sort_keys=True,
    ).encode()
    return Image(manifest, config, layers, {"architecture": arch, "os": "linux"})


def make_index(images: list[Image]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": img.digest,
                    "size": len(img.manifest),
                    "platform": img.platform,
                }
                for img in images
            ],
        },
        sort_keys=True,
    ).encode()


def _noise(seed: str, size: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def write_layout(
    directory: Path, images: list[Image], *, tag: str = "latest", index: bytes | None = None
) -> str:
    """Write an OCI image layout; `oci:<directory>:<tag>` then names the image (or the index).

    Returns the digest the tag points at.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    for img in images:
        put(img.config)
        for layer in img.layers:
            put(layer)
        put(img.manifest)
    if index is not None:
        top_digest = put(index)
        top: dict[str, Any] = {"mediaType": OCI_INDEX, "digest": top_digest, "size": len(index)}
    else:
        (img,) = images
        top_digest = img.digest
        top = {"mediaType": OCI_MANIFEST, "digest": top_digest, "size": len(img.manifest)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return top_digest


def write_big_file(path: Path, size: int, chunk: int = 8 * 1024 * 1024) -> str:
    """A file of `size` pseudo-random bytes; returns its sha256 digest."""
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        written = 0
        while written < size:
            n = min(chunk, size - written)
            data = os.urandom(n)
            hasher.update(data)
            handle.write(data)
            written += n
    return "sha256:" + hasher.hexdigest()
