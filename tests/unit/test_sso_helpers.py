"""The pure parts of the OIDC and CAS clients: PKCE, scopes, Harbor's claim rules, CAS answers."""

from __future__ import annotations

import pytest

from wharf_shared.auth.cas import CasError, cas_settings, parse_validation
from wharf_shared.auth.oidc import (
    AuthorizationRequest,
    OidcError,
    code_challenge,
    oidc_settings,
    scopes,
    user_from_claims,
)


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("openid,offline_access", ["openid", "offline_access"]),
        ("profile, email", ["openid", "profile", "email"]),
        ("email,openid,email", ["openid", "email"]),
        ("", ["openid"]),
    ],
)
def test_scopes_always_start_with_openid(value: str, expected: list[str]) -> None:
    assert scopes(oidc_settings({"oidc_scope": value})) == expected


def test_settings_take_known_keys_and_a_json_object_for_extra_parameters() -> None:
    settings = oidc_settings(
        {"oidc_endpoint": "https://idp", "oidc_extra_redirect_parms": {"prompt": "login"}, "ldap_url": "x"}
    )
    assert settings.oidc_endpoint == "https://idp"
    assert settings.oidc_extra_redirect_parms == '{"prompt": "login"}'


def test_authorization_request_round_trips_through_a_session() -> None:
    request = AuthorizationRequest("https://idp/authorize?x", "st", "no", "ver", "https://w/c/oidc/callback")
    assert AuthorizationRequest.from_dict(request.as_dict()) == request
    partial = request.as_dict()
    del partial["nonce"]
    for damaged in ({}, partial):
        with pytest.raises(OidcError, match="no login in progress"):
            AuthorizationRequest.from_dict(damaged)


CLAIMS = {"iss": "https://idp", "sub": "s1", "name": "Alice L", "preferred_username": "alice", "email": "a@x"}


def test_username_from_the_user_claim_else_name() -> None:
    assert user_from_claims(oidc_settings({}), CLAIMS).username == "Alice L"
    assert (
        user_from_claims(oidc_settings({"oidc_user_claim": "preferred_username"}), CLAIMS).username == "alice"
    )
    for claims in ({"sub": "s"}, {**CLAIMS, "preferred_username": 7}, {**CLAIMS, "preferred_username": " "}):
        with pytest.raises(OidcError, match="oidc_user_claim"):
            user_from_claims(oidc_settings({"oidc_user_claim": "preferred_username"}), claims)


def test_groups_filter_and_admin_group() -> None:
    settings = oidc_settings(
        {"oidc_groups_claim": "roles", "oidc_group_filter": "^team-", "oidc_admin_group": "ops-admins"}
    )
    user = user_from_claims(settings, {**CLAIMS, "roles": ["team-a", "ops-admins", "team-a", 5, "other"]})
    assert user.groups == ("team-a",)
    assert user.admin  # the admin group counts before the filter, as in Harbor
    assert user_from_claims(settings, {**CLAIMS, "roles": "team-b"}).groups == ("team-b",)
    assert user_from_claims(settings, CLAIMS).groups == ()
    with pytest.raises(OidcError, match="oidc_group_filter"):
        user_from_claims(oidc_settings({"oidc_groups_claim": "roles", "oidc_group_filter": "("}), CLAIMS)


def test_cas_attributes_in_order_deduplicated_any_namespace() -> None:
    answer = (
        '<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas" xmlns:x="urn:x">'
        "<cas:authenticationSuccess><cas:user> carol </cas:user><cas:attributes>"
        "<cas:memberOf>b</cas:memberOf><cas:memberOf>a</cas:memberOf><cas:memberOf>b</cas:memberOf>"
        "<x:mail>c@x</x:mail><cas:memberOf></cas:memberOf>"
        "</cas:attributes></cas:authenticationSuccess></cas:serviceResponse>"
    )
    settings = cas_settings({"cas_groups_attribute": "memberOf"})
    user = parse_validation(answer, settings, "ST-1")
    assert (user.username, user.email, user.groups) == ("carol", "c@x", ("b", "a"))
    assert user.attributes["memberOf"] == ("b", "a", "b", "")
    with pytest.raises(CasError, match="no cas:user"):
        parse_validation(answer.replace(" carol ", ""), settings)
