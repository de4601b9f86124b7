"""skopeo logged in as each kind of user: the registry challenges, skopeo asks the token
service, and the user's project role decides.

Two fronts: the registry and token processes on their own ports (the challenge's realm names
the token service), and the whole suite behind the proxy (one address for everything, as
`docker login host` sees it). One representative row per role, on PostgreSQL: a private project
`team` where each user holds their role, and the public `library`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, make_index, sha256, write_layout
from tests.support import backends
from tests.support.processes import registry_process, token_process
from tests.support.suite import init_site, start_suite
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
PASSWORD = "e2e-member-password"
MEMBERS = {
    "projectadmin": Role.PROJECT_ADMIN,
    "maintainer": Role.MAINTAINER,
    "developer": Role.DEVELOPER,
    "guest": Role.GUEST,
    "limitedguest": Role.LIMITED_GUEST,
}
DENIED = ("unauthorized", "denied", "authentication required")


@dataclass
class Site:
    front: str  # "direct" or "proxy"
    address: str  # host:port the clients use
    registry: Registry  # the registry process (its log explains failures)
    layout: Path  # an OCI layout holding one image, tag `latest`
    index_layout: Path  # a two-platform index, tag `latest`
    home: Path
    logged_in: dict[str, Skopeo] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        return f"docker://{self.address}/{name}"


async def populate(settings: Settings) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            team = await projects.create_project(conn, "team", admin.id, public=False)
            await accounts.create_user(conn, "root", hash_password(PASSWORD), sysadmin=True)
            await accounts.create_user(conn, "outsider", hash_password(PASSWORD))
            for name, role in MEMBERS.items():
                user = await accounts.create_user(conn, name, hash_password(PASSWORD))
                await projects.set_member(conn, team.id, user.id, role)
    finally:
        await db.close()


@pytest.fixture(scope="module", params=["direct", "proxy"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    front = str(request.param)
    tmp = tmp_path_factory.mktemp(f"token-roles-{front}")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        layout, index_layout = tmp / "layout", tmp / "index"
        write_layout(layout, [make_image("token-roles")])
        images = [make_image("multi", arch="amd64"), make_image("multi", arch="arm64", layer_sizes=(3000,))]
        write_layout(index_layout, images, index=make_index(images))
        if front == "proxy":
            suite = start_suite(
                tmp, database_url, redis_url, admin_password=ADMIN_PASSWORD, populate=populate
            )
            registry = Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None)
            site = Site(front, suite.address, registry, layout, index_layout, tmp / "skopeo")
            stop = suite.stop
        else:
            site, stop = start_direct(tmp, database_url, redis_url, layout, index_layout)
        try:
            seed(site)
            yield site
        finally:
            stop()


def start_direct(
    tmp: Path, database_url: str, redis_url: str, layout: Path, index_layout: Path
) -> tuple[Site, Callable[[], None]]:
    """Registry and token service each on its own port; the challenge's realm names the latter."""
    data_dir = init_site(tmp, database_url, redis_url, admin_password=ADMIN_PASSWORD, populate=populate)
    env = {"WHARF_DATA_DIR": str(data_dir), "WHARF_DATABASE_URL": database_url, "WHARF_REDIS_URL": redis_url}
    token = token_process(env, tmp / "logs").start()
    registry_env = {
        **env,
        "WHARF_REGISTRY__AUTH": "token",
        "WHARF_REGISTRY__REALM": f"{token.url}/service/token",
    }
    process = registry_process(registry_env, tmp / "logs")
    try:
        process.start()
    except BaseException:
        token.stop()
        raise

    def stop() -> None:
        process.stop()
        token.stop()

    registry = Registry(process, "token", "postgresql", data_dir, None)
    return Site("direct", registry.address, registry, layout, index_layout, tmp / "skopeo"), stop


def tool(site: Site, user: str | None) -> Skopeo:
    """skopeo with a home of its own per user, logged in (`skopeo login`) unless anonymous."""
    name = user or "anonymous"
    if name not in site.logged_in:
        skopeo = make_skopeo(site.registry, site.home / name)
        if user is not None:
            password = ADMIN_PASSWORD if user == "admin" else PASSWORD
            skopeo.ok("login", "--tls-verify=false", "-u", user, "-p", password, site.address)
        site.logged_in[name] = skopeo
    return site.logged_in[name]


def seed(site: Site) -> None:
    """What the pull and delete rows work on, pushed by the admin."""
    skopeo = tool(site, "admin")
    targets = ["team/base:1", "library/base:1"] + [f"team/{user}-del:1" for user in ROWS]
    for target in targets:
        skopeo.ok("copy", "--dest-tls-verify=false", f"oci:{site.layout}:latest", site.ref(target))


def pushes(site: Site, user: str | None, repo: str) -> bool:
    skopeo = tool(site, user)
    result = skopeo.run("copy", "--dest-tls-verify=false", f"oci:{site.layout}:latest", site.ref(f"{repo}:1"))
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
        # Nothing was written: the admin finds no such repository.
        admin = tool(site, "admin")
        check = admin.run("list-tags", "--tls-verify=false", site.ref(repo))
        assert check.returncode != 0, admin.describe(check)
        assert admin.mentions(check, "name unknown", "not found"), admin.describe(check)
    return result.returncode == 0


def pulls(site: Site, user: str | None, ref: str) -> bool:
    skopeo = tool(site, user)
    dest = site.home / f"pulled-{user}-{ref.replace('/', '_').replace(':', '_')}"
    result = skopeo.run("copy", "--src-tls-verify=false", site.ref(ref), f"dir:{dest}")
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
    return result.returncode == 0


def deletes(site: Site, user: str | None, ref: str) -> bool:
    skopeo = tool(site, user)
    result = skopeo.run("delete", "--tls-verify=false", site.ref(ref))
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
        tool(site, "admin").ok("inspect", "--raw", "--tls-verify=false", site.ref(ref))  # still there
    return result.returncode == 0


# user → (push to team, pull from team, delete in team, pull from library, push to library)
ROWS = {
    "root": (True, True, True, True, True),
    "projectadmin": (True, True, True, True, False),
    "maintainer": (True, True, True, True, False),
    "developer": (True, True, False, True, False),
    "guest": (False, True, False, True, False),
    "limitedguest": (False, True, False, True, False),
    "outsider": (False, False, False, True, False),
    "anonymous": (False, False, False, True, False),
}


@pytest.mark.parametrize("user", list(ROWS))
def test_role_row(site: Site, user: str) -> None:
    login = None if user == "anonymous" else user
    outcome = (
        pushes(site, login, f"team/{user}-pushed"),
        pulls(site, login, "team/base:1"),
        deletes(site, login, f"team/{user}-del:1"),
        pulls(site, login, "library/base:1"),
        pushes(site, login, f"library/{user}-pushed"),
    )
    assert outcome == ROWS[user]


def test_wrong_password_is_refused(site: Site) -> None:
    skopeo = make_skopeo(site.registry, site.home / "wrong")
    result = skopeo.run(
        "login", "--tls-verify=false", "-u", "developer", "-p", "not-the-password", site.address
    )
    assert result.returncode != 0
    assert skopeo.mentions(result, *DENIED, "invalid username/password"), skopeo.describe(result)


def test_multi_arch_index(site: Site, tmp_path: Path) -> None:
    """A developer pushes a two-platform index; a guest pulls all of it back, byte for byte."""
    developer, guest = tool(site, "developer"), tool(site, "guest")
    developer.ok(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{site.index_layout}:latest",
        site.ref("team/multi:1"),
    )
    pushed = json.loads((site.index_layout / "index.json").read_text())["manifests"][0]["digest"]
    raw = guest.ok("inspect", "--raw", "--tls-verify=false", site.ref("team/multi:1")).stdout
    assert sha256(raw) == pushed
    pulled = tmp_path / "pulled"
    guest.ok("copy", "--all", "--src-tls-verify=false", site.ref(f"team/multi@{pushed}"), f"oci:{pulled}:x")
    source = {p.name for p in (site.index_layout / "blobs" / "sha256").iterdir()}
    back = {p.name for p in (pulled / "blobs" / "sha256").iterdir()}
    assert back == source
