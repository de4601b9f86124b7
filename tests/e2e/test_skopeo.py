"""skopeo against a running registry process: push, inspect, pull, copy (cross-repository mount),
list tags and delete, for single images and multi-arch indexes, with and without token auth.

Full runs on PostgreSQL (production's database), on the filesystem and on S3 (moto, streamed and
redirected); a push-and-pull smoke run on SQLite and MariaDB.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, Skopeo
from tests.images import make_image, make_index, sha256, write_layout
from wharf_shared.tokens import Access, TokenIssuer, generate_private_key

pytestmark = pytest.mark.e2e

UPLOAD_START = "/v2/{name}/blobs/uploads/"
UPLOAD = "/v2/{name}/blobs/uploads/{upload_id}"
BLOB = "/v2/{name}/blobs/{digest}"


@dataclass
class Source:
    """An OCI image layout on disk, and what a registry should hold once it is pushed."""

    layout: Path
    digest: str  # what the tag names: the image manifest, or the index
    top: bytes  # its bytes
    blobs: frozenset[str]  # every digest in the layout: configs, layers, manifests, index
    layers: frozenset[str]
    configs: frozenset[str]
    is_index: bool

    @property
    def content(self) -> frozenset[str]:
        """Configs and layers: what the registry holds as blobs."""
        return self.layers | self.configs

    def oci(self, tag: str = "latest") -> str:
        return f"oci:{self.layout}:{tag}"


def build_source(directory: Path, kind: str, seed: str) -> Source:
    if kind == "image":
        images = [make_image(seed)]
        index = None
    else:
        images = [make_image(seed, arch="amd64"), make_image(seed, arch="arm64", layer_sizes=(3000,))]
        index = make_index(images)
    digest = write_layout(directory, images, index=index)
    layers = frozenset(sha256(layer) for img in images for layer in img.layers)
    configs = frozenset(sha256(img.config) for img in images)
    manifests = {img.digest for img in images} | ({sha256(index)} if index else set())
    top = index if index is not None else images[0].manifest
    return Source(directory, digest, top, layers | configs | manifests, layers, configs, index is not None)


def layout_contents(directory: Path) -> tuple[list[str], set[str]]:
    """(digests index.json names, digests of the blob files), each file checked against its name."""
    index = json.loads((directory / "index.json").read_text())
    named = [m["digest"] for m in index["manifests"]]
    files = set()
    for path in (directory / "blobs" / "sha256").iterdir():
        digest = "sha256:" + path.name
        assert sha256(path.read_bytes()) == digest, f"{path} does not hash to its name"
        files.add(digest)
    return named, files


def repo_scope(name: str, actions: str) -> str:
    return f"repository:{name}:{actions}"


FULL = [
    pytest.param(("postgresql", "token"), id="postgresql-token"),
    pytest.param(("postgresql", "none"), id="postgresql-none"),
]
# The full lifecycle on the S3 driver too: blob pulls streamed by the registry, or redirected to
# presigned URLs that skopeo follows to the object store.
ON_S3 = [
    pytest.param(("postgresql", "token", "s3"), id="postgresql-token-s3"),
    pytest.param(("postgresql", "none", "s3-redirect"), id="postgresql-none-s3-redirect"),
]
SMOKE = [
    pytest.param(("sqlite", "token"), id="sqlite-token"),
    pytest.param(("mysql", "token"), id="mariadb-token"),
]


@pytest.mark.parametrize("kind", ["image", "index"])
@pytest.mark.parametrize("registry", FULL + ON_S3, indirect=True)
def test_lifecycle(registry: Registry, skopeo: Skopeo, tmp_path: Path, kind: str) -> None:
    source = build_source(tmp_path / "source", kind, seed=f"lifecycle-{kind}")
    other = build_source(tmp_path / "other", "image", seed="bystander")
    repo, copy_repo = "library/app", "team/app-copy"
    push = registry.token(repo_scope(repo, "pull,push"))
    pull = registry.token(repo_scope(repo, "pull"))
    every = source.is_index

    # Push: three tags on one image, a fourth tag on another.
    for tag in ("latest", "v1", "v2"):
        skopeo.copy(source.oci(), registry.ref(f"{repo}:{tag}"), dest_token=push, all_images=every)
    skopeo.copy(other.oci(), registry.ref(f"{repo}:other"), dest_token=push)

    # Inspect: the exact bytes pushed, by tag and by digest.
    raw = skopeo.inspect_raw(registry.ref(f"{repo}:v1"), pull)
    assert raw == source.top, registry.explain("inspect --raw returned other bytes than were pushed")
    assert sha256(raw) == source.digest
    assert skopeo.inspect_raw(registry.ref(f"{repo}@{source.digest}"), pull) == source.top
    info = skopeo.inspect(registry.ref(f"{repo}:latest"), pull)
    assert info["Digest"] == source.digest, registry.explain(f"inspect says {info['Digest']}")
    assert info["Architecture"] == "amd64"
    assert sorted(info["RepoTags"]) == ["latest", "other", "v1", "v2"]

    # Pull back into a fresh layout: the same digest, the same blobs, byte for byte.
    pulled = tmp_path / "pulled"
    before = registry.request_counts()
    skopeo.copy(registry.ref(f"{repo}:latest"), f"oci:{pulled}:latest", src_token=pull, all_images=every)
    named, files = layout_contents(pulled)
    assert named == [source.digest], registry.explain(f"pulled {named}, pushed {source.digest}")
    assert files == source.blobs, registry.explain(f"blobs differ: {sorted(files ^ source.blobs)}")
    # Blob bytes came from the registry, or (redirect mode) from presigned URLs it handed out.
    served = registry.request_counts() - before
    expected = {"s3-redirect": "307"}.get(registry.storage, "200")
    assert served[("GET", BLOB, expected)] == len(source.content), registry.explain(
        f"requests: {dict(served)}"
    )

    # Registry-to-registry copy into another repository: every layer is mounted, not sent again.
    # (skopeo 1.9 always uploads configs: it only asks the target repository whether it has them.)
    before = registry.request_counts()
    skopeo.copy(
        registry.ref(f"{repo}:latest"),
        registry.ref(f"{copy_repo}:copied"),
        src_token=pull,
        dest_token=registry.token(repo_scope(copy_repo, "pull,push"), repo_scope(repo, "pull")),
        all_images=every,
    )
    served = registry.request_counts() - before
    mounted, uploaded = served[("POST", UPLOAD_START, "201")], served[("PUT", UPLOAD, "201")]
    expected = (
        f"the {len(source.layers)} layers mounted, at most the {len(source.configs)} configs uploaded; "
        f"requests: {dict(served)}"
    )
    assert mounted >= len(source.layers), registry.explain(expected)
    assert mounted + uploaded == len(source.content), registry.explain(expected)
    copy_pull = registry.token(repo_scope(copy_repo, "pull"))
    assert skopeo.inspect_raw(registry.ref(f"{copy_repo}:copied"), copy_pull) == source.top

    # List tags.
    tags = skopeo.list_tags(registry.ref(repo), pull)
    assert tags == ["latest", "other", "v1", "v2"], registry.explain(f"tags: {tags}")

    # Delete: refused without the delete action, even with push.
    if registry.auth == "token":
        refused = skopeo.fails(*skopeo.registry_args("delete", registry.ref(f"{repo}:v2"), push))
        assert skopeo.mentions(refused, "unauthorized", "denied"), skopeo.describe(refused)
        assert skopeo.inspect_raw(registry.ref(f"{repo}:v2"), pull) == source.top
    # skopeo deletes the manifest the tag names, so every tag on it goes; nothing else does.
    skopeo.delete(registry.ref(f"{repo}:v2"), registry.token(repo_scope(repo, "pull,delete")))
    for ref in (f"{repo}:latest", f"{repo}:v1", f"{repo}:v2", f"{repo}@{source.digest}"):
        failed = skopeo.fails(*skopeo.registry_args("inspect", registry.ref(ref), pull, "--raw"))
        assert skopeo.mentions(failed, "manifest unknown"), skopeo.describe(failed)
    assert skopeo.list_tags(registry.ref(repo), pull) == ["other"]
    assert skopeo.inspect_raw(registry.ref(f"{repo}:other"), pull) == other.top
    # The copy shares the blobs but is its own manifest and tag: untouched.
    assert skopeo.inspect_raw(registry.ref(f"{copy_repo}:copied"), copy_pull) == source.top
    again = tmp_path / "pulled-copy"
    skopeo.copy(registry.ref(f"{copy_repo}:copied"), f"oci:{again}:x", src_token=copy_pull, all_images=every)
    assert layout_contents(again) == ([source.digest], set(source.blobs))


DOCKER_TYPES = {
    "image": "application/vnd.docker.distribution.manifest.v2+json",
    "index": "application/vnd.docker.distribution.manifest.list.v2+json",
}


@pytest.mark.parametrize("kind", ["image", "index"])
@pytest.mark.parametrize("registry", FULL[:1], indirect=True)
def test_docker_format_roundtrip(registry: Registry, skopeo: Skopeo, tmp_path: Path, kind: str) -> None:
    """skopeo converts to Docker schema 2 (`--format v2s2`) on push; the registry keeps those bytes."""
    source = build_source(tmp_path / "source", kind, seed=f"docker-{kind}")
    repo = "library/docker"
    every = source.is_index
    digest_file = tmp_path / "pushed.digest"
    args = skopeo.copy_args(
        source.oci(),
        registry.ref(f"{repo}:1"),
        dest_token=registry.token(repo_scope(repo, "pull,push")),
        all_images=every,
    )
    skopeo.ok(args[0], "--format=v2s2", f"--digestfile={digest_file}", *args[1:])
    pushed = digest_file.read_text().strip()
    pull = registry.token(repo_scope(repo, "pull"))
    raw = skopeo.inspect_raw(registry.ref(f"{repo}:1"), pull)
    assert sha256(raw) == pushed, registry.explain(
        f"skopeo pushed {pushed}, the registry serves {sha256(raw)}"
    )
    assert json.loads(raw)["mediaType"] == DOCKER_TYPES[kind]
    # `dir:` keeps manifests as they are: the same bytes come back, and the same layers and configs.
    pulled = tmp_path / "pulled"
    skopeo.copy(registry.ref(f"{repo}@{pushed}"), f"dir:{pulled}", src_token=pull, all_images=every)
    assert (pulled / "manifest.json").read_bytes() == raw
    blobs = {"sha256:" + p.name for p in pulled.iterdir() if len(p.name) == 64}
    assert blobs == source.content, registry.explain(f"blobs differ: {sorted(blobs ^ source.content)}")
    for name in blobs:
        assert sha256((pulled / name.split(":", 1)[1]).read_bytes()) == name


@pytest.mark.parametrize("registry", SMOKE, indirect=True)
def test_push_pull_smoke(registry: Registry, skopeo: Skopeo, tmp_path: Path) -> None:
    source = build_source(tmp_path / "source", "image", seed=f"smoke-{registry.db_kind}")
    repo = "library/smoke"
    skopeo.copy(
        source.oci(), registry.ref(f"{repo}:1.0"), dest_token=registry.token(repo_scope(repo, "pull,push"))
    )
    pulled = tmp_path / "pulled"
    skopeo.copy(
        registry.ref(f"{repo}:1.0"), f"oci:{pulled}:1.0", src_token=registry.token(repo_scope(repo, "pull"))
    )
    named, files = layout_contents(pulled)
    assert (named, files) == ([source.digest], set(source.blobs)), registry.explain("pulled image differs")


# -- token mode: what is refused --------------------------------------------------------------

TOKEN_ONLY = [pytest.param(("postgresql", "token"), id="postgresql-token")]


def _refused_token(registry: Registry, case: str, repo: str) -> str | None:
    if case == "no-token":
        return None
    if case == "pull-only":
        return registry.token(repo_scope(repo, "pull"))
    if case == "other-repository":
        return registry.token(repo_scope("library/elsewhere", "pull,push"))
    if case == "untrusted-key":
        stranger = TokenIssuer(generate_private_key(), service="wharf-registry", issuer="wharf-token-issuer")
        return registry.token(repo_scope(repo, "pull,push"), issuer=stranger)
    if case == "expired":
        # The right access, but it ran out an hour ago (well past the verifier's leeway).
        assert registry.issuer is not None
        access = [Access("repository", repo, frozenset({"pull", "push"}))]
        token, _ = registry.issuer.issue("e2e-tester", access, 60, now=time.time() - 3600)
        return token
    raise AssertionError(case)


@pytest.mark.parametrize("registry", TOKEN_ONLY, indirect=True)
@pytest.mark.parametrize("case", ["no-token", "pull-only", "other-repository", "untrusted-key", "expired"])
def test_push_refused(registry: Registry, skopeo: Skopeo, tmp_path: Path, case: str) -> None:
    source = build_source(tmp_path / "source", "image", seed="refused")
    repo = "library/guarded"
    token = _refused_token(registry, case, repo)
    failed = skopeo.fails(*skopeo.copy_args(source.oci(), registry.ref(f"{repo}:latest"), dest_token=token))
    if token is None:
        # Challenged, skopeo went to the realm for a token, asking for what the challenge named.
        realm = registry.process.env["WHARF_EXTERNAL_URL"] + "/service/token"
        wanted = f"{realm}?scope=repository%3Alibrary%2Fguarded%3Apull%2Cpush&service=wharf-registry"
        assert skopeo.mentions(failed, wanted), skopeo.describe(failed)
    else:
        assert skopeo.mentions(failed, "unauthorized", "denied"), skopeo.describe(failed)
    # Nothing of it was stored: the repository does not exist.
    seen = registry.get(f"/v2/{repo}/tags/list", token=registry.token(repo_scope(repo, "pull")))
    assert seen.status == 404, registry.explain(
        f"tags list after a refused push: {seen.status} {seen.body!r}"
    )
    assert json.loads(seen.body)["errors"][0]["code"] == "NAME_UNKNOWN"


@pytest.mark.parametrize("registry", TOKEN_ONLY, indirect=True)
def test_request_without_token_is_challenged(registry: Registry, skopeo: Skopeo, tmp_path: Path) -> None:
    source = build_source(tmp_path / "source", "image", seed="challenge")
    repo = "library/app"
    skopeo.copy(
        source.oci(), registry.ref(f"{repo}:latest"), dest_token=registry.token(repo_scope(repo, "pull,push"))
    )
    realm = f'realm="{registry.process.env["WHARF_EXTERNAL_URL"]}/service/token"'
    for path, scope in (
        ("/v2/", None),
        (f"/v2/{repo}/manifests/latest", f'scope="repository:{repo}:pull"'),
        (f"/v2/{repo}/blobs/{sorted(source.content)[0]}", f'scope="repository:{repo}:pull"'),
        (f"/v2/{repo}/tags/list", f'scope="repository:{repo}:pull"'),
    ):
        answer = registry.get(path)
        assert answer.status == 401, registry.explain(f"GET {path} without a token: {answer.status}")
        challenge = answer.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer "), challenge
        assert realm in challenge, challenge
        assert 'service="wharf-registry"' in challenge, challenge
        assert scope is None or scope in challenge, challenge
        assert json.loads(answer.body)["errors"][0]["code"] == "UNAUTHORIZED"
    # With the right token, the same manifest is served; skopeo without one cannot read it.
    granted = registry.get(f"/v2/{repo}/manifests/latest", token=registry.token(repo_scope(repo, "pull")))
    assert granted.status == 200, registry.explain(f"GET with a pull token: {granted.status}")
    assert granted.body == source.top
    failed = skopeo.fails(*skopeo.registry_args("inspect", registry.ref(f"{repo}:latest"), None, "--raw"))
    token_url = (
        registry.process.env["WHARF_EXTERNAL_URL"] + "/service/token?scope=repository%3Alibrary%2Fapp%3Apull"
    )
    assert skopeo.mentions(failed, token_url), skopeo.describe(failed)


@pytest.mark.parametrize("registry", TOKEN_ONLY, indirect=True)
def test_mount_needs_pull_on_the_source(registry: Registry, skopeo: Skopeo, tmp_path: Path) -> None:
    """A token that cannot pull the source repository gets an upload, not a mount, and the copy works."""
    source = build_source(tmp_path / "source", "image", seed="mount-scope")
    secret, mine = "private/secret", "library/mine"
    skopeo.copy(
        source.oci(), registry.ref(f"{secret}:1"), dest_token=registry.token(repo_scope(secret, "pull,push"))
    )
    before = registry.request_counts()
    skopeo.copy(
        registry.ref(f"{secret}:1"),
        registry.ref(f"{mine}:1"),
        src_token=registry.token(repo_scope(secret, "pull")),
        dest_token=registry.token(repo_scope(mine, "pull,push")),  # no pull on the source
    )
    served = registry.request_counts() - before
    assert served[("POST", UPLOAD_START, "201")] == 0, registry.explain(
        f"mounted without pull: {dict(served)}"
    )
    assert served[("PUT", UPLOAD, "201")] == len(source.content), registry.explain(
        f"requests: {dict(served)}"
    )
    assert (
        skopeo.inspect_raw(registry.ref(f"{mine}:1"), registry.token(repo_scope(mine, "pull"))) == source.top
    )
