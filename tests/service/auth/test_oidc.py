"""OidcClient against a real OpenID Connect provider (Authlib on Flask, its own process): the
authorization code flow with PKCE driven through the provider's login form, ID token checks,
groups, userinfo, the refresh grant (groups read again, the token rotated), and every refusal a
precise OidcError."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.oidc_provider import (
    CLIENT_ID,
    REDIRECT_URI,
    OidcProvider,
    OidcUserSeed,
    running_oidc_provider,
)
from tests.support.processes import free_port
from tests.support.sign_in import SignInRefused, browser, sign_in
from wharf_shared.auth.oidc import (
    AuthorizationRequest,
    OidcClient,
    OidcError,
    OidcGrantRefused,
    OidcSettings,
    OidcUnavailable,
    code_challenge,
    oidc_settings,
    subject_key,
)

USERS = {
    "alice": OidcUserSeed(
        "Alice-pass-1", "Alice Liddell", "alice@example.test", ("dev", "wharf-admins", "x-ops")
    ),
    "bob": OidcUserSeed("Bob-pass-1", "Bob Builder", "bob@example.test"),
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with running_oidc_provider(tmp_path_factory.mktemp("oidc"), USERS) as running:
        yield running


@pytest.fixture
def settings(provider: OidcProvider) -> OidcSettings:
    return oidc_settings(
        provider.configuration(oidc_admin_group="wharf-admins", oidc_group_filter="^(dev|wharf-admins)$")
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(http: aiohttp.ClientSession) -> OidcClient:
    return OidcClient(http)


async def start_login(
    client: OidcClient, settings: OidcSettings, username: str = "alice"
) -> tuple[AuthorizationRequest, str, str]:
    """The request, and the code and state the provider redirects back with once `username` signed in."""
    request = await client.authorization_request(settings, REDIRECT_URI)
    async with browser(verify=settings.oidc_verify_cert) as session:
        location = await sign_in(session, request.url, username, USERS[username].password)
    assert str(location).startswith(REDIRECT_URI + "?"), location
    return request, location.query["code"], location.query["state"]


async def test_authorization_code_with_pkce_round_trip(client: OidcClient, settings: OidcSettings) -> None:
    request, code, state = await start_login(client, settings)
    query = parse_qs(urlsplit(request.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [code_challenge(request.code_verifier)]
    assert query["scope"] == ["openid profile email groups offline_access"]
    assert query["state"] == [request.state]
    assert state == request.state
    assert query["nonce"] == [request.nonce]

    user = await client.complete_login(settings, request, code=code, state=state)

    assert (user.username, user.email, user.subject) == ("alice", "alice@example.test", "sub-alice")
    assert user.issuer == settings.oidc_endpoint
    assert user.groups == ("dev", "wharf-admins")  # x-ops dropped by oidc_group_filter
    assert user.admin
    assert user.claims["nonce"] == request.nonce
    assert jwt.decode(user.id_token, options={"verify_signature": False})["groups"] == [
        "dev",
        "wharf-admins",
        "x-ops",
    ]


async def test_user_without_groups_and_the_name_claim_by_default(
    client: OidcClient, provider: OidcProvider
) -> None:
    settings = oidc_settings(provider.configuration(oidc_user_claim="", oidc_admin_group="wharf-admins"))
    request, code, state = await start_login(client, settings, "bob")
    user = await client.complete_login(settings, request, code=code, state=state)
    assert user.username == "Bob Builder"  # Harbor's default: the `name` claim
    assert (user.groups, user.admin) == ((), False)


async def test_groups_missing_from_the_id_token_come_from_userinfo(
    client: OidcClient, provider: OidcProvider
) -> None:
    settings = oidc_settings(provider.configuration(oidc_scope="openid,profile,email"))
    request, code, state = await start_login(client, settings)
    user = await client.complete_login(settings, request, code=code, state=state)
    assert "groups" not in jwt.decode(user.id_token, options={"verify_signature": False})
    assert user.groups == ("dev", "wharf-admins", "x-ops")


async def test_client_secret_post(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    with running_oidc_provider(tmp_path, USERS, token_auth_method="client_secret_post") as provider:
        client = OidcClient(http)
        settings = oidc_settings(provider.configuration())
        request, code, state = await start_login(client, settings)
        user = await client.complete_login(settings, request, code=code, state=state)
        assert user.username == "alice"
        # The refresh grant authenticates the client the same way.
        subject = subject_key(user.issuer, user.subject)
        assert (await client.refresh(settings, user.refresh_token, subject=subject)).subject == user.subject


async def test_verify_cert(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A provider whose certificate is not trusted: refused while oidc_verify_cert is on."""
    with running_oidc_provider(tmp_path, USERS, https=True) as provider:
        client = OidcClient(http)
        with pytest.raises(OidcError, match=r"cannot reach the provider.*certificate verify failed"):
            await client.authorization_request(oidc_settings(provider.configuration()), REDIRECT_URI)
        settings = oidc_settings(provider.configuration(oidc_verify_cert=False))
        request, code, state = await start_login(client, settings)
        user = await client.complete_login(settings, request, code=code, state=state)
        assert user.issuer.startswith("https://")


async def test_wrong_password_gets_no_code(client: OidcClient, settings: OidcSettings) -> None:
    request = await client.authorization_request(settings, REDIRECT_URI)
    async with browser() as session:
        with pytest.raises(SignInRefused, match="Wrong username or password"):
            await sign_in(session, request.url, "alice", "not-her-password")


async def test_wrong_state_is_refused_before_the_code_is_spent(
    client: OidcClient, settings: OidcSettings
) -> None:
    request, code, state = await start_login(client, settings)
    with pytest.raises(OidcError, match="state does not match"):
        await client.complete_login(settings, request, code=code, state=state + "x")
    with pytest.raises(OidcError, match="state does not match"):
        await client.complete_login(settings, request, code=code, state="")
    user = await client.complete_login(settings, request, code=code, state=state)  # still good
    assert user.username == "alice"


async def test_a_code_is_good_once(client: OidcClient, settings: OidcSettings) -> None:
    request, code, state = await start_login(client, settings)
    await client.complete_login(settings, request, code=code, state=state)
    with pytest.raises(OidcError, match=r"token endpoint.*400: invalid_grant"):
        await client.complete_login(settings, request, code=code, state=state)


async def test_wrong_pkce_verifier_is_refused_by_the_provider(
    client: OidcClient, settings: OidcSettings
) -> None:
    request, code, state = await start_login(client, settings)
    other = AuthorizationRequest(request.url, request.state, request.nonce, "x" * 64, request.redirect_uri)
    with pytest.raises(OidcError, match="400: invalid_grant"):
        await client.complete_login(settings, other, code=code, state=state)


async def test_wrong_client_secret_is_refused(client: OidcClient, provider: OidcProvider) -> None:
    settings = oidc_settings(provider.configuration(oidc_client_secret="wrong"))
    request, code, state = await start_login(client, settings)
    with pytest.raises(OidcError, match="401: invalid_client"):
        await client.complete_login(settings, request, code=code, state=state)


async def tokens(client: OidcClient, settings: OidcSettings) -> tuple[AuthorizationRequest, str]:
    request, code, _ = await start_login(client, settings)
    answer = await client.exchange_code(
        settings, code, redirect_uri=request.redirect_uri, code_verifier=request.code_verifier
    )
    return request, str(answer["id_token"])


async def test_wrong_nonce_is_refused(client: OidcClient, settings: OidcSettings) -> None:
    request, id_token = await tokens(client, settings)
    assert (await client.verify_id_token(settings, id_token, nonce=request.nonce))["sub"] == "sub-alice"
    with pytest.raises(OidcError, match="nonce is not this login's"):
        await client.verify_id_token(settings, id_token, nonce="another-login")


async def test_expired_token_is_refused(
    client: OidcClient, settings: OidcSettings, http: aiohttp.ClientSession
) -> None:
    request, id_token = await tokens(client, settings)
    lifetime = 300  # the provider's
    late = OidcClient(http, clock=lambda: time.time() + lifetime + 61, leeway_seconds=60)
    with pytest.raises(OidcError, match="has expired"):
        await late.verify_id_token(settings, id_token, nonce=request.nonce)
    just_in_leeway = OidcClient(http, clock=lambda: time.time() + lifetime + 30, leeway_seconds=60)
    await just_in_leeway.verify_id_token(settings, id_token, nonce=request.nonce)
    early = OidcClient(http, clock=lambda: time.time() - 3600)
    with pytest.raises(OidcError, match="not valid yet"):
        await early.verify_id_token(settings, id_token, nonce=request.nonce)


async def test_wrong_audience_is_refused(
    client: OidcClient, settings: OidcSettings, provider: OidcProvider
) -> None:
    request, id_token = await tokens(client, settings)
    other = oidc_settings(provider.configuration(oidc_client_id="another-client"))
    with pytest.raises(OidcError, match="not for this client"):
        await client.verify_id_token(other, id_token, nonce=request.nonce)


async def test_tokens_not_signed_by_the_provider_are_refused(
    client: OidcClient, settings: OidcSettings
) -> None:
    request, id_token = await tokens(client, settings)
    claims = jwt.decode(id_token, options={"verify_signature": False})
    header = jwt.get_unverified_header(id_token)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    with pytest.raises(OidcError, match="signature does not verify"):
        await client.verify_id_token(settings, forged, nonce=request.nonce)

    unknown_kid = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "not-published"})
    with pytest.raises(OidcError, match="does not publish"):
        await client.verify_id_token(settings, unknown_kid, nonce=request.nonce)

    # A shared-secret algorithm keyed by the provider's public key or the client secret: refused.
    hmac_token = jwt.encode(claims, "k" * 40, algorithm="HS256", headers={"kid": header["kid"]})
    with pytest.raises(OidcError, match="'HS256' is not accepted"):
        await client.verify_id_token(settings, hmac_token, nonce=request.nonce)

    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]})
    with pytest.raises(OidcError, match="'none' is not accepted"):
        await client.verify_id_token(settings, unsigned, nonce=request.nonce)

    tampered = id_token.split(".")
    tampered[1] = jwt.utils.base64url_encode(b'{"sub":"sub-bob"}').decode()
    with pytest.raises(OidcError, match=r"signature does not verify|invalid"):
        await client.verify_id_token(settings, ".".join(tampered), nonce=request.nonce)

    with pytest.raises(OidcError, match="not a JWT"):
        await client.verify_id_token(settings, "garbage", nonce=request.nonce)


async def test_rotated_keys_are_fetched_again(settings: OidcSettings, provider: OidcProvider) -> None:
    async with aiohttp.ClientSession() as http:
        client = OidcClient(http, key_refetch_seconds=0)
        request, id_token = await tokens(client, settings)
        await client.verify_id_token(settings, id_token, nonce=request.nonce)  # the key set is cached now
        new_kid = provider.rotate_keys()
        request, id_token = await tokens(client, settings)
        assert jwt.get_unverified_header(id_token)["kid"] == new_kid
        await client.verify_id_token(settings, id_token, nonce=request.nonce)

        # Within key_refetch_seconds an unknown key id does not refetch: refused until then.
        slow = OidcClient(http, key_refetch_seconds=3600)
        request, id_token = await tokens(slow, settings)
        await slow.verify_id_token(settings, id_token, nonce=request.nonce)
        provider.rotate_keys()
        request, id_token = await tokens(slow, settings)
        with pytest.raises(OidcError, match="does not publish"):
            await slow.verify_id_token(settings, id_token, nonce=request.nonce)


async def test_discovery_must_name_the_configured_issuer(client: OidcClient, provider: OidcProvider) -> None:
    # The same provider reached by another name: its document names 127.0.0.1, not localhost.
    settings = oidc_settings(
        provider.configuration(oidc_endpoint=provider.issuer.replace("127.0.0.1", "localhost"))
    )
    with pytest.raises(OidcError, match="discovery names the issuer"):
        await client.authorization_request(settings, REDIRECT_URI)


async def test_unreachable_provider_and_bad_settings(client: OidcClient, provider: OidcProvider) -> None:
    down = oidc_settings(provider.configuration(oidc_endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(OidcError, match="cannot reach the provider"):
        await client.authorization_request(down, REDIRECT_URI)
    with pytest.raises(OidcError, match="is not an http"):
        await client.authorization_request(oidc_settings({"oidc_endpoint": "ftp://x"}), REDIRECT_URI)
    missing = oidc_settings(provider.configuration(oidc_endpoint=provider.issuer + "/nothing-here"))
    with pytest.raises(OidcError, match=r"discovery .* answered 404"):
        await client.authorization_request(missing, REDIRECT_URI)


async def test_extra_parameters_and_end_session(client: OidcClient, settings: OidcSettings) -> None:
    extra = oidc_settings(
        {**settings.__dict__, "oidc_extra_redirect_parms": {"prompt": "login", "state": "attacker"}}
    )
    request = await client.authorization_request(extra, REDIRECT_URI)
    query = parse_qs(urlsplit(request.url).query)
    assert query["prompt"] == ["login"]
    assert query["state"] == [request.state]  # the admin's extras never replace the flow's own
    url = await client.end_session_url(settings, id_token="abc", post_logout_redirect_uri="http://x/")
    assert url is not None
    assert url.startswith(f"{settings.oidc_endpoint}/logout?")
    assert parse_qs(urlsplit(url).query) == {
        "client_id": [CLIENT_ID],
        "id_token_hint": ["abc"],
        "post_logout_redirect_uri": ["http://x/"],
    }


async def test_refresh_reads_the_groups_now_and_rotates_the_token(
    client: OidcClient, settings: OidcSettings, provider: OidcProvider
) -> None:
    request, code, state = await start_login(client, settings)
    user = await client.complete_login(settings, request, code=code, state=state)
    assert user.refresh_token  # the scope has offline_access
    subject = subject_key(user.issuer, user.subject)
    provider.set_groups("alice", ["dev", "x-ops"])
    try:
        again = await client.refresh(settings, user.refresh_token, subject=subject)
        # Through the same rules as a sign-in: the filter, and the admin group left.
        assert (again.subject, again.groups, again.admin) == (user.subject, ("dev",), False)
        assert again.refresh_token not in ("", user.refresh_token)
        with pytest.raises(OidcGrantRefused, match="answered 400: invalid_grant"):
            await client.refresh(settings, user.refresh_token, subject=subject)  # spent by the rotation
        with pytest.raises(OidcGrantRefused, match="another identity"):
            await client.refresh(settings, again.refresh_token, subject="0" * 64)
    finally:
        provider.set_groups("alice", USERS["alice"].groups)


async def test_refresh_refusals_and_outages(
    client: OidcClient, settings: OidcSettings, provider: OidcProvider
) -> None:
    online = oidc_settings(provider.configuration(oidc_scope="openid,profile,email"))
    request, code, state = await start_login(client, online)
    assert (await client.complete_login(online, request, code=code, state=state)).refresh_token == ""

    request, code, state = await start_login(client, settings)
    user = await client.complete_login(settings, request, code=code, state=state)
    subject = subject_key(user.issuer, user.subject)
    provider.fail_token_endpoint(503)
    try:
        with pytest.raises(OidcUnavailable, match="answered 503"):
            await client.refresh(settings, user.refresh_token, subject=subject)
    finally:
        provider.fail_token_endpoint(0)
    down = oidc_settings(provider.configuration(oidc_endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(OidcUnavailable, match="cannot reach the provider"):
        await client.refresh(down, user.refresh_token, subject=subject)
    assert provider.revoke_refresh_tokens("alice") >= 1
    with pytest.raises(OidcGrantRefused, match="invalid_grant"):
        await client.refresh(settings, user.refresh_token, subject=subject)
