"""LdapDirectory against a real slapd: LDAPS, StartTLS and plain LDAP, search-then-bind, groups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.slapd import (
    BASE_DN,
    CONTRACTORS,
    GROUPS,
    PEOPLE,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USERS,
    Slapd,
    closed_port,
    group_dn,
    running_slapd,
    silent_listener,
)
from wharf_shared.auth.ldap import LdapDirectory, LdapError, LdapSettings, LdapUser, ldap_settings, same_dn

ALICE = USERS["alice"]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def directory() -> AsyncIterator[LdapDirectory]:
    directory = LdapDirectory(max_threads=2)
    yield directory
    directory.close()


@pytest.fixture
def ldaps(slapd: Slapd) -> LdapSettings:
    """LDAPS with our CA, verification on: the settings every other test varies."""
    return ldap_settings({**slapd.configuration("ldaps"), "ldap_timeout": 2, "unrelated_key": True})


async def test_ldaps_login_maps_the_entry(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    user = await directory.authenticate(ldaps, "alice", ALICE.password)
    assert user == LdapUser(
        dn=ALICE.dn, username="alice", email="alice@example.test", realname="Alice Liddell"
    )


async def test_uid_matching_ignores_case_and_returns_the_directory_spelling(
    directory: LdapDirectory, ldaps: LdapSettings
) -> None:
    user = await directory.authenticate(ldaps, "ALICE", ALICE.password)
    assert user is not None
    assert user.username == "alice"


async def test_attribute_mapping(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    mapped = replace(ldaps, ldap_uid="mail", ldap_email_attribute="mail", ldap_realname_attribute="sn")
    user = await directory.authenticate(mapped, "alice@example.test", ALICE.password)
    assert user == LdapUser(ALICE.dn, "alice@example.test", "alice@example.test", "Liddell")
    # a missing display-name attribute falls back to the username, a missing e-mail to ""
    bare = replace(ldaps, ldap_email_attribute="telephoneNumber", ldap_realname_attribute="displayName")
    assert await directory.authenticate(bare, "alice", ALICE.password) == LdapUser(
        ALICE.dn, "alice", "", "alice"
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong-Pass-1"),
        ("alice", ""),  # an empty password: an unauthenticated bind, which slapd would accept
        ("nobody", "Whatever-1"),
        ("", ALICE.password),
        # filter injection, with alice's right password: the value is escaped, nothing matches
        ("*", ALICE.password),
        ("alice*", ALICE.password),
        ("*)(uid=*", ALICE.password),
        ("alice)(|(uid=*", ALICE.password),
        ("twin", "Twin-pass-1"),  # two entries have uid=twin: refused, whichever password
        ("twin", "Twin-pass-2"),
        ("dave", "Wrong-pass-1"),
    ],
)
async def test_refusals(directory: LdapDirectory, ldaps: LdapSettings, username: str, password: str) -> None:
    assert await directory.authenticate(ldaps, username, password) is None


async def test_a_wildcard_username_matches_nobody(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    # even where the filter leaves one entry, "*" is a literal asterisk, not "whoever is there"
    only_carol = replace(ldaps, ldap_filter="(uid=carol)")
    assert await directory.authenticate(only_carol, "carol", USERS["carol"].password) is not None
    assert await directory.authenticate(only_carol, "*", USERS["carol"].password) is None
    assert await directory.authenticate(only_carol, "c*", USERS["carol"].password) is None


async def test_wrong_ca_refused_unless_verification_is_off(
    directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd
) -> None:
    wrong = replace(ldaps, ldap_ca_certificate=slapd.pki.other_ca_pem)
    assert await directory.authenticate(wrong, "alice", ALICE.password) is None
    # no CA given: the system's CAs do not know the test CA either
    assert (
        await directory.authenticate(replace(ldaps, ldap_ca_certificate=""), "alice", ALICE.password) is None
    )
    ping = await directory.ping(wrong)
    assert not ping.success
    assert "CERTIFICATE_VERIFY_FAILED" in ping.message
    unverified = replace(wrong, ldap_verify_cert=False)
    assert await directory.authenticate(unverified, "alice", ALICE.password) is not None


async def test_certificate_must_name_the_host(
    directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd
) -> None:
    localhost = replace(ldaps, ldap_url=ldaps.ldap_url.replace("127.0.0.1", "localhost"))
    assert await directory.authenticate(localhost, "alice", ALICE.password) is not None
    misnamed = replace(ldaps, ldap_url=slapd.misnamed_ldaps_url)
    assert await directory.authenticate(misnamed, "alice", ALICE.password) is None
    assert await directory.authenticate(replace(misnamed, ldap_verify_cert=False), "alice", ALICE.password)


async def test_starttls(directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd) -> None:
    starttls = replace(ldaps, ldap_url=slapd.ldap_url, ldap_starttls=True)
    assert await directory.authenticate(starttls, "alice", ALICE.password) is not None
    wrong = replace(starttls, ldap_ca_certificate=slapd.pki.other_ca_pem)
    assert await directory.authenticate(wrong, "alice", ALICE.password) is None
    assert (await directory.ping(wrong)).success is False


async def test_plain_ldap_and_anonymous_search(
    directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd
) -> None:
    plain = replace(ldaps, ldap_url=slapd.ldap_url.removeprefix("ldap://"), ldap_ca_certificate="")
    assert await directory.authenticate(plain, "bob", USERS["bob"].password) is not None
    anonymous = replace(plain, ldap_search_dn="", ldap_search_password="")
    assert await directory.authenticate(anonymous, "bob", USERS["bob"].password) is not None
    assert await directory.authenticate(anonymous, "bob", "Wrong-pass-1") is None


async def test_filter_base_and_scope(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    not_bob = replace(ldaps, ldap_filter="(!(uid=bob))")
    assert await directory.authenticate(not_bob, "bob", USERS["bob"].password) is None
    assert await directory.authenticate(not_bob, "alice", ALICE.password) is not None
    # a filter without its parentheses, as Harbor's forms often hold it
    bare = replace(ldaps, ldap_filter="objectClass=inetOrgPerson")
    assert await directory.authenticate(bare, "alice", ALICE.password) is not None
    people_only = replace(ldaps, ldap_base_dn=PEOPLE)
    assert await directory.authenticate(people_only, "dave", USERS["dave"].password) is None
    assert await directory.authenticate(people_only, "twin", "Twin-pass-1") is not None  # one twin left
    base_scope = replace(ldaps, ldap_scope=0)
    assert await directory.authenticate(base_scope, "alice", ALICE.password) is None
    one_level = replace(ldaps, ldap_base_dn=PEOPLE, ldap_scope=1)
    assert await directory.authenticate(one_level, "alice", ALICE.password) is not None
    broken = replace(ldaps, ldap_filter="(objectClass=inetOrgPerson")
    assert await directory.authenticate(broken, "alice", ALICE.password) is None


async def test_ping(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    assert (await directory.ping(ldaps)).success
    bad_password = await directory.ping(replace(ldaps, ldap_search_password="Wrong-pass-1"))
    assert not bad_password.success
    assert "invalidCredentials" in bad_password.message
    assert (
        await directory.authenticate(replace(ldaps, ldap_search_password="x"), "alice", ALICE.password)
        is None
    )
    missing_base = await directory.ping(replace(ldaps, ldap_base_dn="dc=nowhere,dc=test"))
    assert not missing_base.success
    assert "dc=nowhere,dc=test" in missing_base.message
    bad_url = await directory.ping(replace(ldaps, ldap_url="http://127.0.0.1:1"))
    assert not bad_url.success
    assert "ldap_url" in bad_url.message
    bad_ca = await directory.ping(replace(ldaps, ldap_ca_certificate="not a certificate"))
    assert not bad_ca.success
    assert "ldap_ca_certificate" in bad_ca.message
    closed = await directory.ping(replace(ldaps, ldap_url=f"ldaps://127.0.0.1:{closed_port()}"))
    assert not closed.success
    assert closed.message


async def test_search_users(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    assert await directory.search_users(ldaps, "carol") == [
        LdapUser(USERS["carol"].dn, "carol", "carol@example.test", "Carol Danvers")
    ]
    everyone = await directory.search_users(ldaps, "")
    assert sorted(u.username for u in everyone) == ["alice", "bob", "carol", "dave", "twin", "twin"]
    assert await directory.search_users(ldaps, "*)(uid=*") == []
    assert await directory.search_users(ldaps, "nobody") == []


async def test_search_groups(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    developers = await directory.search_groups(ldaps, "developers")
    assert [(g.dn, g.name) for g in developers] == [(group_dn("developers"), "developers")]
    assert await directory.search_groups(ldaps, group_dn("developers")) == developers
    assert await directory.search_groups(ldaps, "cn=gone," + GROUPS) == []
    assert sorted(g.name for g in await directory.search_groups(ldaps, "")) == [
        "admins",
        "developers",
        "empty",
        "ops",
    ]
    names_only = replace(ldaps, ldap_group_search_filter="objectClass=groupOfNames")
    assert await directory.search_groups(names_only, "ops") == []
    assert await directory.search_groups(ldaps, "*") == []  # escaped: no group is named "*"


async def test_group_members(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    members = await directory.group_members(ldaps, group_dn("developers"))
    assert [u.username for u in members] == ["alice", "bob"]
    assert members[0] == LdapUser(ALICE.dn, "alice", "alice@example.test", "Alice Liddell")
    assert [u.username for u in await directory.group_members(ldaps, group_dn("ops"))] == ["carol"]
    assert await directory.group_members(ldaps, group_dn("empty")) == []
    assert await directory.group_members(ldaps, "cn=gone," + GROUPS) == []


async def test_user_groups_by_memberof_and_by_member_search(
    directory: LdapDirectory, ldaps: LdapSettings
) -> None:
    by_memberof = await directory.user_groups(ldaps, ALICE.dn)
    assert [g.name for g in by_memberof] == ["admins", "developers"]
    by_search = replace(ldaps, ldap_group_membership_attribute="")
    assert await directory.user_groups(by_search, ALICE.dn) == by_memberof
    # groupOfUniqueNames has no memberOf from the overlay: the member search finds it
    assert [g.name for g in await directory.user_groups(by_search, USERS["carol"].dn)] == ["ops"]
    assert await directory.user_groups(ldaps, USERS["dave"].dn) == []
    admin_dn = "CN=Admins, OU=Groups, DC=example, DC=test"
    assert any(same_dn(g.dn, admin_dn) for g in by_memberof)


async def test_member_removed_at_run_time_is_no_longer_listed(
    directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd
) -> None:
    bob = USERS["bob"]
    by_search = replace(ldaps, ldap_group_membership_attribute="")
    slapd.remove_member("developers", bob.dn)
    try:
        assert [u.username for u in await directory.group_members(ldaps, group_dn("developers"))] == ["alice"]
        assert await directory.user_groups(ldaps, bob.dn) == []
        assert await directory.user_groups(by_search, bob.dn) == []
    finally:
        slapd.add_member("developers", bob.dn)
    assert [g.name for g in await directory.user_groups(ldaps, bob.dn)] == ["developers"]


async def test_hung_directory_refused_within_the_timeout(
    directory: LdapDirectory, ldaps: LdapSettings, slapd: Slapd
) -> None:
    fast = replace(ldaps, ldap_timeout=1)
    slapd.freeze()
    try:
        for settings in (fast, replace(fast, ldap_url=slapd.ldap_url, ldap_starttls=True)):
            started = time.monotonic()
            assert await directory.authenticate(settings, "alice", ALICE.password) is None
            assert time.monotonic() - started < 3.5
        with pytest.raises(LdapError):
            await directory.group_members(fast, group_dn("developers"))
    finally:
        slapd.thaw()
    with silent_listener() as port:
        started = time.monotonic()
        assert (
            await directory.authenticate(
                replace(fast, ldap_url=f"ldaps://127.0.0.1:{port}"), "alice", "x-Y-1"
            )
            is None
        )
        assert time.monotonic() - started < 3.5
    assert await directory.authenticate(ldaps, "alice", ALICE.password) is not None


async def test_stopped_directory_refused(directory: LdapDirectory, tmp_path: Path) -> None:
    with running_slapd(tmp_path / "slapd") as own:
        settings = LdapSettings(
            ldap_url=own.ldaps_url,
            ldap_search_dn=SEARCH_DN,
            ldap_search_password=SEARCH_PASSWORD,
            ldap_base_dn=BASE_DN,
            ldap_uid="uid",
            ldap_timeout=2,
            ldap_ca_certificate=own.pki.ca_pem,
            ldap_group_base_dn=GROUPS,
        )
        assert await directory.authenticate(settings, "alice", ALICE.password) is not None
        own.stop()
        started = time.monotonic()
        assert await directory.authenticate(settings, "alice", ALICE.password) is None
        assert time.monotonic() - started < 2
        with pytest.raises(LdapError):
            await directory.search_groups(settings, "developers")
        assert not (await directory.ping(settings)).success


def test_settings_from_runtime_values() -> None:
    assert ldap_settings(
        {"ldap_url": "ldaps://dir", "ldap_scope": None, "auth_mode": "ldap_auth"}
    ) == LdapSettings(ldap_url="ldaps://dir")


async def test_concurrent_logins_share_the_bounded_pool(
    directory: LdapDirectory, ldaps: LdapSettings
) -> None:
    people = [USERS[uid] for uid in ("alice", "bob", "carol")] * 4
    users = await asyncio.gather(*(directory.authenticate(ldaps, p.uid, p.password) for p in people))
    assert [u.username if u else None for u in users] == [p.uid for p in people]


async def test_bad_scope_refused(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    assert await directory.authenticate(replace(ldaps, ldap_scope=7), "alice", ALICE.password) is None
    with pytest.raises(LdapError, match="scope 7"):
        await directory.search_groups(replace(ldaps, ldap_group_search_scope=7), "developers")


async def test_group_admin(directory: LdapDirectory, ldaps: LdapSettings) -> None:
    by_search = replace(ldaps, ldap_group_membership_attribute="")
    for settings in (ldaps, by_search):
        assert await directory.is_group_admin(settings, ALICE.dn)
        assert not await directory.is_group_admin(settings, USERS["bob"].dn)
    assert not await directory.is_group_admin(replace(ldaps, ldap_group_admin_dn=""), ALICE.dn)


async def test_groups_and_members_stay_within_the_configured_bases(
    directory: LdapDirectory, ldaps: LdapSettings
) -> None:
    # a DN outside ldap_group_base_dn is no group of ours, even if the entry is one
    assert (
        await directory.search_groups(replace(ldaps, ldap_group_base_dn=CONTRACTORS), group_dn("admins"))
        == []
    )
    # members the user search cannot reach are left out: they could not log in
    assert (
        await directory.group_members(replace(ldaps, ldap_base_dn=CONTRACTORS), group_dn("developers")) == []
    )
    assert await directory.group_members(replace(ldaps, ldap_scope=1), group_dn("developers")) == []
    one_level = replace(ldaps, ldap_base_dn=PEOPLE, ldap_scope=1)
    assert [u.username for u in await directory.group_members(one_level, group_dn("developers"))] == [
        "alice",
        "bob",
    ]


async def test_sign_in_reads_the_groups_and_admin_flag_on_one_connection(
    directory: LdapDirectory, ldaps: LdapSettings
) -> None:
    anonymous = replace(ldaps, ldap_search_dn="", ldap_search_password="")
    by_search = replace(ldaps, ldap_group_membership_attribute="")
    for settings in (ldaps, anonymous, by_search):
        signed = await directory.sign_in(settings, "ALICE", ALICE.password)
        assert signed is not None
        assert signed.user.username == "alice"
        assert [g.name for g in signed.groups] == ["admins", "developers"]
        assert signed.admin is True
    bob = await directory.sign_in(ldaps, "bob", USERS["bob"].password)
    assert bob is not None
    assert (bob.admin, [g.name for g in bob.groups]) == (False, ["developers"])
    no_admin_group = await directory.sign_in(
        replace(ldaps, ldap_group_admin_dn=""), "bob", USERS["bob"].password
    )
    assert no_admin_group is not None
    assert no_admin_group.admin is None
    assert await directory.sign_in(ldaps, "alice", "wrong") is None
    assert await directory.sign_in(ldaps, "alice", "") is None
    assert await directory.sign_in(ldaps, "nobody", "x") is None
    # The groups unreadable (a filter the directory refuses): no sign-in, not one without groups.
    assert (
        await directory.sign_in(
            replace(ldaps, ldap_group_search_scope=7, ldap_group_membership_attribute=""),
            "alice",
            ALICE.password,
        )
        is None
    )
