"""The one settings scheme of every Wharf service.

Every field is read from `WHARF_<FIELD>`, nested groups with double underscores
(`WHARF_STORAGE__DRIVER`, `WHARF_REGISTRY__AUTH`), or from the TOML file that
`WHARF_CONFIG_FILE` names (same keys, nested tables). Environment wins over the file.
All services share one model so that a host running only the registry still knows the
token service's variables: a `WHARF_*` name that no service knows is a typo and stops
start-up with its name.

Settings are read once, in a service's `__main__`, and passed down; nothing else reads
`os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "WHARF_"
NESTED_DELIMITER = "__"
CONFIG_FILE_VAR = "WHARF_CONFIG_FILE"


class ConfigError(Exception):
    """Settings that cannot start a service; the message names the offending key."""


class _Group(BaseModel):
    model_config = {"extra": "forbid"}


class FilesystemStorageSettings(_Group):
    root: Path | None = Field(
        default=None, description="Directory holding blobs and uploads (default: `<data_dir>/storage`)."
    )


MiB = 1024 * 1024
GiB = 1024 * MiB


class S3StorageSettings(_Group):
    bucket: str = Field(default="wharf", min_length=3, description="S3 bucket holding blobs and uploads.")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (Ceph RGW, MinIO, …); unset for AWS."
    )
    region: str = Field(default="us-east-1", description="S3 region.")
    access_key: str | None = Field(default=None, description="Access key id (unset: boto3's usual sources).")
    secret_key: SecretStr | None = Field(default=None, description="Secret access key.")
    path_style: bool = Field(default=False, description="Path-style addressing (most self-hosted stores).")
    verify_tls: bool = Field(default=True, description="Verify the endpoint's TLS certificate.")
    ca_bundle: Path | None = Field(default=None, description="CA bundle for the endpoint's certificate.")
    prefix: str = Field(default="", description="Key prefix for everything Wharf stores in the bucket.")
    part_size: int = Field(
        default=16 * MiB, ge=5 * MiB, description="Multipart part size; uploads buffer at most this much."
    )
    copy_limit: int = Field(
        default=5 * GiB, ge=5 * MiB, description="Largest single-request copy; larger objects copy in parts."
    )
    redirect: bool = Field(default=False, description="Redirect blob downloads to presigned URLs.")
    redirect_ttl_seconds: int = Field(default=1200, ge=60, description="Lifetime of presigned download URLs.")
    max_threads: int = Field(default=16, ge=1, le=256, description="Threads (and connections) for S3 calls.")
    create_bucket: bool = Field(
        default=False,
        description="Create the bucket when the registry starts and it does not exist (else the "
        "registry refuses to start, naming it).",
    )


class StorageSettings(_Group):
    driver: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="Storage driver for image bytes."
    )
    filesystem: FilesystemStorageSettings = FilesystemStorageSettings()
    s3: S3StorageSettings = S3StorageSettings()


class TokenSettings(_Group):
    service: str = Field(
        default="wharf-registry", description="Token `aud`/`service`: the name the registry answers to."
    )
    issuer: str = Field(default="wharf-token-issuer", description="Token `iss` claim.")
    private_key_file: Path | None = Field(
        default=None,
        description="PEM private key (EC P-256 or RSA) that signs tokens (default: `<data_dir>/token.key`).",
    )
    lifetime_seconds: int = Field(
        default=1800,
        ge=1,
        description="Lifetime of issued tokens (seeds the runtime setting `token_expiration`).",
    )
    host: str = Field(default="127.0.0.1", description="Address the token service listens on.")
    port: int = Field(default=8082, ge=0, le=65535, description="Port the token service listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="Token service worker processes.")
    refresh_lifetime_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="Lifetime of OAuth2 refresh tokens (`access_type=offline`).",
    )
    credential_cache_seconds: int = Field(
        default=300,
        ge=0,
        description="How long verified credentials are remembered (keyed hash, never the password); 0 = off.",
    )
    throttle_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins to one account from one client address (within an hour) before "
        "that account is locked out for that address only: a guesser elsewhere cannot lock the owner out.",
    )
    throttle_address_failures: int = Field(
        default=20,
        ge=1,
        description="Failed logins from one client address, whatever the accounts (within an hour), "
        "before the address is locked out.",
    )
    throttle_lockout_seconds: int = Field(
        default=30, ge=1, description="First lockout; each further failure doubles it (up to an hour)."
    )
    max_scopes: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Most scopes one token request may ask for (each naming at most 255 characters); "
        "more is refused with 400.",
    )


class RegistrySettings(_Group):
    host: str = Field(default="127.0.0.1", description="Address the registry listens on.")
    port: int = Field(default=5000, ge=0, le=65535, description="Port the registry listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes sharing the port.")
    auth: Literal["token", "none"] = Field(
        default="token", description="`token`: Docker token auth; `none`: an open standalone registry."
    )
    token_keys_file: Path | None = Field(
        default=None,
        description="PEM bundle of public keys whose tokens are trusted "
        "(default: `<data_dir>/token-keys.pem`).",
    )
    realm: str | None = Field(
        default=None, description="Token realm in the challenge (default: `<external_url>/service/token`)."
    )
    upload_expiry_seconds: int = Field(
        default=86400, ge=60, description="Idle time after which an unfinished upload is purged."
    )
    upload_purge_interval_seconds: int = Field(
        default=600, ge=1, description="How often each instance looks for expired uploads."
    )
    upload_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Lease of an upload's lock, renewed while a request writes the upload: how long a "
        "holder that still beats (a stalled process) keeps others waiting. A dead holder's lock is "
        "taken over once its liveness key lapses.",
    )
    liveness_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often each registry process refreshes its liveness key in Redis."
    )
    liveness_ttl_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Lifetime of that key: how soon after a process dies others take its upload locks "
        "over. Must exceed the interval.",
    )
    upload_token_grace_seconds: int = Field(
        default=3600,
        ge=0,
        le=86400,
        description="How long after its expiry a token may still continue an upload begun with it: "
        "at most this, and never longer than the token's own lifetime. Completing it re-checks push.",
    )
    manifest_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest manifest accepted."
    )
    cache_ttl_seconds: int = Field(
        default=300, ge=0, description="Lifetime of cached tag and manifest lookups in Redis (0 = no cache)."
    )
    page_size_max: int = Field(default=1000, ge=1, description="Largest `n` for tags list and catalog pages.")

    @model_validator(mode="after")
    def _liveness(self) -> RegistrySettings:
        if self.liveness_ttl_seconds <= self.liveness_interval_seconds:
            raise ValueError(
                "WHARF_REGISTRY__LIVENESS_TTL_SECONDS must exceed WHARF_REGISTRY__LIVENESS_INTERVAL_SECONDS "
                "(the key would lapse between refreshes)"
            )
        return self


class JobServiceSettings(_Group):
    host: str = Field(
        default="127.0.0.1", description="Address the job service's `/health` and `/metrics` listen on."
    )
    port: int = Field(
        default=8083, ge=0, le=65535, description="Port of the job service's `/health` and `/metrics`."
    )
    events_group: str = Field(
        default="audit",
        min_length=1,
        description="Consumer group of the events consumer (audit log, pull counts): instances in one "
        "group share the stream's entries.",
    )
    events_consumer: str | None = Field(
        default=None,
        description="This instance's consumer name in the group (default: `<hostname>-<pid>`).",
    )
    events_batch: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Stream entries read, and written in one transaction, at once.",
    )
    events_block_ms: int = Field(
        default=1000, ge=10, le=20_000, description="How long one read waits for new entries (ms)."
    )
    events_claim_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Entries another consumer read but did not acknowledge for this long (it crashed) "
        "are claimed and processed here.",
    )
    audit_file: Path | None = Field(
        default=None,
        description="Also append each audit record to this JSON-lines file (for a log shipper); "
        "reopened on SIGHUP or when rotated away.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Redis that carries the Celery job queue (default: `WHARF_REDIS_URL`).",
    )
    queue: str = Field(default="wharf", min_length=1, description="Celery queue the jobs go to.")
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Jobs one `wharf-jobservice worker` runs at once (threads)."
    )
    registry_url: str | None = Field(
        default=None,
        description="This Wharf's registry as replication reaches it, with the token flow "
        "(default: `WHARF_EXTERNAL_URL`).",
    )
    task_time_limit_seconds: float = Field(
        default=3600.0, gt=0, description="A job that runs longer is stopped and retried."
    )
    task_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a running task holds its lease (renewed every third of it); a task "
        "whose lease ran out (its worker died) is given to another worker.",
    )
    retry_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts of a task that fails on transient errors."
    )
    retry_backoff_seconds: float = Field(
        default=2.0, gt=0, description="First retry's delay; it doubles with each attempt."
    )
    retry_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest delay between two attempts of a task."
    )
    reconcile_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often the scheduler looks for tasks whose worker died, retries that are "
        "due, and executions whose planning was lost.",
    )
    scheduler_lock_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Lease of the scheduler's Redis lock: one instance fires schedules; another "
        "takes over this long after it died.",
    )
    replication_group: str = Field(
        default="replication",
        min_length=1,
        description="Consumer group of the event-based replication trigger on the event stream.",
    )


def _comma_list(value: Any) -> Any:
    """`a,b` (env) or a list (file): stripped, empty items dropped."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return value


def _url_list(value: Any) -> Any:
    """Base URLs (`http://a:5000,http://b:5000`), without a trailing slash."""
    urls = _comma_list(value)
    if isinstance(urls, list):
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// base URL")
        return [url.rstrip("/") for url in urls]
    return urls


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
UrlList = Annotated[list[str], NoDecode, BeforeValidator(_url_list)]


class UiSettings(_Group):
    host: str = Field(default="127.0.0.1", description="Address the ui service (`/api/v2.0`) listens on.")
    port: int = Field(default=8081, ge=0, le=65535, description="Port the ui service listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="UI worker processes sharing the port.")
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body `/api/` accepts (413 beyond)."
    )
    session_seconds: int = Field(
        default=1800,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a portal session (`/c/login`) lasts without use; each request extends it.",
    )
    proxy_urls: UrlList = Field(
        default_factory=list,
        description="Proxy instances whose `/health/upstreams` the portal's dashboard shows "
        "(comma-separated base URLs; none: the external URL). Sent the metrics token if one is set.",
    )


class UpstreamSettings(_Group):
    registry: UrlList = Field(
        default_factory=lambda: ["http://127.0.0.1:5000"],
        description="Registry instances behind `/v2/` (comma-separated base URLs).",
    )
    token: UrlList = Field(
        default_factory=lambda: ["http://127.0.0.1:8082"],
        description="Token service instances behind `/service/token`.",
    )
    ui: UrlList = Field(
        default_factory=list,
        description="UI instances behind `/api/`, `/c/` and `/` (none: those paths are 404).",
    )


class ProxySettings(_Group):
    host: str = Field(default="127.0.0.1", description="Address the proxy listens on.")
    workers: int = Field(default=2, ge=1, le=64, description="Proxy worker processes sharing the port.")
    upstreams: UpstreamSettings = UpstreamSettings()
    upstreams_file: Path | None = Field(
        default=None,
        description="TOML file of the pools instead of `WHARF_PROXY__UPSTREAMS__*` (an error to set "
        "both): `registry = [...]`, `token = [...]`, `ui = [...]`, base URLs, a key left out meaning "
        "no instance. Re-read live when it changes (checked every health interval, and on SIGHUP); "
        "replace it atomically (write, then rename).",
    )
    upstream_slots: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Most upstreams, all pools together, the proxy's workers keep verdicts on at once "
        "(the shared board's fixed size); an upstreams file listing more is refused.",
    )
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS.")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of the certificate.")
    health_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often each upstream's readiness (`/health/ready`) is checked (by one worker).",
    )
    eject_after_failures: int = Field(
        default=3, ge=1, description="Consecutive failures (checks or requests) that take an upstream out."
    )
    eject_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long an ejected upstream stays out at least; then the first passing check "
        "puts it back (one that passes checks yet fails requests does not flap).",
    )
    connect_timeout_seconds: float = Field(default=3.0, gt=0, description="Connect timeout to an upstream.")
    read_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest silence from an upstream: no response byte for this long once the request "
        "is sent (or no request byte taken while one is sent) is answered 504 and counts as a failure.",
    )
    upstream_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long an idle connection to an upstream is kept for reuse "
        "(keep it below the upstreams' `WHARF_SERVING__KEEPALIVE_SECONDS`).",
    )
    retry_body_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="Bodies up to this size are held, so that a failed attempt can be retried elsewhere.",
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Where upload bodies are kept while they are forwarded, so that one cut off by a "
        "dying registry instance can be sent on to another (default: the system's temp dir).",
    )
    spool_bytes: int = Field(
        default=256 * MiB,
        ge=0,
        description="Most bytes of one upload body kept in the spool; a larger body goes on without "
        "it (a cut-off is then 503 and the client retries). 0: no continuation of uploads.",
    )
    spool_total_bytes: int = Field(
        default=GiB,
        ge=0,
        description="Most bytes all the upload bodies in the spool take at once, per proxy worker process.",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long requests in flight may take to finish."
    )
    local_blobs: bool = Field(
        default=True,
        description="Send blob downloads from the storage root with sendfile, by the registry's "
        "internal redirect, when this host can read the registry's filesystem storage.",
    )
    storage_root: Path | None = Field(
        default=None,
        description="The registry's filesystem storage as mounted on this host (default: the "
        "storage root when `WHARF_STORAGE__DRIVER` is `filesystem`; none with `s3`). "
        "Local blobs are off while the directory is absent.",
    )

    @model_validator(mode="after")
    def _one_source_of_pools(self) -> ProxySettings:
        if self.upstreams_file is not None and self.upstreams.model_fields_set:
            named = ", ".join(
                f"WHARF_PROXY__UPSTREAMS__{name.upper()}" for name in sorted(self.upstreams.model_fields_set)
            )
            raise ValueError(
                f"WHARF_PROXY__UPSTREAMS_FILE names the pools, and so does {named}: set one or the other"
            )
        return self


class ServingSettings(_Group):
    """How every service treats its client connections (shared/serving.py)."""

    header_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="A request head must be complete this long after its first byte (or after the "
        "previous response); else 408 and the connection closes.",
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest silence within a request body (while the server waits for it); "
        "the connection then closes. A slow but steady upload is never cut off.",
    )
    keepalive_seconds: float = Field(
        default=75.0, gt=0, description="An idle keep-alive connection closes after this long."
    )
    max_connections_per_client: int = Field(
        default=128,
        ge=0,
        description="Open connections per client address in each worker process (0: no cap); more "
        "are answered 429. Addresses in `WHARF_TRUSTED_PROXIES` are exempt.",
    )
    linger_seconds: float = Field(
        default=2.0,
        ge=0,
        description="After refusing a malformed request, how long the rest of what the client sends "
        "is read and discarded, so that it sees the answer rather than a reset.",
    )
    max_request_line_bytes: int = Field(
        default=8190, ge=256, description="Longest request line (method, target, version); longer is 414."
    )
    max_header_bytes: int = Field(
        default=16384, ge=256, description="Longest header field (name and value); longer is 431."
    )
    max_headers: int = Field(default=128, ge=8, description="Most header fields in a request; more is 431.")


LOOPBACK = ["127.0.0.0/8", "::1/128"]


class MetricsSettings(_Group):
    """Who may read `/metrics` (every service)."""

    allow: CommaList = Field(
        default=LOOPBACK,
        description="Client addresses (CIDR) that may read `/metrics`; a relayed request "
        "(one with `X-Forwarded-For` or `Forwarded`) needs the token whatever its address.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token that reads `/metrics` from anywhere (`Authorization: Bearer …`).",
    )

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value


class Settings(BaseSettings):
    """Settings of every Wharf service; one instance per process, built by `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        env_ignore_empty=True,  # `WHARF_X=` means "unset", not "the empty path"
    )

    data_dir: Path = Field(default=Path("var"), description="Directory for the embedded defaults' state.")
    drain_file: Path | None = Field(
        default=None,
        description="While this file exists, every service on this host answers `/health/ready` with "
        "503 (`drain: draining`), so that proxies take it out of rotation, and still serves requests; "
        "`wharf drain on|off` makes and removes it (default: `<data_dir>/drain`).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQL database: `postgresql://`, `mysql://` (MariaDB too) or `sqlite:///path` "
        "(default: SQLite at `<data_dir>/wharf.db`).",
    )
    database_pool_size: int = Field(default=10, ge=1, description="SQL connections per process.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for sessions, caches, events."
    )
    external_url: str = Field(
        default="http://127.0.0.1:8080", description="The address clients use (the proxy's), without a path."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts stored credentials (replication registries' secrets) and "
        "proves the job service to the token service; the same on every host (default: the file "
        "`WHARF_SECRET_KEY_FILE`).",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="File holding the secret key when `WHARF_SECRET_KEY` is not set "
        "(default: `<data_dir>/secret.key`, created by `wharf init`).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    anonymous_access: bool = Field(
        default=True,
        description="Anonymous pull of public projects (seeds the runtime setting on first start).",
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password of `admin` when `wharf init` creates it (else generated, printed once).",
    )
    runtime_channel: str = Field(
        default="wharf:runtime",
        min_length=1,
        description="Redis pub/sub channel on which a change of the runtime settings "
        "(`/api/v2.0/configurations`) is announced to every process.",
    )
    runtime_reread_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a process keeps the runtime settings it read; the fallback when a "
        "change announcement is lost (an announced change applies at once).",
    )
    events_stream: str = Field(default="wharf:events", description="Redis stream that carries events.")
    events_max_len: int = Field(
        default=1_000_000, ge=1000, description="Approximate length cap of the stream."
    )
    events_relay_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often each instance relays outbox events that another instance left behind "
        "(its own go out right after their commit).",
    )
    events_relay_backoff_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait between relay attempts while Redis is down; the events stay in the outbox.",
    )
    trusted_proxies: CommaList = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Addresses (CIDR) whose `X-Forwarded-For` is believed: the proxies in front "
        "(login throttling keys on the client address).",
    )
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the proxy (the front door).")
    storage: StorageSettings = StorageSettings()
    registry: RegistrySettings = RegistrySettings()
    token: TokenSettings = TokenSettings()
    ui: UiSettings = UiSettings()
    proxy: ProxySettings = ProxySettings()
    jobservice: JobServiceSettings = JobServiceSettings()
    serving: ServingSettings = ServingSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init carries the TOML file's values (see load_settings); env overrides them.
        return (env_settings, init_settings)

    # Paths derived from data_dir, so one variable relocates the embedded defaults.
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'wharf.db').resolve()}"

    @property
    def drain_path(self) -> Path:
        return (self.drain_file or self.data_dir / "drain").resolve()

    @property
    def storage_root(self) -> Path:
        return (self.storage.filesystem.root or self.data_dir / "storage").resolve()

    @property
    def proxy_storage_root(self) -> Path | None:
        """Where the proxy reads blobs the registry wrote, or None: local blobs are off."""
        if not self.proxy.local_blobs:
            return None
        if self.proxy.storage_root is not None:
            return self.proxy.storage_root.resolve()
        return self.storage_root if self.storage.driver == "filesystem" else None

    @property
    def token_private_key_path(self) -> Path:
        return (self.token.private_key_file or self.data_dir / "token.key").resolve()

    @property
    def token_keys_path(self) -> Path:
        return (self.registry.token_keys_file or self.data_dir / "token-keys.pem").resolve()

    @property
    def secret_key_path(self) -> Path:
        return (self.secret_key_file or self.data_dir / "secret.key").resolve()

    def secret_key_bytes(self) -> bytes:
        """The secret key: `WHARF_SECRET_KEY`, else the key file's contents (OSError when missing)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return self.secret_key_path.read_bytes().strip()

    @property
    def effective_broker_url(self) -> str:
        return self.jobservice.broker_url or self.redis_url

    @property
    def local_registry_url(self) -> str:
        return (self.jobservice.registry_url or self.external_url).rstrip("/")

    @property
    def token_realm(self) -> str:
        return self.registry.realm or self.external_url.rstrip("/") + "/service/token"


def _field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        yield path
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _field_paths(annotation, path)


def known_variables() -> set[str]:
    """Every `WHARF_*` variable name some service understands."""
    names = {ENV_PREFIX + NESTED_DELIMITER.join(p).upper() for p in _field_paths(Settings)}
    return names | {CONFIG_FILE_VAR}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    known = known_variables()
    return sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def load_settings() -> Settings:
    """Read settings once: the TOML file (if named), then `WHARF_*` variables over it."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)}: no Wharf service reads it (a typo?)")
    file_values: dict[str, Any] = {}
    config_file = os.environ.get(CONFIG_FILE_VAR)
    if config_file:
        try:
            file_values = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{CONFIG_FILE_VAR}={config_file}: {exc}") from exc
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ENV_PREFIX + NESTED_DELIMITER.join(str(p) for p in err["loc"]).upper()
        parts.append(f"{loc}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as a flat `WHARF_*` → value map, secrets and URL passwords masked."""
    flat: dict[str, Any] = {}

    def visit(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                visit(value, key + NESTED_DELIMITER)
            elif isinstance(value, SecretStr):
                flat[key] = "********" if value.get_secret_value() else ""
            elif isinstance(value, str):
                flat[key] = mask_url(value)
            else:
                flat[key] = None if value is None else str(value)

    visit(settings, ENV_PREFIX)
    return flat


# `scheme://user:password@`. The password runs to the last `@` of the word, as `urlsplit` reads
# it, so one holding an unescaped `@` is masked whole; it may hold JSON escapes (`\"`, `\u00e9`)
# because log lines are masked after rendering.
_URL_PASSWORD = re.compile(r"""(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'"]*:)(?:[^\s"\\]|\\.)*@""")


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it masked: `postgresql://wharf:********@db/wharf`.

    For a banner, a message or a log line that shows a URL (or an error that may quote one)."""
    if "://" not in text or "@" not in text:
        return text
    return _URL_PASSWORD.sub(r"\1********@", text)
