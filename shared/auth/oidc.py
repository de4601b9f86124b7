"""OpenID Connect (`oidc_auth`): the portal's single sign-on through an OIDC provider.

The authorization code flow with PKCE (S256), state and nonce: `authorization_request` gives the
URL to send the browser to and the secrets the portal keeps in its session until the provider
redirects back; `complete_login` checks the state, trades the code (and the PKCE verifier) at the
token endpoint, verifies the ID token (signature by a key of the provider's JWKS, issuer,
audience = `oidc_client_id`, nonce, expiry with leeway against an injectable clock), asks the
userinfo endpoint for what the ID token lacks, and maps the claims to a user the way Harbor does:
the username from `oidc_user_claim` (else the `name` claim, what Harbor's onboarding suggests),
groups from `oidc_groups_claim` kept by the regular expression `oidc_group_filter`, and system
admin for members of `oidc_admin_group` (checked before the filter, as Harbor does).

`refresh` trades a stored refresh token for who the person is now (their groups, the admin flag),
for the job service's OIDC group sync (`wharf_shared.oidc_group_sync`).

Discovery (`<oidc_endpoint>/.well-known/openid-configuration`) and the provider's keys are cached
for a while; an ID token signed by a key the cache does not know refetches the keys once (the
provider rotated them). Every failure is an `OidcError` whose message says what went wrong, for
the log and for an admin; the portal turns it into a refused login, never a 500. Two kinds are
told apart: `OidcUnavailable` (the provider unreachable, or a 5xx) and `OidcGrantRefused` (a
refresh token refused).

The settings travel with each call (runtime settings); `OidcSettings` names its fields exactly as
Harbor's configuration keys.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import jwt

from wharf_shared.auth.answers import read_capped
from wharf_shared.logging import get_logger
from wharf_shared.secrets import SecretBox, SecretError

log = get_logger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
# Algorithms an ID token may be signed with: asymmetric only. "none" and the HMAC family (keyed
# by the client secret) are refused, so a token cannot be forged with public or shared knowledge.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_BODY_LIMIT = 1024 * 1024  # discovery, JWKS, token and userinfo answers are small


@dataclass(frozen=True)
class OidcSettings:
    """The `oidc_*` runtime settings; names and meaning as Harbor's configuration keys."""

    oidc_name: str = ""  # shown on the portal's login button
    oidc_endpoint: str = ""  # the issuer URL
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_groups_claim: str = ""
    oidc_admin_group: str = ""
    oidc_group_filter: str = ""  # a regular expression; groups not matching it are dropped
    oidc_scope: str = "openid,offline_access"  # comma-separated
    oidc_user_claim: str = ""
    oidc_verify_cert: bool = True
    oidc_auto_onboard: bool = False
    oidc_extra_redirect_parms: str = "{}"  # a JSON object added to the authorization request
    oidc_logout: bool = False  # end the provider's session too when the user logs out


def oidc_settings(values: Mapping[str, Any]) -> OidcSettings:
    """The OIDC settings among runtime settings (other keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(OidcSettings)}
    picked = {k: v for k, v in values.items() if k in names and v is not None}
    extra = picked.get("oidc_extra_redirect_parms")
    if extra is not None and not isinstance(extra, str):
        picked["oidc_extra_redirect_parms"] = json.dumps(extra)  # stored as an object: keep it JSON
    return OidcSettings(**picked)


def decrypted_settings(values: Mapping[str, Any], box: SecretBox) -> OidcSettings:
    """`oidc_settings` of the stored runtime settings, whose `oidc_client_secret` is SecretBox
    ciphertext: decrypted (OidcError when this secret key cannot)."""
    values = dict(values)
    if values.get("oidc_client_secret"):
        try:
            values["oidc_client_secret"] = box.decrypt(values["oidc_client_secret"])
        except SecretError:
            raise OidcError(
                "the OIDC client secret cannot be decrypted: an admin must set it again"
            ) from None
    return oidc_settings(values)


class OidcError(Exception):
    """A login or provider exchange that failed; the message says why. `status` and `error`: the
    provider's HTTP status and OAuth error code when it answered with one (0 and "" otherwise)."""

    def __init__(self, message: str, *, status: int = 0, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class OidcUnavailable(OidcError):
    """The provider could not be reached, timed out or answered 5xx: it said nothing about anyone."""


class OidcGrantRefused(OidcError):
    """The token endpoint refused a refresh token (`invalid_grant`): the person was removed, their
    session or consent revoked. The provider no longer vouches for them."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery tells about the provider (OpenID Connect Discovery 1.0)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",)  # the spec's default


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what the portal keeps in its session until the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str

    def as_dict(self) -> dict[str, str]:
        """For the portal's session (server-side: the verifier and nonce are secrets)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AuthorizationRequest:
        """Back from the session; a missing or damaged entry is a login to start again."""
        try:
            return cls(**{f.name: str(values[f.name]) for f in fields(cls)})
        except (KeyError, TypeError):
            raise OidcError("no login in progress in this session (expired or never started)") from None


@dataclass(frozen=True)
class OidcUser:
    subject: str  # `sub`: with the issuer, who this is at the provider for good
    issuer: str
    username: str  # "" when the claim is missing: the portal asks the user (Harbor's onboarding)
    email: str
    groups: tuple[str, ...]  # after `oidc_group_filter`
    admin: bool  # in `oidc_admin_group`
    id_token: str  # the raw token: the end-session request's `id_token_hint`
    access_token: str
    refresh_token: str
    claims: Mapping[str, Any] = field(repr=False)  # the ID token's claims, userinfo's added


def subject_key(issuer: str, subject: str) -> str:
    """What `user_account.sso_subject` holds for an OIDC identity (fixed size, unique)."""
    return hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """PKCE's S256 challenge of a verifier (RFC 7636 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def scopes(settings: OidcSettings) -> list[str]:
    """`oidc_scope`'s scopes, `openid` first (without it the provider gives no ID token)."""
    found = [s.strip() for s in re.split(r"[,\s]+", settings.oidc_scope) if s.strip()]
    return ["openid", *[s for s in dict.fromkeys(found) if s != "openid"]]


def _extra_parameters(settings: OidcSettings) -> dict[str, str]:
    raw = settings.oidc_extra_redirect_parms.strip() or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        raise OidcError(f"oidc_extra_redirect_parms is not JSON: {raw!r}") from None
    if not isinstance(value, dict):
        raise OidcError("oidc_extra_redirect_parms is not a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _issuer(settings: OidcSettings) -> str:
    issuer = settings.oidc_endpoint.strip().rstrip("/")
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OidcError(f"oidc_endpoint {settings.oidc_endpoint!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise OidcError("oidc_endpoint must not have a query or a fragment")
    return issuer


def _regex(settings: OidcSettings) -> re.Pattern[str] | None:
    if not settings.oidc_group_filter:
        return None
    try:
        return re.compile(settings.oidc_group_filter)
    except re.error as exc:
        raise OidcError(f"oidc_group_filter is not a valid regular expression: {exc}") from None


def _groups(claims: Mapping[str, Any], claim: str) -> list[str]:
    if not claim:
        return []
    value = claims.get(claim)
    if isinstance(value, str):  # some providers give a single group as a string
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


def user_from_claims(
    settings: OidcSettings, claims: Mapping[str, Any], *, id_token: str = "", access_token: str = ""
) -> OidcUser:
    """The user these (verified) claims describe, by Harbor's rules."""
    if settings.oidc_user_claim:
        username = claims.get(settings.oidc_user_claim)
        if not isinstance(username, str) or not username.strip():
            raise OidcError(
                f"the claim {settings.oidc_user_claim!r} (oidc_user_claim) is missing or not a string"
            )
    else:
        name = claims.get("name")
        username = name if isinstance(name, str) else ""
    email = claims.get("email")
    groups = _groups(claims, settings.oidc_groups_claim)
    admin = bool(settings.oidc_admin_group) and settings.oidc_admin_group in groups
    pattern = _regex(settings)
    if pattern is not None:
        groups = [g for g in groups if pattern.search(g)]  # Go's MatchString: anywhere in the name
    return OidcUser(
        subject=str(claims.get("sub", "")),
        issuer=str(claims.get("iss", "")),
        username=username.strip(),
        email=email if isinstance(email, str) else "",
        groups=tuple(dict.fromkeys(groups)),
        admin=admin,
        id_token=id_token,
        access_token=access_token,
        refresh_token="",
        claims=dict(claims),
    )


# Which key type each algorithm family needs: a token may not pick an algorithm its key is not for.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _usable_key(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    """The JWK as a key for `alg`: the key's own `alg` when it names one must be `alg`."""
    if jwk.get("alg") not in (None, alg):
        raise OidcError(f"the ID token says {alg} but its key is for {jwk.get('alg')}")
    if jwk.get("kty") != _KEY_TYPES.get(alg[:2]):
        raise OidcError(f"the ID token says {alg} but its key is of type {jwk.get('kty')!r}")
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise OidcError(f"the provider's key {jwk.get('kid')!r} is unusable: {exc}") from None


def _needs_userinfo(settings: OidcSettings, claims: Mapping[str, Any]) -> bool:
    wanted = [settings.oidc_user_claim or "name", "email"]
    if settings.oidc_groups_claim:
        wanted.append(settings.oidc_groups_claim)
    return any(name not in claims for name in wanted)


class OidcClient:
    """One per process. HTTP goes through the given aiohttp session (the process's one client);
    discovery documents and key sets are cached per issuer for `cache_seconds`; a token signed
    by a key not in the cached set refetches it, at most once per `key_refetch_seconds`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 300.0,
        key_refetch_seconds: float = 30.0,
        leeway_seconds: float = 60.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._session = session
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._key_refetch_seconds = key_refetch_seconds
        self._leeway = leeway_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # jwks_uri -> (fetched at, keys)
        self._lock = asyncio.Lock()

    # --- HTTP -----------------------------------------------------------------------------------

    async def _json(
        self,
        settings: OidcSettings,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            async with self._session.request(
                method,
                url,
                headers={"Accept": "application/json", **(headers or {})},
                data=data,
                timeout=self._timeout,
                ssl=bool(settings.oidc_verify_cert),  # True: verify against the system CAs
                allow_redirects=False,
            ) as response:
                body = await read_capped(response, _BODY_LIMIT)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OidcUnavailable(
                f"{what} at {url}: cannot reach the provider: {type(exc).__name__}: {exc}"
            ) from None
        if len(body) > _BODY_LIMIT:
            raise OidcError(f"{what} at {url}: the answer is larger than {_BODY_LIMIT} bytes")
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if status != 200:
            detail, error = "", ""
            if isinstance(value, dict) and value.get("error"):
                error = str(value.get("error"))
                detail = f": {error}"
                if value.get("error_description"):
                    detail += f": {value.get('error_description')}"
            kind = OidcUnavailable if status >= 500 else OidcError
            raise kind(f"{what} at {url} answered {status}{detail}", status=status, error=error)
        if not isinstance(value, dict):
            raise OidcError(f"{what} at {url} did not answer a JSON object")
        return value

    # --- discovery and keys ---------------------------------------------------------------------

    async def discover(self, settings: OidcSettings) -> ProviderMetadata:
        """The provider's metadata (cached), after checking it names the configured issuer."""
        issuer = _issuer(settings)
        cached = self._metadata.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        doc = await self._json(settings, "GET", issuer + DISCOVERY_PATH, "discovery")
        # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for,
        # else a provider could speak for another.
        if str(doc.get("issuer", "")).rstrip("/") != issuer:
            raise OidcError(
                f"discovery names the issuer {doc.get('issuer')!r}, not {issuer!r} (oidc_endpoint)"
            )
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
        if missing:
            raise OidcError(f"discovery of {issuer} lacks {', '.join(missing)}")
        methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        metadata = ProviderMetadata(
            issuer=str(doc["issuer"]),
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
            end_session_endpoint=str(doc.get("end_session_endpoint") or ""),
            token_endpoint_auth_methods=tuple(str(m) for m in methods),
        )
        self._metadata[issuer] = (time.monotonic() + self._cache_seconds, metadata)
        return metadata

    async def _key_set(
        self, settings: OidcSettings, metadata: ProviderMetadata, *, fresh: bool
    ) -> list[dict[str, Any]]:
        # Cached for cache_seconds; `fresh` (a key id not in the cache) refetches unless the
        # set is younger than key_refetch_seconds: tokens with made-up key ids cannot make us
        # hammer the provider.
        cached = self._keys.get(metadata.jwks_uri)
        if cached:
            age = time.monotonic() - cached[0]
            if age < (self._key_refetch_seconds if fresh else self._cache_seconds):
                return cached[1]
        async with self._lock:
            doc = await self._json(settings, "GET", metadata.jwks_uri, "the key set (jwks_uri)")
            keys = doc.get("keys")
            if not isinstance(keys, list):
                raise OidcError(f"the key set at {metadata.jwks_uri} has no list of keys")
            usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
            self._keys[metadata.jwks_uri] = (time.monotonic(), usable)
            return usable

    async def _signing_key(
        self, settings: OidcSettings, metadata: ProviderMetadata, header: Mapping[str, Any]
    ) -> jwt.PyJWK:
        kid = header.get("kid")
        alg = header.get("alg")
        if alg not in SIGNING_ALGORITHMS:
            raise OidcError(f"the ID token's algorithm {alg!r} is not accepted")
        for fresh in (False, True):  # a key id not in the cache: the provider may have rotated
            keys = await self._key_set(settings, metadata, fresh=fresh)
            if kid is not None:
                keys = [k for k in keys if k.get("kid") == kid]
            elif len(keys) > 1:
                raise OidcError("the ID token names no key id and the provider has several keys")
            if keys:
                return _usable_key(keys[0], str(alg))
        raise OidcError(f"the ID token is signed by a key the provider does not publish (kid {kid!r})")

    # --- the flow -------------------------------------------------------------------------------

    async def authorization_request(self, settings: OidcSettings, redirect_uri: str) -> AuthorizationRequest:
        """The authorization code request (with PKCE S256, state and nonce) to redirect to."""
        metadata = await self.discover(settings)
        if not settings.oidc_client_id:
            raise OidcError("oidc_client_id is empty")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]: RFC 7636's 43-128
        ours = {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes(settings)),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        # The admin's extras never replace what secures the flow.
        query = {**{k: v for k, v in _extra_parameters(settings).items() if k not in ours}, **ours}
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        url = metadata.authorization_endpoint + separator + urlencode(query, quote_via=quote)
        return AuthorizationRequest(url, state, nonce, verifier, redirect_uri)

    async def _token_request(self, settings: OidcSettings, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint's answer to `form`, the client authenticated by client_secret_basic
        or client_secret_post, as the provider supports."""
        metadata = await self.discover(settings)
        headers: dict[str, str] = {}
        methods = metadata.token_endpoint_auth_methods
        if "client_secret_basic" in methods:
            # RFC 6749 2.3.1: each part form-encoded before Basic's base64.
            pair = f"{quote(settings.oidc_client_id, safe='')}:{quote(settings.oidc_client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif "client_secret_post" in methods:
            form = {
                **form,
                "client_id": settings.oidc_client_id,
                "client_secret": settings.oidc_client_secret,
            }
        else:
            raise OidcError(
                "the token endpoint supports neither client_secret_basic nor client_secret_post "
                f"(it supports {', '.join(methods)})"
            )
        answer: dict[str, Any] = await self._json(
            settings, "POST", metadata.token_endpoint, "the token endpoint", headers=headers, data=form
        )
        return answer

    async def exchange_code(
        self, settings: OidcSettings, code: str, *, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        answer = await self._token_request(settings, form)
        if not isinstance(answer.get("id_token"), str):
            raise OidcError("the token endpoint gave no ID token (is 'openid' among the scopes?)")
        return answer

    async def verify_id_token(
        self, settings: OidcSettings, id_token: str, *, nonce: str | None
    ) -> dict[str, Any]:
        """The claims of an ID token once its signature, issuer, audience, times and nonce hold
        (`nonce` None: a refreshed ID token, which carries none to check, OIDC Core 12.2)."""
        metadata = await self.discover(settings)
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is not a JWT: {exc}") from None
        key = await self._signing_key(settings, metadata, header)
        algorithm = str(header["alg"])
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[algorithm],
                audience=settings.oidc_client_id,
                issuer=metadata.issuer,
                # Times are checked below against the injected clock.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "sub", "aud", "exp", "iat"],
                },
            )
        except jwt.InvalidSignatureError:
            raise OidcError("the ID token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise OidcError(
                f"the ID token is not for this client (aud is not {settings.oidc_client_id!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise OidcError(f"the ID token's issuer is not {metadata.issuer!r}") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is invalid: {exc}") from None
        self._check_times(claims)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        # OIDC Core 3.1.3.7: with several audiences, azp names who the token was issued to.
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != settings.oidc_client_id:
            raise OidcError("the ID token was issued to another party (azp)")
        if nonce is None:
            return claims
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise OidcError("the ID token's nonce is not this login's (a replayed token?)")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
            nbf = float(claims["nbf"]) if "nbf" in claims else None
        except (TypeError, ValueError):
            raise OidcError("the ID token's exp, iat or nbf is not a number") from None
        if exp + self._leeway < now:
            raise OidcError("the ID token has expired")
        if iat - self._leeway > now or (nbf is not None and nbf - self._leeway > now):
            raise OidcError("the ID token is not valid yet (the provider's clock is ahead?)")

    async def userinfo(self, settings: OidcSettings, access_token: str) -> dict[str, Any]:
        """The userinfo endpoint's claims for an access token ({} when the provider has none)."""
        metadata = await self.discover(settings)
        if not metadata.userinfo_endpoint:
            return {}
        info: dict[str, Any] = await self._json(
            settings,
            "GET",
            metadata.userinfo_endpoint,
            "the userinfo endpoint",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return info

    async def complete_login(
        self,
        settings: OidcSettings,
        request: AuthorizationRequest,
        *,
        code: str,
        state: str,
    ) -> OidcUser:
        """The user a provider's redirect back (`code`, `state`) proves, for the request the
        portal kept in its session."""
        if not state or not hmac.compare_digest(state.encode(), request.state.encode()):
            raise OidcError("the state does not match this login's (a forged or stale redirect)")
        if not code:
            raise OidcError("the provider's redirect has no code")
        tokens = await self.exchange_code(
            settings, code, redirect_uri=request.redirect_uri, code_verifier=request.code_verifier
        )
        id_token = str(tokens["id_token"])
        access_token = str(tokens.get("access_token") or "")
        claims = await self.verify_id_token(settings, id_token, nonce=request.nonce)
        claims = await self._with_userinfo(settings, claims, access_token)
        user = user_from_claims(settings, claims, id_token=id_token, access_token=access_token)
        refresh = tokens.get("refresh_token")
        return replace(user, refresh_token=refresh if isinstance(refresh, str) else "")

    async def _with_userinfo(
        self, settings: OidcSettings, claims: dict[str, Any], access_token: str
    ) -> dict[str, Any]:
        """An ID token's claims, with userinfo's added when the ID token lacks one we use."""
        if not access_token or not _needs_userinfo(settings, claims):
            return claims
        info = await self.userinfo(settings, access_token)
        # OIDC Core 5.3.2: userinfo's sub must be the ID token's, else it speaks of someone else.
        if info and info.get("sub") != claims["sub"]:
            raise OidcError("the userinfo endpoint answered for another subject")
        return {**info, **claims}

    async def refresh(self, settings: OidcSettings, refresh_token: str, *, subject: str) -> OidcUser:
        """Who a stored refresh token's person is now (their groups, the admin flag), for the
        account bound to `subject` (`subject_key` of its issuer and sub); `refresh_token` of the
        answer: the rotated token when the provider sent one, else "".

        The token endpoint with grant_type=refresh_token, the client authenticated as for a code.
        A new ID token is verified as at sign-in but for the nonce, which a refreshed one does not
        carry (OIDC Core 12.2); without one, userinfo (with the new access token) speaks, the
        issuer being the configured provider's. The username claim is not needed: the account
        follows the subject. OidcGrantRefused: the provider refused the grant (`invalid_grant`),
        or the identity it names is not the account's; OidcUnavailable: the provider is down."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            tokens = await self._token_request(settings, form)
        except OidcUnavailable:
            raise
        except OidcError as exc:
            if exc.error == "invalid_grant":
                raise OidcGrantRefused(str(exc), status=exc.status, error=exc.error) from None
            raise
        settings = replace(settings, oidc_user_claim="")
        access_token = str(tokens.get("access_token") or "")
        id_token = tokens.get("id_token")
        if isinstance(id_token, str) and id_token:
            claims = await self.verify_id_token(settings, id_token, nonce=None)
            claims = await self._with_userinfo(settings, claims, access_token)
        else:
            id_token = ""
            metadata = await self.discover(settings)
            if not access_token or not metadata.userinfo_endpoint:
                raise OidcError(
                    "the refresh gave no ID token, and no userinfo endpoint or access token to ask"
                )
            info = await self.userinfo(settings, access_token)
            if not isinstance(info.get("sub"), str) or not info["sub"]:
                raise OidcError("the userinfo endpoint named no subject")
            claims = {**info, "iss": metadata.issuer}
        if not hmac.compare_digest(subject_key(str(claims["iss"]), str(claims["sub"])), subject):
            raise OidcGrantRefused("the refresh token names another identity than the account's")
        user = user_from_claims(settings, claims, id_token=id_token, access_token=access_token)
        rotated = tokens.get("refresh_token")
        return replace(user, refresh_token=rotated if isinstance(rotated, str) else "")

    async def end_session_url(
        self, settings: OidcSettings, *, id_token: str = "", post_logout_redirect_uri: str = ""
    ) -> str | None:
        """The provider's end-session (RP-initiated logout) URL, None when it has none."""
        metadata = await self.discover(settings)
        if not metadata.end_session_endpoint:
            return None
        query = {"client_id": settings.oidc_client_id}
        if id_token:
            query["id_token_hint"] = id_token
        if post_logout_redirect_uri:
            query["post_logout_redirect_uri"] = post_logout_redirect_uri
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(query, quote_via=quote)
