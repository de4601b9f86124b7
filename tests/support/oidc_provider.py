"""A real OpenID Connect provider for the OIDC tests: Authlib's authorization server on Flask
(tests/peers/oidc_provider_app.py), in the SSO peers' venv, on a free loopback port.

The test seeds its users and their groups; the provider registers one client, `wharf`, that
authenticates at the token endpoint by `token_auth_method` (the only one discovery lists) and
redirects to `REDIRECT_URI`, which nothing serves: the tests stop at the redirect.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.peers import APPS, peer_python, running_peer
from tests.support.tls import self_signed

REDIRECT_URI = "http://127.0.0.1:9/c/oidc/callback"
CLIENT_ID, CLIENT_SECRET = "wharf", "Wharf-client-secret-1"


@dataclass(frozen=True)
class OidcUserSeed:
    password: str
    name: str
    email: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class OidcProvider:
    issuer: str

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.issuer + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            answer: dict[str, Any] = json.load(response)
            return answer

    def rotate_keys(self) -> str:
        """Make the provider sign with a new key (the old stays published); its key id."""
        return str(self._post("/rotate")["kid"])

    def set_groups(self, username: str, groups: Sequence[str]) -> None:
        """The user's groups at the provider from now on."""
        self._post(f"/users/{username}/groups", {"groups": list(groups)})

    def revoke_refresh_tokens(self, username: str) -> int:
        """Revoke the user's refresh tokens (their session ended at the provider); how many."""
        return int(self._post(f"/users/{username}/revoke")["revoked"])

    def fail_token_endpoint(self, status: int) -> None:
        """The token endpoint answers `status` (a 5xx) from now on; 0 ends it."""
        self._post("/fail", {"status": status})

    def configuration(self, **overrides: Any) -> dict[str, Any]:
        """Runtime settings (Harbor's `oidc_*` keys) for this provider as client `wharf`."""
        return {
            "oidc_name": "Test provider",
            "oidc_endpoint": self.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_groups_claim": "groups",
            "oidc_scope": "openid,profile,email,groups,offline_access",
            "oidc_user_claim": "preferred_username",
            "oidc_verify_cert": True,
            "oidc_auto_onboard": True,
            **overrides,
        }


@contextmanager
def running_oidc_provider(
    folder: Path,
    users: Mapping[str, OidcUserSeed],
    *,
    token_auth_method: str = "client_secret_basic",  # noqa: S107 - a method's name
    https: bool = False,
    redirect_uris: Sequence[str] = (REDIRECT_URI,),
) -> Iterator[OidcProvider]:
    """The provider, over HTTPS with a self-signed certificate for 127.0.0.1 when `https`;
    `redirect_uris`: where client `wharf` may be sent back (a real ui's callback)."""
    python = peer_python()
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "port_file": str(folder / "port"),
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": list(redirect_uris),
                "token_endpoint_auth_method": token_auth_method,
            },
        ],
        "token_endpoint_auth_methods": [token_auth_method],
        "users": {
            name: {"password": u.password, "name": u.name, "email": u.email, "groups": list(u.groups)}
            for name, u in users.items()
        },
    }
    if https:
        cert, key = self_signed(folder)
        config["tls"] = {"cert": str(cert), "key": str(key)}
    config_file = folder / "oidc.json"
    config_file.write_text(json.dumps(config))
    argv = [str(python), str(APPS / "oidc_provider_app.py"), str(config_file)]
    with running_peer("the OIDC provider", argv, folder, "/health", https=https) as port:
        yield OidcProvider(f"{'https' if https else 'http'}://127.0.0.1:{port}")
