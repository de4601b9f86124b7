"""`/api/v2.0/configurations` for the identity modes: every key kind set and read back, secrets
stored encrypted and never shown, bad values a 400 naming the key, and `auth_mode` taking
every mode Wharf has while admin is the only user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN, Ui
from tests.service.ui.test_configurations import drop_alice, error
from tests.support.tls import self_signed
from wharf_shared.db import tables as t
from wharf_shared.keys import RUNTIME
from wharf_shared.runtime import AUTH_MODES, SECRET_KEYS
from wharf_shared.secrets import SecretBox

URL = "/api/v2.0/configurations"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # key/value rows: the backends are covered by test_configurations


@pytest.fixture
def pem(tmp_path: Path) -> str:
    cert, _key = self_signed(tmp_path)
    return cert.read_text()


async def stored(ui: Ui, key: str) -> Any:
    async def go(conn: Any) -> Any:
        query = sa.select(t.configuration.c.value).where(t.configuration.c.key == key)
        return (await conn.execute(query)).scalar()

    return await ui.db_call(go)


async def test_each_kind_of_key_is_set_and_read_back(ui: Ui, pem: str) -> None:
    change = {
        "ldap_url": "ldaps://ldap.corp.test:636",
        "ldap_base_dn": "ou=people,dc=corp,dc=test",
        "ldap_filter": "(objectClass=person)",
        "ldap_scope": 1,
        "ldap_timeout": 9,
        "ldap_verify_cert": False,
        "ldap_starttls": True,
        "ldap_ca_certificate": pem,
        "http_authproxy_endpoint": "https://oa.corp.test/api/login",
        "http_authproxy_timeout": 3,
        "http_authproxy_email_field": "user.mail",
        "http_authproxy_admin_usernames": "root,ops",
        "oidc_endpoint": "https://sso.corp.test/realms/corp",
        "oidc_auto_onboard": True,
        "oidc_extra_redirect_parms": '{"prompt": "login"}',
        "cas_url": "https://cas.corp.test/cas",
        "cas_version": "2.0",
        "cmdb_url": "http://cmdb.corp.test/projects.json",
        "cmdb_schedule": "0 0 * * * *",
        "ldap_group_sync_schedule": "0 */15 * * * *",
    }
    resp = await ui.client.put(URL, json=change, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert {k: body[k] for k in change} == {k: {"value": v, "editable": True} for k, v in change.items()}
    seen = await ui.client.app[RUNTIME].get()  # type: ignore[index]
    assert seen.ldap.ldap_scope == 1
    assert seen.http_auth.http_authproxy_timeout == 3
    assert seen.cas.cas_version == "2.0"


async def test_secrets_are_stored_encrypted_and_never_shown(ui: Ui) -> None:
    secrets = {
        "ldap_search_password": "Bind-pw-1",
        "oidc_client_secret": "oidc-s3cret",
        "cmdb_auth_header": "Bearer t0k",
    }
    resp = await ui.client.put(URL, json=secrets, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    raw = await (await ui.client.get(URL, headers=ADMIN)).text()
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert not SECRET_KEYS & set(body)
    box = SecretBox(ui.settings.secret_key_bytes())
    seen = await ui.client.app[RUNTIME].get()  # type: ignore[index]
    for key, plain in secrets.items():
        assert plain not in raw
        ciphertext = await stored(ui, key)
        assert plain not in ciphertext
        assert box.decrypt(ciphertext.strip('"')) == plain
    assert box.decrypt(seen.ldap.ldap_search_password) == "Bind-pw-1"
    # Audited by name, never by value; "" clears one.
    (event,) = await ui.events("configuration.update")
    assert event["data"]["keys"] == sorted(secrets)
    resp = await ui.client.put(URL, json={"oidc_client_secret": ""}, headers=ADMIN)
    assert resp.status == 200
    assert await stored(ui, "oidc_client_secret") == '""'


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"ldap_url": "http://ldap.corp.test"}, "ldap_url"),
        ({"ldap_url": "ldaps://"}, "ldap_url"),
        ({"ldap_scope": 3}, "ldap_scope"),
        ({"ldap_scope": "2"}, "ldap_scope"),
        ({"ldap_group_search_scope": -1}, "ldap_group_search_scope"),
        ({"ldap_timeout": 0}, "ldap_timeout"),
        ({"ldap_verify_cert": "yes"}, "ldap_verify_cert"),
        ({"ldap_filter": "(uid=a"}, "ldap_filter"),
        ({"ldap_ca_certificate": "not a certificate"}, "ldap_ca_certificate"),
        ({"ldap_search_password": 1234}, "ldap_search_password"),
        ({"http_authproxy_endpoint": "ftp://oa.corp.test"}, "http_authproxy_endpoint"),
        ({"http_authproxy_endpoint": "oa.corp.test/login"}, "http_authproxy_endpoint"),
        ({"http_authproxy_endpoint": "https://oa.corp.test:port/"}, "http_authproxy_endpoint"),
        (
            {"http_authproxy_server_certificate": "-----BEGIN CERTIFICATE-----\nxx"},
            "http_authproxy_server_certificate",
        ),
        ({"http_authproxy_timeout": 301}, "http_authproxy_timeout"),
        ({"http_authproxy_email_field": "user..mail"}, "http_authproxy_email_field"),
        ({"oidc_endpoint": "javascript:alert(1)"}, "oidc_endpoint"),
        ({"oidc_extra_redirect_parms": "[1]"}, "oidc_extra_redirect_parms"),
        ({"oidc_extra_redirect_parms": '{"a": 1}'}, "oidc_extra_redirect_parms"),
        ({"cas_version": "1.0"}, "cas_version"),
        ({"cas_url": "https://cas.corp.test/" + "x" * 2000}, "cas_url"),
        ({"cmdb_schedule": "every hour"}, "cmdb_schedule"),
        ({"ldap_group_sync_schedule": "0 * * * *"}, "ldap_group_sync_schedule"),  # five fields
        ({"cmdb_url": "file:///etc/passwd"}, "cmdb_url"),
        ({"auth_mode": "uaa_auth"}, "auth_mode"),
    ],
)
async def test_bad_values_are_400_naming_the_key(ui: Ui, body: dict[str, Any], named: str) -> None:
    resp = await ui.client.put(URL, json={"ldap_timeout": 7, **body}, headers=ADMIN)
    message = await error(resp, 400, "BAD_REQUEST")
    assert named in message
    got = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert got["ldap_timeout"]["value"] == 5  # nothing of a refused body is stored


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_every_mode_is_taken_while_admin_is_alone(ui: Ui, mode: str) -> None:
    await drop_alice(ui)
    resp = await ui.client.put(URL, json={"auth_mode": mode}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["auth_mode"] == {"value": mode, "editable": True}


async def test_the_mode_stays_once_other_users_exist(ui: Ui) -> None:
    resp = await ui.client.put(URL, json={"auth_mode": "http_auth"}, headers=ADMIN)
    message = await error(resp, 400, "BAD_REQUEST")
    assert "auth_mode" in message
