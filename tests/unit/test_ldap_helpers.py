"""The pure parts of the LDAP backend: DN comparison, filters, scopes, the server address."""

from __future__ import annotations

import pytest

from wharf_shared.auth.ldap import LdapError, LdapSettings, _and, _in_scope, _server, same_dn

BASE = "dc=example,dc=test"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("cn=Admins,ou=groups,dc=example,dc=test", "CN=admins, OU=Groups, DC=Example, DC=test", True),
        ("cn=admins,ou=groups,dc=example,dc=test", "cn=admins,ou=groups,dc=example", False),
        ("uid=a\\,b,dc=example,dc=test", "UID=A\\,B,DC=example,DC=test", True),
    ],
)
def test_same_dn(a: str, b: str, same: bool) -> None:
    assert same_dn(a, b) is same


@pytest.mark.parametrize(
    ("user_filter", "expected"),
    [
        ("", "(uid=x)"),
        ("  ", "(uid=x)"),
        ("objectClass=person", "(&(objectClass=person)(uid=x))"),
        ("(&(objectClass=person)(!(ou=gone)))", "(&(&(objectClass=person)(!(ou=gone)))(uid=x))"),
    ],
)
def test_admin_filter_narrows_the_clause(user_filter: str, expected: str) -> None:
    assert _and(user_filter, "(uid=x)") == expected


@pytest.mark.parametrize(
    ("dn", "scope", "reached"),
    [
        (BASE, 0, True),
        (f"ou=people,{BASE}", 0, False),
        (f"ou=people,{BASE}", 1, True),
        (f"uid=a,ou=people,{BASE}", 1, False),
        (f"uid=a,ou=people,{BASE}", 2, True),
        ("uid=a,dc=elsewhere,dc=test", 2, False),
    ],
)
def test_scope_reach(dn: str, scope: int, reached: bool) -> None:
    assert _in_scope(dn, BASE, scope) is reached


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("ldaps://dir.example.test", "dir.example.test", 636, True),
        ("ldap://dir.example.test", "dir.example.test", 389, False),
        ("dir.example.test:3389", "dir.example.test", 3389, False),  # Harbor accepts a bare host
        ("LDAPS://127.0.0.1:1636", "127.0.0.1", 1636, True),
    ],
)
def test_server_address(url: str, host: str, port: int, tls: bool) -> None:
    server = _server(LdapSettings(ldap_url=url))
    assert (server.host, server.port, server.ssl) == (host, port, tls)


@pytest.mark.parametrize("url", ["", "http://dir", "ldap://", "ldap://dir:notaport"])
def test_bad_server_address(url: str) -> None:
    with pytest.raises(LdapError, match="ldap_url"):
        _server(LdapSettings(ldap_url=url))
