"""An OpenID Connect provider for Wharf's tests: Authlib's authorization server on Flask.

Runs in the SSO peers' own venv (tests/peers/requirements-sso.txt), started by
tests/support/oidc_provider.py as `python oidc_provider_app.py CONFIG.json`. The config names
the file to write its port to (it binds a free one), the clients, the seeded users with their
groups, and optionally a certificate to serve HTTPS with. It serves discovery, the JWKS (an RSA
key made at start; POST /rotate adds a new one that signs from then on), an authorization
endpoint with a username/password form (PKCE with S256 required), the token endpoint
(client_secret_basic or client_secret_post, as each client is registered; Authlib checks the
PKCE verifier), userinfo and an end-session endpoint.

Refresh tokens are issued when the scope has `offline_access`, rotated at each use (the old one
revoked); a refresh answers an access token (no ID token, as Authlib's grant does), so userinfo
tells the groups. Test controls: POST /users/<name>/groups sets a user's groups, POST
/users/<name>/revoke revokes their refresh tokens, POST /fail makes the token endpoint answer a
status (a 5xx) until set back to 0.

The `groups` claim goes into the ID token only when the scope has `groups`; userinfo always
gives it, so that a relying party without that scope must ask userinfo.
"""

from __future__ import annotations

import hmac
import html
import json
import sys
import time
from pathlib import Path
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, Response, jsonify, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

SCOPES = ("openid", "profile", "email", "groups", "offline_access")
CODE_LIFETIME = 60


class Client(ClientMixin):
    def __init__(self, entry: dict[str, Any]) -> None:
        self.client_id: str = entry["client_id"]
        self.client_secret: str = entry["client_secret"]
        self.redirect_uris: list[str] = entry["redirect_uris"]
        self.auth_method: str = entry.get("token_endpoint_auth_method", "client_secret_basic")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class Code(AuthorizationCodeMixin):
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def get_redirect_uri(self) -> str:
        return str(self.redirect_uri)

    def get_scope(self) -> str:
        return str(self.scope)

    def get_nonce(self) -> str | None:
        return self.nonce  # type: ignore[no-any-return]

    def get_auth_time(self) -> int:
        return int(self.auth_time)


class Token(TokenMixin):
    def __init__(self, user: dict[str, Any], client: Client, scope: str, expires_at: float) -> None:
        self.user, self.client, self.scope, self.expires_at = user, client, scope, expires_at
        self.revoked = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> dict[str, Any]:
        return self.user

    def get_client(self) -> Client:
        return self.client


def _new_key(number: int) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": f"wharf-test-{number}", "use": "sig", "alg": "RS256"})


def create_app(config: dict[str, Any]) -> Flask:
    """The provider; `config["issuer"]` is read per request (set once the port is bound)."""
    users: dict[str, dict[str, Any]] = config["users"]
    clients = {c["client_id"]: Client(c) for c in config["clients"]}
    lifetime = int(config.get("id_token_lifetime", 300))
    keys = [_new_key(1)]  # the last signs; all are published (a rotation keeps the old ones)
    codes: dict[str, Code] = {}
    tokens: dict[str, Token] = {}
    refresh_tokens: dict[str, Token] = {}
    failing = {"status": 0}  # test control: the token endpoint's answer while set (a 5xx)
    nonces: set[str] = set()

    def claims_of(user: dict[str, Any], scope: str, *, for_id_token: bool) -> UserInfo:
        scopes = scope.split()
        info = UserInfo(sub=user["sub"])
        if "profile" in scopes:
            info.update(name=user["name"], preferred_username=user["username"])
        if "email" in scopes:
            info.update(email=user["email"], email_verified=True)
        if "groups" in scopes or not for_id_token:
            info["groups"] = list(user["groups"])
        return info

    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            nonce = req.payload.data.get("nonce")
            if nonce:
                nonces.add(nonce)
            codes[code] = Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope,
                nonce=nonce,
                auth_time=int(time.time()),
                code_challenge=req.payload.data.get("code_challenge"),
                code_challenge_method=req.payload.data.get("code_challenge_method"),
                user=req.user,
                expires_at=time.time() + CODE_LIFETIME,
            )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = codes.get(code)
            if found and found.client_id == client.client_id and found.expires_at > time.time():
                return found
            return None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            codes.pop(authorization_code.code, None)  # a code is good once

        def authenticate_user(self, authorization_code: Code) -> dict[str, Any]:
            return authorization_code.user  # type: ignore[no-any-return]

    class IdTokens(OpenIDCode):
        DEFAULT_EXPIRES_IN = lifetime

        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return nonce in nonces  # a nonce reused by a new request is refused

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            return keys[-1]

        def get_client_algorithm(self, client: Client) -> str:
            return "RS256"

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return {"iss": config["issuer"], "aud": [client.client_id]}

        def get_encode_header(self, client: Client) -> dict[str, Any]:
            return {"alg": "RS256", "kid": keys[-1].kid}

        def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
            return claims_of(user, scope, for_id_token=True)

    def save_token(token: dict[str, Any], req: Any) -> None:
        scope = token.get("scope", "")
        if "offline_access" not in scope.split():
            # As Dex and others: no refresh token unless offline_access was granted. (The dict is
            # the answer Authlib sends.)
            token.pop("refresh_token", None)
        issued = Token(req.user, req.client, scope, time.time() + int(token.get("expires_in", 3600)))
        tokens[token["access_token"]] = issued
        if token.get("refresh_token"):
            refresh_tokens[token["refresh_token"]] = issued

    class RefreshTokenGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotated at each use, the old one revoked

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            found = refresh_tokens.get(refresh_token)
            return found if found is not None and not found.revoked else None

        def authenticate_user(self, refresh_token: Token) -> dict[str, Any]:
            return refresh_token.user

        def revoke_old_credential(self, refresh_token: Token) -> None:
            refresh_token.revoked = True

    class Bearer(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Token | None:
            return tokens.get(token_string)

    app = Flask(__name__)
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True  # Authlib's random refresh tokens
    server = AuthorizationServer(app, query_client=clients.get, save_token=save_token)
    server.register_grant(
        AuthorizationCodeGrant, [CodeChallenge(required=True), IdTokens(require_nonce=True)]
    )
    server.register_grant(RefreshTokenGrant)
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(Bearer())

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        issuer = config["issuer"]
        return jsonify(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/authorize",
            token_endpoint=f"{issuer}/token",
            jwks_uri=f"{issuer}/jwks",
            userinfo_endpoint=f"{issuer}/userinfo",
            end_session_endpoint=f"{issuer}/logout",
            response_types_supported=["code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            token_endpoint_auth_methods_supported=config.get(
                "token_endpoint_auth_methods", ["client_secret_basic", "client_secret_post"]
            ),
            code_challenge_methods_supported=["S256"],
            scopes_supported=list(SCOPES),
            claims_supported=["sub", "name", "preferred_username", "email", "groups"],
        )

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify(KeySet(keys).as_dict(private=False))

    @app.post("/rotate")
    def rotate() -> Response:
        """Test control: sign with a new key from now on."""
        keys.append(_new_key(len(keys) + 1))
        return jsonify(kid=keys[-1].kid)

    @app.post("/users/<name>/groups")
    def set_groups(name: str) -> Response:
        """Test control: the user's groups from now on (`{"groups": [...]}`)."""
        users[name]["groups"] = list((request.get_json() or {}).get("groups", []))
        return jsonify(groups=users[name]["groups"])

    @app.post("/users/<name>/revoke")
    def revoke(name: str) -> Response:
        """Test control: revoke every refresh token of the user (their session ended here)."""
        subject = users[name]["sub"]
        gone = [t for t in refresh_tokens.values() if t.user["sub"] == subject and not t.revoked]
        for token in gone:
            token.revoked = True
        return jsonify(revoked=len(gone))

    @app.post("/fail")
    def fail() -> Response:
        """Test control: the token endpoint answers this status (`{"status": 503}`; 0 ends it)."""
        failing["status"] = int((request.get_json() or {}).get("status", 0))
        return jsonify(failing)

    def form(message: str = "") -> str:
        # Posted back to this same URL: the authorization request stays in the query string.
        note = f"<p class=error>{html.escape(message)}</p>" if message else ""
        return (
            "<!doctype html><title>Sign in</title>"
            f"<form method=post action='{html.escape(request.full_path)}'>{note}"
            "<label>Username <input name=username></label>"
            "<label>Password <input name=password type=password></label>"
            "<button type=submit>Sign in</button></form>"
        )

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        if request.args.get("code_challenge_method") != "S256" or not request.args.get("code_challenge"):
            return Response("PKCE with S256 is required", status=400)
        try:
            server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return Response(f"{error.error}: {error.description}", status=400)
        if request.method == "GET":
            return form()
        user = users.get(request.form.get("username", ""))
        password = request.form.get("password", "")
        if user is None or not hmac.compare_digest(password.encode(), user["password"].encode()):
            return Response(form("Wrong username or password"), status=200)
        return server.create_authorization_response(grant_user=user)

    @app.post("/token")
    def token() -> Any:
        if failing["status"]:
            return Response("unavailable", status=failing["status"])
        return server.create_token_response()

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Any:
        try:
            found = require_oauth.acquire_token(["openid"])
        except OAuth2Error as error:
            return Response(json.dumps({"error": error.error}), status=401, mimetype="application/json")
        return jsonify(claims_of(found.user, found.scope, for_id_token=False))

    @app.get("/logout")
    def logout() -> Any:
        target = request.args.get("post_logout_redirect_uri")
        return redirect(target) if target else "signed out"

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    for name, user in config["users"].items():
        user.setdefault("username", name)
        user.setdefault("sub", f"sub-{name}")
    tls = config.get("tls")  # {"cert": PEM file, "key": PEM file}: HTTPS
    context = (tls["cert"], tls["key"]) if tls else None
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True, ssl_context=context)
    config["issuer"] = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}"
    write_port(Path(config["port_file"]), server.server_port)
    server.serve_forever()


def write_port(port_file: Path, port: int) -> None:
    """The port for the test that started us, written whole (a rename) once we listen."""
    port_file.with_suffix(".tmp").write_text(str(port))
    port_file.with_suffix(".tmp").rename(port_file)


if __name__ == "__main__":
    main()
