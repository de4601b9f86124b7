"""Who may do what on `/v2/`: Docker token auth (a signed JWT with an `access` claim) or none.

The registry never calls the token service: it checks signatures against its trusted key
bundle (re-read when the file changes, so keys rotate without a restart) and compares the
granted actions with what the route needs. Two things a token cannot vouch for are checked
against the database instead, once per push, when it completes (the final PUT of an upload, a
manifest PUT): that its subject still holds push on the project (a member removed keeps a valid
token for its lifetime), as the token service decides it (`wharf_shared.rbac`). A system
identity's subject (the job service) is not a user and is not rechecked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wharf_shared import rbac
from wharf_shared.db import projects
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import Forbidden
from wharf_shared.errors.oci import Unauthorized
from wharf_shared.logging import get_logger
from wharf_shared.tokens import LEEWAY_SECONDS, Grant, TokenError, TokenVerifier

log = get_logger(__name__)

_RELOAD_CHECK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Need:
    """What a request needs: `type` is `base`, `registry` (catalog) or `repository`."""

    type: str
    name: str = ""
    action: str = ""
    challenge_actions: str = ""

    def scope(self) -> str | None:
        if self.type == "repository":
            return f"repository:{self.name}:{self.challenge_actions or self.action}"
        if self.type == "registry":
            return f"registry:{self.name}:{self.action}"
        return None


ALLOW_ALL = Grant(subject="", access=(), issued_at=0, expires_at=float("inf"), unrestricted=True)


class Authorizer:
    def __init__(
        self,
        mode: str,
        *,
        realm: str,
        service: str,
        issuer: str,
        keys_file: Path | None,
        upload_grace_seconds: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mode = mode
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self._upload_grace = upload_grace_seconds
        self._clock = clock  # wall-clock seconds, as token `exp` claims are
        self._keys_file = keys_file
        self._verifier: TokenVerifier | None = None
        self._keys_mtime = 0.0
        self._checked_at = 0.0
        if mode == "token":
            self._load_keys()

    def _load_keys(self) -> None:
        assert self._keys_file is not None
        self._verifier = TokenVerifier.from_bundle(self._keys_file, service=self.service, issuer=self.issuer)
        self._keys_mtime = self._keys_file.stat().st_mtime
        self._checked_at = time.monotonic()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self._keys_file is None or now - self._checked_at < _RELOAD_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            if self._keys_file.stat().st_mtime != self._keys_mtime:
                self._load_keys()
                log.info("token_keys_reloaded", path=str(self._keys_file))
        except (OSError, TokenError) as exc:
            log.error("token_keys_reload_failed", path=str(self._keys_file), error=str(exc))

    def challenge(self, need: Need, error: str | None = None) -> str:
        parts = [f'realm="{self.realm}"', f'service="{self.service}"']
        scope = need.scope()
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def authorize(self, authorization: str | None, need: Need, *, continues_upload: bool = False) -> Grant:
        """The caller's grant, if it covers `need`; raise Unauthorized with the challenge otherwise.

        `continues_upload` lets a token that expired recently still continue an upload it may have
        started: a multi-GB push outlives a 30-minute token, and the upload URL (an unguessable
        id) is itself proof the client was allowed to start it. For how long is bounded
        (`upload_grace`), and completing the upload re-checks push access (`recheck_push`).
        """
        if self.mode == "none":
            return ALLOW_ALL
        self._maybe_reload()
        assert self._verifier is not None
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized(headers={"WWW-Authenticate": self.challenge(need)})
        now = self._clock()
        try:
            grant = self._verifier.verify(
                credentials.strip(), now=now, expired_grace=self._upload_grace if continues_upload else 0.0
            )
            if continues_upload and now >= grant.expires_at + LEEWAY_SECONDS + self.upload_grace(grant):
                raise TokenError("token has expired")
        except TokenError as exc:
            raise Unauthorized(
                detail={"reason": str(exc)},
                message="authentication required: the token is not valid here",
                headers={"WWW-Authenticate": self.challenge(need, "invalid_token")},
            ) from None
        if need.type == "base" or grant.allows(need.type, need.name, need.action):
            return grant
        raise Unauthorized(
            detail=[{"Type": need.type, "Name": need.name, "Action": need.action}],
            message="authentication required: the token does not grant this action",
            headers={"WWW-Authenticate": self.challenge(need, "insufficient_scope")},
        )

    def upload_grace(self, grant: Grant) -> float:
        """How long past its expiry `grant` may continue an upload: its own lifetime, at most the
        configured bound (an hour by default)."""
        lifetime = grant.expires_at - grant.issued_at if grant.issued_at > 0 else float("inf")
        return max(0.0, min(lifetime, self._upload_grace))

    def check_upload_grant(self, grant: Grant, started_at: float, need: Need) -> None:
        """A token honoured past its expiry (the upload grace) must have been valid when the
        upload started: an old token cannot take over an upload begun after it expired."""
        if grant.unrestricted or grant.expires_at + LEEWAY_SECONDS >= started_at:
            return
        raise Unauthorized(
            detail={"reason": "token expired before this upload started"},
            message="authentication required: the token is not valid here",
            headers={"WWW-Authenticate": self.challenge(need, "invalid_token")},
        )

    async def recheck_push(self, db: Database, grant: Grant, repository: str) -> None:
        """Raise Forbidden unless the grant's subject still holds push on the repository's
        project (one indexed query); nothing to check without auth."""
        if self.mode == "none" or grant.unrestricted or rbac.system_identity(grant.subject) is not None:
            return  # a system identity (the job service) has no row to recheck: its grant is the rule
        project, slash, _ = repository.partition("/")
        caller, access = None, None
        if grant.subject and slash:  # anonymous never pushes; a name without a project has none
            async with db.read() as conn:
                caller, by_name = await projects.caller_and_access(conn, grant.subject, [project])
            access = by_name.get(project)
        if caller is not None and access is not None:
            identity = rbac.Identity(caller.id, caller.username, caller.sysadmin)
            if rbac.can(identity, access, *rbac.REGISTRY_ACTIONS["push"], anonymous_access=False):
                return
        log.info("push_refused", subject=grant.subject, repository=repository)
        raise Forbidden("push access to the repository's project was revoked", repository=repository)
