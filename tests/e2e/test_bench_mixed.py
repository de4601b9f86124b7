"""The bench's mixed-load client against real servers: every operation answered as the protocol
says, a wrong answer counted (not raised) with what to reproduce it by, and the `wharf-run`
target (`wharf run` on its defaults) logging clients in through its proxy."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.bench.http import Connection
from tests.bench.mixed import SHARED_REPO, WEIGHTS, Image, MixedClient, repo_names
from tests.bench.pushes import push_small, small_image
from tests.bench.targets import WHARF_RUN, Target, repo_access, start_wharf_run
from tests.e2e.conftest import Registry
from tests.support.memory import tree_memory

pytestmark = pytest.mark.e2e


def shared_images(conn: Connection, auth: dict[str, str], seed: str) -> list[Image]:
    images = [Image(SHARED_REPO, f"s{i}", small_image(f"shared/{seed}/{i}")) for i in range(3)]
    for image in images:
        push_small(conn, image.repo, image.tag, image.content, auth)
    return images


def registry_auth(registry: Registry, index: int) -> dict[str, str]:
    own, mounts = repo_names(index)
    token = registry.token(
        f"repository:{own}:pull,push,delete",
        f"repository:{mounts}:pull,push",
        f"repository:{SHARED_REPO}:pull,push",
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("registry", [("sqlite", "token")], indirect=True)
def test_every_operation_of_the_mix_without_error(registry: Registry) -> None:
    with Connection(registry.url) as conn:
        auth = registry_auth(registry, 0)
        client = MixedClient(conn, auth, 0, "e2e", shared_images(conn, auth, "e2e"), tag_delete=True)
        for _ in range(80):
            client.step()
        assert client.samples == [], registry.explain("the mixed load met unexpected answers")
        assert set(client.done) == set(WEIGHTS), client.done  # every kind ran
        assert sum(client.done.values()) == 80
        for direct in ("op_delete", "op_pull_tag", "op_pull_digest", "op_mount", "op_cancel"):
            if direct == "op_delete":
                client.op_push()
            getattr(client, direct)()


@pytest.mark.parametrize("registry", [("sqlite", "token")], indirect=True)
def test_a_wrong_answer_is_counted_with_the_request_and_the_run_goes_on(registry: Registry) -> None:
    with Connection(registry.url) as conn:
        auth = registry_auth(registry, 1)
        client = MixedClient(conn, auth, 1, "wrong", shared_images(conn, auth, "wrong"))
        client.op_push()
        (image,) = client.own
        # Deleted behind the client's back: the client still believes the tag is there.
        answer = conn.request("DELETE", f"/v2/{image.repo}/manifests/{image.digest}", headers=auth)
        assert answer.status == 202
        client.choose = lambda: "pull-tag"  # type: ignore[method-assign]
        client._pick = lambda: image  # type: ignore[method-assign]
        kind, ok = client.step()
        assert (kind, ok) == ("pull-tag", False)
        assert client.errors == {"pull-tag": 1}
        (sample,) = client.samples
        assert f"GET /v2/{image.repo}/manifests/{image.tag}: HTTP 404, expected 200" in sample
        assert "request id" in sample
        client._pick = lambda: client.shared[0]  # type: ignore[method-assign]
        assert client.step() == ("pull-tag", True)  # a fresh connection, the run goes on


@pytest.mark.slow
def test_wharf_run_target_logs_in_through_its_proxy(tmp_path: Path) -> None:
    with ExitStack() as stack:
        target: Target = start_wharf_run(stack, tmp_path, tmp_path / "logs")
        names = {name for name, _pid in target.profiled()}
        assert {f"{WHARF_RUN}-proxy", f"{WHARF_RUN}-registry", f"{WHARF_RUN}-token"} <= names
        processes = [m for root in target.memory_roots() for m in tree_memory(root).processes]
        assert "redis-server" in {m.name for m in processes}, processes  # its private Redis
        assert all(m.pss > 0 for m in processes)
        own, mounts = repo_names(2)
        auth = target.auth(  # tokens from `GET /service/token` through the proxy, as the bench user
            repo_access(own, "pull", "push", "delete"),
            repo_access(mounts, "pull", "push"),
            repo_access(SHARED_REPO, "pull", "push"),
        )
        with target.connect() as conn:
            client = MixedClient(conn, auth, 2, "run", shared_images(conn, auth, "run"), tag_delete=True)
            for _ in range(30):
                client.step()
        assert client.samples == [], target.process.tail()
        assert sum(client.done.values()) == 30
