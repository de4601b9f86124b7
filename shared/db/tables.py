"""Every table, in one MetaData: the schema's source of truth (migrations are generated from it).

Registry metadata: a repository holds blob links (what may be pulled or referenced in it),
manifests (by digest), and tags pointing at manifests. Bytes live in storage; these rows are
what makes them visible, written in the transaction that makes a manifest visible.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from wharf_shared import platforms
from wharf_shared.db.types import BigId, UTCDateTime, binary_string

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

DIGEST_LEN = 150  # "sha512:" + 128 hex, with room
MEDIA_TYPE_LEN = 255

repository = Table(
    "repository",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", binary_string(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Harbor's `pull_count`: manifest GETs, counted by the job service's event consumer.
    Column("pull_count", BigInteger, nullable=False, server_default="0"),
    # Harbor's repository description, set through the management API (NULL: none given).
    Column("description", Text, nullable=True),
    # The unique name's index also serves a project's repositories: a name range (`proj/`…`proj0`).
    UniqueConstraint("name"),
)

blob = Table(
    "blob",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("digest", String(DIGEST_LEN), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("digest"),
)

# A blob may be pulled from, and referenced by manifests in, the repositories it is linked to.
repository_blob = Table(
    "repository_blob",
    metadata,
    Column("repository_id", BigId, ForeignKey("repository.id", ondelete="CASCADE"), nullable=False),
    Column("blob_id", BigId, ForeignKey("blob.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("repository_id", "blob_id"),
    Index(None, "blob_id"),
)

manifest = Table(
    "manifest",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("repository_id", BigId, ForeignKey("repository.id", ondelete="CASCADE"), nullable=False),
    Column("digest", String(DIGEST_LEN), nullable=False),
    Column("media_type", String(MEDIA_TYPE_LEN), nullable=False),
    Column("size", BigInteger, nullable=False),
    # The referrers API's artifactType: the manifest's own, else its config's media type.
    Column("artifact_type", String(MEDIA_TYPE_LEN), nullable=True),
    Column("subject_digest", String(DIGEST_LEN), nullable=True),
    # JSON object, for referrers descriptors; a manifest may be 4 MiB, past MySQL's 64 KiB TEXT.
    Column("annotations", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Harbor's artifact `pull_time`: the latest pull's event time (NULL: never pulled).
    Column("pull_time", UTCDateTime(), nullable=True),
    UniqueConstraint("repository_id", "digest"),
    Index(None, "repository_id", "subject_digest"),
    # A repository's artifacts in the API's default order, newest pushes first (a backward scan).
    Index(None, "repository_id", "created_at", "id"),
)

# Blobs (config and layers) a manifest references; garbage collection keeps these. Each row also
# points at the repository's link to the blob (`repository_id` is the manifest's repository), so
# the database itself refuses a reference to a blob the repository no longer holds and an unlink
# of a blob a manifest still references, whatever order concurrent writers commit in.
manifest_blob = Table(
    "manifest_blob",
    metadata,
    Column("manifest_id", BigId, ForeignKey("manifest.id", ondelete="CASCADE"), nullable=False),
    Column("repository_id", BigId, nullable=False),
    Column("blob_id", BigId, ForeignKey("blob.id"), nullable=False),
    PrimaryKeyConstraint("manifest_id", "blob_id"),
    ForeignKeyConstraint(
        ["repository_id", "blob_id"], ["repository_blob.repository_id", "repository_blob.blob_id"]
    ),
    Index(None, "blob_id"),
    Index(None, "repository_id", "blob_id"),
)

# Manifests an index (or manifest list) references. A referenced child cannot be deleted.
manifest_child = Table(
    "manifest_child",
    metadata,
    Column("parent_id", BigId, ForeignKey("manifest.id", ondelete="CASCADE"), nullable=False),
    Column("child_id", BigId, ForeignKey("manifest.id"), nullable=False),
    # The platform the index gives the child (`wharf_shared.platforms`), for readers without
    # the index's bytes. NULL: none usable, or recorded before these columns came (0008).
    Column("os", String(platforms.OS_LEN), nullable=True),
    Column("architecture", String(platforms.ARCHITECTURE_LEN), nullable=True),
    Column("variant", String(platforms.VARIANT_LEN), nullable=True),
    Column("os_version", String(platforms.OS_VERSION_LEN), nullable=True),
    PrimaryKeyConstraint("parent_id", "child_id"),
    Index(None, "child_id"),
)

tag = Table(
    "tag",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("repository_id", BigId, ForeignKey("repository.id", ondelete="CASCADE"), nullable=False),
    Column("name", binary_string(128), nullable=False),
    Column("manifest_id", BigId, ForeignKey("manifest.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("repository_id", "name"),
    # An artifact's tags in the API's default order, newest first; also the foreign key's index.
    Index(None, "manifest_id", "updated_at", "id"),
)

# Events written in the transaction of the change they record, relayed to the Redis stream
# afterwards (at least once; consumers de-duplicate by the event's id) and then deleted.
event_outbox = Table(
    "event_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_type", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # the event's JSON, as the stream carries it
    Column("created_at", UTCDateTime(), nullable=False),
)

# The audit trail (Harbor's audit_log): who did what to which resource, and when. Written by the job
# service's event consumer, one row per event; `event_id` (the event's own id) is unique, so an
# event delivered twice is recorded once. `project_id` is NULL for what belongs to no project
# (logins, users) and for repositories outside any project; no foreign key: a project's log
# outlives the project.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("project_id", BigId, nullable=True),
    Column("resource_type", String(32), nullable=False),  # artifact, tag, repository, project, user, member
    Column("resource", String(512), nullable=False),  # `library/app:v1`, `library/app@sha256:…`, a name
    Column("operation", String(32), nullable=False),  # create, delete, pull, login
    Column("username", String(255), nullable=False),  # the operator; `anonymous` for none
    Column("op_time", UTCDateTime(), nullable=False),
    # Harbor's newer entries' description; a login's: the auth backend that checked it (http_auth).
    Column("operation_description", String(255), nullable=True),
    UniqueConstraint("event_id"),
    Index(None, "op_time"),  # /audit-logs, newest first
    Index(None, "project_id", "op_time"),  # /projects/{p}/logs
)

# -- identity: users, projects, members; runtime settings --------------------------------------

user_account = Table(
    "user_account",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", binary_string(255), nullable=False),
    Column("email", String(255), nullable=True),
    Column("realname", String(255), nullable=False, default=""),
    Column("comment", String(1024), nullable=False, default=""),
    # argon2id PHC string; NULL for users who sign in elsewhere (LDAP, CAS) and have no password here.
    Column("password_hash", String(255), nullable=True),
    Column("sysadmin", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The auth mode whose directory made the user (http_auth, ldap_auth, ...); NULL: a local user.
    Column("auth_backend", String(16), nullable=True),
    # A CAS or OIDC user's CLI secret (docker/skopeo logins), SecretBox ciphertext; NULL otherwise.
    Column("cli_secret", String(1024), nullable=True),
    # An OIDC user's identity at the provider (sha256 hex of issuer NUL subject): the account
    # follows it, not the username claim, so a reused name never gets someone else's account.
    Column("sso_subject", String(64), nullable=True),
    UniqueConstraint("username"),
    UniqueConstraint("email"),
    Index(None, "sso_subject", unique=True),
)

# An OIDC user's refresh token from their last sign-in (SecretBox ciphertext), with which the job
# service's group sync asks the provider for their groups (`wharf_shared.oidc_group_sync`).
oidc_refresh_token = Table(
    "oidc_refresh_token",
    metadata,
    Column("user_id", BigId, ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True),
    Column("token", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

project = Table(
    "project",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", binary_string(255), nullable=False),
    Column("public", Boolean, nullable=False, default=False),
    Column("owner_id", BigId, ForeignKey("user_account.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name"),
    Index(None, "owner_id"),
)

# Harbor's role ids: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest.
project_member = Table(
    "project_member",
    metadata,
    Column("project_id", BigId, ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigId, ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False),
    Column("role_id", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("project_id", "user_id"),
    Index(None, "user_id"),
)

# Directory groups (Harbor's user_group): group_type 1 LDAP, 2 HTTP, 3 OIDC (Harbor's), 4 CAS
# (Wharf's). `group_key` is what a backend names the group by, the DN of an LDAP group (without
# case, `groups.dn_key`) and the name of any other, unique per type, so two logins creating the
# same group meet on the key (an LDAP group's name, its cn, may repeat across branches of the
# directory; its DN may not).
user_group = Table(
    "user_group",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("group_name", binary_string(255), nullable=False),
    Column("group_type", Integer, nullable=False),
    Column("group_key", binary_string(512), nullable=False),
    Column("ldap_group_dn", binary_string(512), nullable=True),  # set for LDAP groups only
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("group_type", "group_key"),
    UniqueConstraint("ldap_group_dn"),
    Index(None, "group_name"),
)

# Groups as project members, beside users in `project_member` rather than in it: that table's key
# (project, user) is what the token path probes, and older code keeps reading it unchanged.
project_group_member = Table(
    "project_group_member",
    metadata,
    Column("project_id", BigId, ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", BigId, ForeignKey("user_group.id", ondelete="CASCADE"), nullable=False),
    Column("role_id", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("project_id", "group_id"),
    Index(None, "group_id"),
)

# Who a directory says belongs to a group: written at each login (the user's groups) and by the
# scheduled sync (a group's users); `synced_at` is when a backend last confirmed the row.
user_group_member = Table(
    "user_group_member",
    metadata,
    Column("user_id", BigId, ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", BigId, ForeignKey("user_group.id", ondelete="CASCADE"), nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("user_id", "group_id"),
    Index(None, "group_id"),
)

# Project memberships the CMDB sync granted (`wharf_shared.cmdb`): only these may it remove or
# downgrade later (under `cmdb_remove_members`); members added by hand are never its to touch.
# `member_type` "u" (a user, `member_id` = user id) or "g" (a group, `member_id` = group id).
cmdb_grant = Table(
    "cmdb_grant",
    metadata,
    Column("project_id", BigId, ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
    Column("member_type", String(1), nullable=False),
    Column("member_id", BigId, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("project_id", "member_type", "member_id"),
)

# Settings an admin changes at run time (Harbor's /configurations); env variables only seed them.
configuration = Table(
    "configuration",
    metadata,
    Column("key", String(128), nullable=False),
    Column("value", Text, nullable=False),  # JSON
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("key"),
)

# -- job service: replication destinations and policies; executions, tasks, task logs ----------

# Harbor's registries (replication endpoints): another Wharf or Harbor (`harbor`), or any OCI/Docker
# v2 registry (`docker-registry`). The secret is encrypted with the secret key (wharf_shared.secrets).
registry_endpoint = Table(
    "registry_endpoint",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", binary_string(255), nullable=False),
    Column("description", String(1024), nullable=False, default=""),
    Column("type", String(32), nullable=False),  # harbor, docker-registry
    Column("url", String(1024), nullable=False),
    Column("insecure", Boolean, nullable=False, default=False),
    Column("credential_type", String(16), nullable=False, default="basic"),
    Column("access_key", String(255), nullable=True),  # the username
    Column("access_secret", Text, nullable=True),  # encrypted (Fernet token), NULL: none
    Column("status", String(16), nullable=False, default="unknown"),  # healthy, unhealthy, unknown
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name"),
)

# Harbor's replication policies. A NULL registry is this Wharf: push-based policies have no source
# registry, pull-based ones no destination. `every_registry` (Wharf's own): a push-based policy
# whose destination is every registered registry, those added later too.
replication_policy = Table(
    "replication_policy",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", binary_string(255), nullable=False),
    Column("description", String(1024), nullable=False, default=""),
    Column("src_registry_id", BigId, ForeignKey("registry_endpoint.id"), nullable=True),
    Column("dest_registry_id", BigId, ForeignKey("registry_endpoint.id"), nullable=True),
    Column("every_registry", Boolean, nullable=False, default=False),
    Column("dest_namespace", String(255), nullable=True),
    Column("dest_namespace_replace_count", Integer, nullable=False, default=-1),
    Column("trigger_type", String(16), nullable=False),  # manual, scheduled, event_based
    Column("cron", String(128), nullable=True),  # Harbor's 6 fields, seconds first
    Column("filters", Text, nullable=False, default="[]"),  # JSON: [{type, value, decoration}]
    Column("replicate_deletion", Boolean, nullable=False, default=False),
    Column("override", Boolean, nullable=False, default=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("speed_kb", Integer, nullable=False, default=-1),  # KiB/s per task; -1 or 0: unlimited
    Column("copy_by_chunk", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name"),
    Index(None, "src_registry_id"),
    Index(None, "dest_registry_id"),
)

# One run of a job (Harbor's execution): `vendor_type` says which (REPLICATION), `vendor_id` which
# policy. SQL is the truth; Celery messages only carry ids. `planned` is set once the execution's
# tasks exist: the reconciler plans again an execution whose planning was lost.
execution = Table(
    "execution",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("vendor_type", String(32), nullable=False),
    Column("vendor_id", BigId, nullable=False),
    Column("status", String(16), nullable=False),  # Running, Success, Error, Stopped
    Column("status_message", Text, nullable=False, default=""),
    Column("trigger", String(16), nullable=False),  # manual, scheduled, event_based
    Column("extra", Text, nullable=False, default="{}"),  # JSON: what the trigger said (an event's resources)
    Column("planned", Boolean, nullable=False, default=False),
    Column("start_time", UTCDateTime(), nullable=False),
    Column("end_time", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "vendor_type", "vendor_id", "id"),
    Index(None, "status", "updated_at"),
)

# One unit of an execution's work (a copy or a deletion of one artifact). A worker claims it with a
# lease it renews while it runs; a task whose lease ran out (its worker died) is taken up again.
task = Table(
    "task",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("execution_id", BigId, ForeignKey("execution.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # Pending, Running, Success, Error, Stopped
    Column("status_message", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run_after", UTCDateTime(), nullable=True),  # a retry's backoff: not before then
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("worker", String(255), nullable=True),
    Column("job", Text, nullable=False),  # JSON: what to do (the job's own parameters)
    Column("resource_type", String(32), nullable=False, default="artifact"),
    Column("operation", String(16), nullable=False),  # copy, deletion
    Column("src_resource", String(1024), nullable=False, default=""),
    Column("dst_resource", String(1024), nullable=False, default=""),
    Column("bytes_copied", BigInteger, nullable=False, default=0),
    Column("start_time", UTCDateTime(), nullable=True),
    Column("end_time", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "execution_id", "id"),
    Index(None, "status", "lease_until"),
)

# A task's log, a line per row (appended as it runs; read as text by the API).
task_log = Table(
    "task_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", BigId, ForeignKey("task.id", ondelete="CASCADE"), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("line", Text, nullable=False),
    Index(None, "task_id", "id"),
)

# -- schema compatibility ------------------------------------------------------------------------

# Per migration revision, the oldest revision whose code still works on a schema at it: written by
# `wharf migrate` from the version files, read by older code that finds a newer schema (schema.py).
schema_compat = Table(
    "schema_compat",
    metadata,
    Column("revision", String(32), nullable=False),  # Alembic's revision ids are at most 32
    Column("oldest_compatible", String(32), nullable=False),
    PrimaryKeyConstraint("revision"),
)
