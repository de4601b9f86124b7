"""Every identity, project visibility and registry operation, through the token service.

Each cell asks the token service for a token (with the caller's credentials, or none), then
tries the operation on the registry with it. The expected outcome is written out here from
the issue's table rather than computed from `wharf_shared.rbac`, so that the test checks the
permission table instead of repeating it. Refused operations must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa

from tests.service.token.conftest import ADMIN_PASSWORD, Suite
from tests.support.oci import OCI_MANIFEST, V2, digest_of, image_manifest
from wharf_shared import runtime
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.rbac import Role
from wharf_token.keys import RUNTIME

PASSWORD = "member-password-1"


@dataclass(frozen=True)
class Caller:
    name: str  # the row's label, and the username for logged-in callers
    role: Role | None = None
    sysadmin: bool = False
    logged_in: bool = True
    anonymous_access: bool = True


CALLERS = [
    Caller("sysadmin", sysadmin=True),
    Caller("projectadmin", Role.PROJECT_ADMIN),
    Caller("maintainer", Role.MAINTAINER),
    Caller("developer", Role.DEVELOPER),
    Caller("guest", Role.GUEST),
    Caller("limitedguest", Role.LIMITED_GUEST),
    Caller("nonmember"),
    Caller("anonymous-on", logged_in=False, anonymous_access=True),
    Caller("anonymous-off", logged_in=False, anonymous_access=False),
]

# Who may do what, from the issue: members per role; public projects add pull for every
# logged-in user and for anonymous callers while anonymous access is on.
ALLOWED: dict[str, set[str]] = {
    "pull": {"sysadmin", "projectadmin", "maintainer", "developer", "guest", "limitedguest"},
    "push": {"sysadmin", "projectadmin", "maintainer", "developer"},
    "delete": {"sysadmin", "projectadmin", "maintainer"},
}
PUBLIC_PULL = {"nonmember", "anonymous-on"}


def expected(caller: str, visibility: str, operation: str) -> bool:
    if operation == "pull" and visibility == "public" and caller in PUBLIC_PULL:
        return True
    return caller in ALLOWED[operation]


def cell_seed(caller: str, visibility: str, operation: str) -> str:
    return f"{caller}/{visibility}/{operation}"


async def try_push(v2: V2, name: str, seed: str) -> int:
    """Push config, layer and manifest; the first refusal's status, or 201."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = hashlib.sha256(seed.encode()).digest() * 64
    for blob in (config, layer):
        resp = await v2.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob)
        if resp.status != 201:
            return resp.status
    body = image_manifest(config, [layer])
    resp = await v2.push_manifest(name, "pushed", body, OCI_MANIFEST)
    return resp.status


async def rows_naming(db: Database, repository: str, blob_digests: list[str]) -> int:
    async with db.read() as conn:
        repos = (
            await conn.execute(sa.select(sa.func.count()).where(t.repository.c.name == repository))
        ).scalar_one()
        blobs = (
            await conn.execute(sa.select(sa.func.count()).where(t.blob.c.digest.in_(blob_digests)))
        ).scalar_one()
    return int(repos) + int(blobs)


async def test_every_role_on_every_operation(suite: Suite) -> None:
    ids: dict[str, int] = {}
    for caller in CALLERS:
        if caller.logged_in:
            ids[caller.name] = await suite.add_user(caller.name, PASSWORD, sysadmin=caller.sysadmin)
    members = {ids[c.name]: c.role for c in CALLERS if c.role is not None}
    await suite.add_project("pub", public=True, members=members)  # type: ignore[arg-type]
    await suite.add_project("priv", public=False, members=members)  # type: ignore[arg-type]

    admin = ("admin", ADMIN_PASSWORD)
    # The images each pull and delete cell works on, pushed by the admin.
    images: dict[tuple[str, str, str], tuple[str, bytes]] = {}
    for visibility, project in (("public", "pub"), ("private", "priv")):
        for caller in CALLERS:
            for operation in ("pull", "delete"):
                repo = f"{project}/{caller.name}-{operation}"
                token = await suite.token_for(f"repository:{repo}:pull,push", credentials=admin)
                v2 = V2(suite.registry, {"Authorization": f"Bearer {token}"})
                seed = cell_seed(caller.name, visibility, operation)
                images[(caller.name, visibility, operation)] = await v2.push_image(repo, "v1", seed=seed)

    db = Database(suite.settings.effective_database_url, pool_size=1)
    outcomes: dict[tuple[str, str, str], bool] = {}
    want: dict[tuple[str, str, str], bool] = {}
    try:
        for caller in CALLERS:
            async with db.transaction() as conn:
                await runtime.store(conn, anonymous_access=caller.anonymous_access)
            suite.token.app[RUNTIME].invalidate()
            credentials = (caller.name, PASSWORD) if caller.logged_in else None
            for visibility, project in (("public", "pub"), ("private", "priv")):
                for operation in ("pull", "push", "delete"):
                    cell = (caller.name, visibility, operation)
                    want[cell] = expected(*cell)
                    outcomes[cell] = await run_cell(
                        suite, db, caller, project, operation, credentials, images
                    )
    finally:
        await db.close()
    wrong = {
        cell: ("allowed" if outcomes[cell] else "refused") for cell in want if outcomes[cell] != want[cell]
    }
    assert not wrong, f"cells that went the wrong way: {wrong}"
    assert len(outcomes) == 9 * 2 * 3


async def run_cell(
    suite: Suite,
    db: Database,
    caller: Caller,
    project: str,
    operation: str,
    credentials: tuple[str, str] | None,
    images: dict[tuple[str, str, str], tuple[str, bytes]],
) -> bool:
    """True when the operation went through; asserts a refusal is 401/403 and changed nothing."""
    visibility = "public" if project == "pub" else "private"
    actions = {"pull": "pull", "push": "pull,push", "delete": "delete"}[operation]
    repo = f"{project}/{caller.name}-{operation}"
    token = await suite.token_for(f"repository:{repo}:{actions}", credentials=credentials)
    v2 = V2(suite.registry, {"Authorization": f"Bearer {token}"})
    if operation == "pull":
        _digest, body = images[(caller.name, visibility, operation)]
        resp = await v2.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        if resp.status == 200:
            assert await resp.read() == body
            return True
        assert resp.status in (401, 403), (caller, project, operation, resp.status)
        return False
    if operation == "push":
        seed = cell_seed(caller.name, visibility, operation)
        status = await try_push(v2, repo, seed)
        if status == 201:
            return True
        assert status in (401, 403), (caller, project, operation, status)
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        layer = hashlib.sha256(seed.encode()).digest() * 64
        assert await rows_naming(db, repo, [digest_of(config), digest_of(layer)]) == 0
        return False
    digest, _body = images[(caller.name, visibility, operation)]
    resp = await v2.request("DELETE", f"/v2/{repo}/manifests/{digest}")
    if resp.status == 202:
        async with db.read() as conn:
            left = (
                await conn.execute(sa.select(sa.func.count()).where(t.manifest.c.digest == digest))
            ).scalar_one()
        assert left == 0
        return True
    assert resp.status in (401, 403), (caller, project, operation, resp.status)
    admin_token = await suite.token_for(f"repository:{repo}:pull", credentials=("admin", ADMIN_PASSWORD))
    check = await V2(suite.registry, {"Authorization": f"Bearer {admin_token}"}).request(
        "GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert check.status == 200
    return False
