"""The portal's registries and replication pages, rendered by the ui in-process on each database:
what a system admin sees (never a registry's password), a refresh while an execution runs, the
newest execution per policy, and the 403 and 404 pages."""

from __future__ import annotations

import re

import pytest

from tests.service.ui.conftest import ADMIN_PASSWORD, ALICE_PASSWORD, Ui
from tests.service.ui.test_replication_executions import add_execution, policy
from tests.service.ui.test_replication_policies import add_registry
from wharf_shared.db import jobs


async def sign_in(ui: Ui, username: str, password: str) -> None:
    """A portal session; its cookie is sent by hand (it is Secure: the external URL is https)."""
    resp = await ui.client.post("/c/login", data={"principal": username, "password": password})
    assert resp.status == 200, await resp.text()
    ui.client.session.cookie_jar.clear()
    ui.client.session.headers["Cookie"] = f"sid={resp.cookies['sid'].value}"


async def html(ui: Ui, path: str, status: int = 200) -> str:
    resp = await ui.client.get(path, allow_redirects=False)
    text = await resp.text()
    assert resp.status == status, text[:2000]
    return text


async def test_registries_list_shows_the_user_never_the_password(ui: Ui) -> None:
    registry_id = await add_registry(ui, "peer-one", "docker-registry")
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    page = await html(ui, "/harbor/registries")
    assert "peer-one" in page
    assert "https://peer-one.example.test" in page
    assert 'data-api="/api/v2.0/registries/ping"' in page
    assert f'name="id" value="{registry_id}"' in page
    assert "unknown" in page  # not pinged yet
    assert ">u<" in page  # the username
    assert "*****" not in page
    assert 'value="p"' not in page
    edit = await html(ui, f"/harbor/registries?edit={registry_id}")
    assert f'data-method="PUT" data-api="/api/v2.0/registries/{registry_id}"' in edit
    assert 'value="peer-one"' in edit
    await html(ui, "/harbor/registries?edit=999999", 404)


async def test_policies_with_their_last_execution_and_the_policy_form(ui: Ui) -> None:
    policy_id = await policy(ui, "to-peer")
    idle_id = await policy(ui, "idle")
    await add_execution(ui, policy_id, jobs.ERROR, [(jobs.ERROR, "image")])
    newest, _ = await add_execution(ui, policy_id, jobs.SUCCESS, [(jobs.SUCCESS, "image")])
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    page = await html(ui, "/harbor/replications")
    assert f'href="/harbor/replications/{policy_id}">to-peer<' in page
    assert f'href="/harbor/replications/executions/{newest}"' in page
    assert "badge-succeed" in page
    assert "badge-failed" not in page
    assert f'href="/harbor/replications/{idle_id}">idle<' in page
    assert "Never run" in page
    # The direction select: each option is the JSON it merges into the body.
    assert 'data-type="json" data-spread' in page
    assert "Push to reg-to-peer" in page
    assert "Pull from reg-to-peer" in page


async def test_policy_page_refreshes_while_an_execution_runs(ui: Ui) -> None:
    policy_id = await policy(ui, "busy")
    running, (task_id,) = await add_execution(ui, policy_id, jobs.RUNNING, [(jobs.RUNNING, "image")])
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    page = await html(ui, f"/harbor/replications/{policy_id}")
    assert 'data-refresh="2"' in page
    assert f'data-method="PUT" data-api="/api/v2.0/replication/executions/{running}"' in page  # stop
    assert 'data-method="PUT" data-api="/api/v2.0/replication/policies/' in page  # edit
    execution = await html(ui, f"/harbor/replications/executions/{running}")
    assert 'data-refresh="2"' in execution
    assert re.search(r'id="execution-status"><span class="badge badge-inprogress">InProgress<', execution)
    log_link = f"/harbor/replications/executions/{running}/tasks/{task_id}/log"
    assert log_link in execution
    log = await html(ui, log_link)
    assert '<pre class="log"' in log
    assert "copying app0" in log
    assert "done app0" in log


async def test_ended_execution_does_not_refresh(ui: Ui) -> None:
    policy_id = await policy(ui, "done")
    ended, _ = await add_execution(ui, policy_id, jobs.SUCCESS, [(jobs.SUCCESS, "image")])
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    assert "data-refresh" not in await html(ui, f"/harbor/replications/executions/{ended}")
    assert "data-refresh" not in await html(ui, f"/harbor/replications/{policy_id}")


@pytest.mark.parametrize(
    "path",
    [
        "/harbor/replications/424242",
        "/harbor/replications/executions/424242",
        "/harbor/replications/abc",
        "/harbor/replications/executions/1/tasks/424242/log",
    ],
)
async def test_unknown_ids_are_404_pages(ui: Ui, path: str) -> None:
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    page = await html(ui, path, 404)
    assert "<h1>Not found</h1>" in page


@pytest.mark.parametrize(
    "path",
    [
        "/harbor/registries",
        "/harbor/replications",
        "/harbor/replications/1",
        "/harbor/replications/executions/1",
    ],
)
async def test_only_system_admins(ui: Ui, path: str) -> None:
    assert (await ui.client.get(path, allow_redirects=False)).status == 303  # to sign in
    await sign_in(ui, "alice", ALICE_PASSWORD)
    page = await html(ui, path, 403)
    assert "Only system administrators" in page
