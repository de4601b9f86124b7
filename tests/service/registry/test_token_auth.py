"""Token mode: the registry checks signature, issuer, audience, expiry and the `access` claim locally;
only completing a push asks the database whether the token's subject may still push."""

from __future__ import annotations

import os
import time

import jwt
import pytest
from aiohttp.test_utils import TestClient

from tests.support.oci import V2, digest_of, error_code
from wharf_registry import auth as registry_auth
from wharf_shared import rbac
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.tokens import (
    Access,
    TokenIssuer,
    generate_private_key,
    key_id,
    load_private_key,
    public_key_pem,
)
from wharf_token.refresh import RefreshTokens

REPO = "library/app"


@pytest.fixture(autouse=True)
async def alice(database_url: str) -> None:
    """The subject of the tests' tokens: a developer of `library` and `team`, as the token service
    would have found her when it issued them (pushes are re-checked against this)."""
    db = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            user = await accounts.create_user(conn, "alice", None)
            owner = await accounts.create_user(conn, "owner", None)
            for name in ("library", "team"):
                project = await projects.create_project(conn, name, owner.id)
                await projects.set_member(conn, project.id, user.id, rbac.Role.DEVELOPER)
            await projects.create_project(conn, "elsewhere", owner.id, public=True)
    finally:
        await db.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint(
    issuer: TokenIssuer, *scopes: tuple[str, str, str], lifetime: int = 300, now: float | None = None
) -> str:
    access = [Access(t, n, frozenset(a.split(","))) for t, n, a in scopes]
    token, _ = issuer.issue("alice", access, lifetime, now=now)
    return token


async def test_anonymous_request_gets_the_challenge(token_client: TestClient) -> None:
    resp = await token_client.get(f"/v2/{REPO}/manifests/latest")
    assert resp.status == 401
    assert await error_code(resp) == "UNAUTHORIZED"
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="http://registry.test/service/token",service="wharf-registry",'
        f'scope="repository:{REPO}:pull"'
    )
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"

    resp = await token_client.post(f"/v2/{REPO}/blobs/uploads/")
    assert resp.status == 401
    assert f'scope="repository:{REPO}:pull,push"' in resp.headers["WWW-Authenticate"]

    resp = await token_client.get("/v2/")
    assert resp.status == 401
    assert "scope=" not in resp.headers["WWW-Authenticate"]


async def test_base_endpoint_accepts_any_valid_token(token_client: TestClient, issuer: TokenIssuer) -> None:
    resp = await token_client.get("/v2/", headers=bearer(mint(issuer)))
    assert resp.status == 200


async def test_push_and_pull_with_granted_actions(token_client: TestClient, issuer: TokenIssuer) -> None:
    push = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull,push"))))
    _digest, body = await push.push_image(REPO, "v1")
    pull = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull"))))
    resp = await pull.request("GET", f"/v2/{REPO}/manifests/v1")
    assert resp.status == 200
    assert await resp.read() == body


async def test_pull_only_token_cannot_push_and_writes_nothing(
    token_client: TestClient, issuer: TokenIssuer
) -> None:
    pull_only = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull"))))
    data = b"not allowed"
    resp = await pull_only.request(
        "POST", f"/v2/{REPO}/blobs/uploads/", params={"digest": digest_of(data)}, data=data
    )
    assert resp.status == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    admin = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull,push,delete"))))
    resp = await admin.request("HEAD", f"/v2/{REPO}/blobs/{digest_of(data)}")
    assert resp.status == 404


async def test_token_for_another_repository_is_refused(token_client: TestClient, issuer: TokenIssuer) -> None:
    other = V2(token_client, bearer(mint(issuer, ("repository", "library/other", "pull,push,delete"))))
    resp = await other.request("GET", f"/v2/{REPO}/tags/list")
    assert resp.status == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_delete_needs_the_delete_action(token_client: TestClient, issuer: TokenIssuer) -> None:
    pusher = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull,push"))))
    digest, _ = await pusher.push_image(REPO, "v1")
    resp = await pusher.request("DELETE", f"/v2/{REPO}/manifests/{digest}")
    assert resp.status == 401
    assert f'scope="repository:{REPO}:delete"' in resp.headers["WWW-Authenticate"]
    deleter = V2(token_client, bearer(mint(issuer, ("repository", REPO, "delete"))))
    resp = await deleter.request("DELETE", f"/v2/{REPO}/manifests/{digest}")
    assert resp.status == 202


async def test_catalog_needs_registry_catalog(token_client: TestClient, issuer: TokenIssuer) -> None:
    resp = await token_client.get("/v2/_catalog", headers=bearer(mint(issuer, ("repository", REPO, "pull"))))
    assert resp.status == 401
    assert 'scope="registry:catalog:*"' in resp.headers["WWW-Authenticate"]
    resp = await token_client.get("/v2/_catalog", headers=bearer(mint(issuer, ("registry", "catalog", "*"))))
    assert resp.status == 200


async def test_mount_needs_pull_on_the_source(token_client: TestClient, issuer: TokenIssuer) -> None:
    source = V2(token_client, bearer(mint(issuer, ("repository", "team/secret", "pull,push"))))
    blob = b"secret layer"
    digest = await source.push_blob("team/secret", blob)
    # Push rights on the target but none on the source: a plain upload session, no mount.
    target = V2(token_client, bearer(mint(issuer, ("repository", REPO, "pull,push"))))
    resp = await target.request(
        "POST", f"/v2/{REPO}/blobs/uploads/", params={"mount": digest, "from": "team/secret"}
    )
    assert resp.status == 202
    resp = await target.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
    assert resp.status == 404
    both = V2(
        token_client,
        bearer(mint(issuer, ("repository", REPO, "pull,push"), ("repository", "team/secret", "pull"))),
    )
    resp = await both.request(
        "POST", f"/v2/{REPO}/blobs/uploads/", params={"mount": digest, "from": "team/secret"}
    )
    assert resp.status == 201


def _foreign_issuer(settings: Settings, **overrides: str) -> TokenIssuer:
    return TokenIssuer(
        generate_private_key(),
        service=overrides.get("service", settings.token.service),
        issuer=overrides.get("issuer", settings.token.issuer),
    )


@pytest.mark.parametrize(
    "case",
    ["expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "unknown_key", "tampered", "garbage"],
)
async def test_bad_tokens_are_refused(
    case: str, token_client: TestClient, issuer: TokenIssuer, token_settings: Settings
) -> None:
    scope = ("repository", REPO, "pull,push")
    if case == "expired":
        token = mint(issuer, scope, lifetime=60, now=time.time() - 3600)
    elif case == "not_yet_valid":
        token = mint(issuer, scope, now=time.time() + 3600)
    elif case == "wrong_audience":
        token = TokenIssuer(issuer._key, service="someone-else", issuer=issuer.issuer).issue(
            "alice", [Access(*scope[:2], frozenset({"pull"}))], 300
        )[0]
    elif case == "wrong_issuer":
        token = TokenIssuer(issuer._key, service=issuer.service, issuer="mallory").issue(
            "alice", [Access(*scope[:2], frozenset({"pull"}))], 300
        )[0]
    elif case == "unknown_key":
        token = mint(_foreign_issuer(token_settings), scope)
    elif case == "tampered":
        # A genuine signature over another repository's grant, with this repository's claims swapped in.
        head, _payload, signature = mint(issuer, ("repository", "library/other", "pull")).split(".")
        forged_payload = mint(issuer, scope).split(".")[1]
        token = f"{head}.{forged_payload}.{signature}"
    else:
        token = "not-a-jwt"
    resp = await token_client.get(f"/v2/{REPO}/tags/list", headers=bearer(token))
    assert resp.status == 401, case
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_key_rotation_by_adding_to_the_bundle(
    token_client: TestClient, token_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_auth, "_RELOAD_CHECK_SECONDS", 0.0)
    new_key = generate_private_key()
    new_issuer = TokenIssuer(
        new_key, service=token_settings.token.service, issuer=token_settings.token.issuer
    )
    token = mint(new_issuer, ("repository", REPO, "pull"))
    resp = await token_client.get("/v2/", headers=bearer(token))
    assert resp.status == 401
    bundle = token_settings.token_keys_path
    bundle.write_bytes(bundle.read_bytes() + public_key_pem(new_key.public_key()))
    # The registry notices the changed file on its next check and trusts the new key.
    stat = bundle.stat()
    os.utime(bundle, (stat.st_atime, stat.st_mtime + 5))
    resp = await token_client.get("/v2/", headers=bearer(token))
    assert resp.status == 200


@pytest.mark.parametrize("audience", ["own", "registry's"])
async def test_a_refresh_token_is_not_a_bearer_token(
    audience: str, token_client: TestClient, token_settings: Settings
) -> None:
    """A 30-day refresh token, signed with the registry token's key: refused on its audience, and
    (as issued before refresh tokens had their own) on its `typ`."""
    refresh = RefreshTokens(
        load_private_key(token_settings.token_private_key_path),
        service=token_settings.token.service,
        issuer=token_settings.token.issuer,
        lifetime=30 * 24 * 3600,
    )
    token = refresh.issue(1, "alice", "0" * 32)
    if audience == "registry's":
        claims = jwt.decode(token, options={"verify_signature": False})
        key = load_private_key(token_settings.token_private_key_path)
        token = jwt.encode(
            {**claims, "aud": token_settings.token.service},
            key,  # type: ignore[arg-type]
            algorithm="ES256",
            headers={"kid": key_id(key.public_key())},
        )
    for path in ("/v2/", f"/v2/{REPO}/tags/list"):
        resp = await token_client.get(path, headers=bearer(token))
        assert resp.status == 401, (path, await resp.text())
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("subject", "repository"),
    [
        ("", REPO),  # anonymous never pushes, whatever a token says
        ("mallory", REPO),  # no such user
        ("alice", "elsewhere/app"),  # public, but not a member
        ("alice", "nowhere/app"),  # no such project
        ("alice", "toplevel"),  # no project at all
    ],
)
async def test_completing_a_push_rechecks_the_subject(
    token_client: TestClient, issuer: TokenIssuer, subject: str, repository: str
) -> None:
    """A token that grants push to a subject the database does not let push: the blob and the
    manifest are refused (403 DENIED) when they would become visible, not before."""
    access = [Access("repository", repository, frozenset({"pull", "push"}))]
    v2 = V2(token_client, bearer(issuer.issue(subject, access, 300)[0]))
    resp = await v2.request("POST", f"/v2/{repository}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    data = b"a layer"
    resp = await v2.request("PUT", resp.headers["Location"], params={"digest": digest_of(data)}, data=data)
    assert (resp.status, await error_code(resp)) == (403, "DENIED")
    resp = await v2.request(
        "PUT", f"/v2/{repository}/manifests/v1", data=b"{}", headers={"Content-Type": "x"}
    )
    assert (resp.status, await error_code(resp)) == (403, "DENIED")
    admin = V2(token_client, bearer(issuer.issue("alice", access, 300)[0]))
    assert (await admin.request("HEAD", f"/v2/{repository}/blobs/{digest_of(data)}")).status == 404
