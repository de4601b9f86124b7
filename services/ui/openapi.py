"""Our OpenAPI (Swagger 2.0, as Harbor's) document of what `/api/v2.0` implements: Harbor's paths,
parameters and field names, written here; served at `/api/v2.0/swagger.json` and what the
schemathesis test holds every answer to. Add a path here with its route."""

from __future__ import annotations

from typing import Any

from wharf_shared.runtime import AUTH_MODES
from wharf_ui.configurations import KEYS as CONFIG_KEYS

ID_MAX = 2**63 - 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "schema": _ref("Errors")}


_ERRORS = {
    "400": _error("Bad request"),
    "401": _error("Unauthorized"),
    "403": _error("Forbidden"),
    "404": _error("Not found"),
    "405": _error("Method not allowed"),
    "409": _error("Conflict"),
    "412": _error("Precondition failed"),
    "413": _error("Request body too large"),
    "429": _error("Too many failed logins"),
    "500": _error("Internal server error"),
    "503": _error("A dependency is unavailable"),
}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    return {**ok, **{code: _ERRORS[code] for code in ("401", "429", "500", "503", *codes)}}


def _ok(schema: dict[str, Any] | None = None, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "Success"}
    if schema is not None:
        answer["schema"] = schema
    if headers:
        answer["headers"] = headers
    return {"200": answer}


_PAGE_HEADERS = {
    "X-Total-Count": {"type": "integer", "description": "The total count of items"},
    "Link": {"type": "string", "description": "Links to the previous and next pages"},
}
_PAGE = {"name": "page", "in": "query", "type": "integer", "format": "int64", "default": 1, "minimum": 1}
_PAGE_SIZE = {
    "name": "page_size",
    "in": "query",
    "type": "integer",
    "format": "int64",
    "default": 10,
    "minimum": 1,
    "maximum": 100,
}
_Q = {"name": "q", "in": "query", "type": "string", "description": "Query: k=v, k=~v, k=[a~b], k={a b}"}
_SORT = {"name": "sort", "in": "query", "type": "string", "description": "e.g. username,-creation_time"}
_USER_SORT = {
    **_SORT,
    "pattern": r"^-?(user_id|username|email|creation_time|update_time)$",
}
_USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "type": "integer",
    "format": "int64",
    "minimum": 1,
    "maximum": ID_MAX,
}
_REQUEST_ID = {"name": "X-Request-Id", "in": "header", "type": "string", "maxLength": 128}
# audit log
_AUDIT_SORT = r"^-?(op_time|id|username|resource|resource_type|operation)$"
_IS_RESOURCE_NAME = {
    "name": "X-Is-Resource-Name",
    "in": "header",
    "type": "boolean",
    "default": False,
    "description": "The project is named by its name even when that is a number",
}
_PROJECT_NAME_OR_ID = {
    "name": "project_name_or_id",
    "in": "path",
    "required": True,
    "type": "string",
    "description": "The project's id, or its name (a number is an id unless X-Is-Resource-Name is true)",
}


def _body(name: str) -> dict[str, Any]:
    return {"name": "body", "in": "body", "required": True, "schema": _ref(name)}


_TIME = {"type": "string", "format": "date-time", "x-nullable": True}
_STR = {"type": "string"}

DEFINITIONS: dict[str, Any] = {
    "Errors": {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": _STR, "message": _STR},
                },
            }
        },
    },
    "UserResp": {
        "type": "object",
        "required": ["user_id", "username", "email", "realname", "comment", "sysadmin_flag"],
        "properties": {
            "user_id": {"type": "integer"},
            "username": _STR,
            "email": _STR,
            "realname": _STR,
            "comment": _STR,
            "sysadmin_flag": {"type": "boolean"},
            "admin_role_in_auth": {"type": "boolean"},
            "oidc_user_meta": _ref("OIDCUserInfo"),  # /users/current of a CAS or OIDC user
            "creation_time": _TIME,
            "update_time": _TIME,
        },
    },
    "OIDCUserInfo": {
        "type": "object",
        "properties": {"user_id": {"type": "integer"}, "secret": _STR},
    },
    "OIDCCliSecretReq": {
        "type": "object",
        "properties": {"secret": _STR},
    },
    "UserSearchRespItem": {
        "type": "object",
        "required": ["user_id", "username"],
        "properties": {"user_id": {"type": "integer"}, "username": _STR},
    },
    "UserCreationReq": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "maxLength": 255},
            "email": {"type": "string", "maxLength": 255},
            "realname": _STR,
            "password": _STR,
            "comment": _STR,
        },
    },
    "UserProfile": {
        "type": "object",
        "properties": {"email": _STR, "realname": _STR, "comment": _STR},
    },
    "PasswordReq": {
        "type": "object",
        "required": ["new_password"],
        "properties": {"old_password": _STR, "new_password": _STR},
    },
    "UserSysAdminFlag": {
        "type": "object",
        "required": ["sysadmin_flag"],
        "properties": {"sysadmin_flag": {"type": "boolean"}},
    },
    "Permission": {
        "type": "object",
        "required": ["resource", "action"],
        "properties": {"resource": _STR, "action": _STR},
    },
    "OverallHealthStatus": {
        "type": "object",
        "required": ["status", "components"],
        "properties": {
            "status": _STR,
            "components": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "status"],
                    "properties": {"name": _STR, "status": _STR, "error": _STR},
                },
            },
        },
    },
    "GeneralInfo": {
        "type": "object",
        "required": ["auth_mode", "self_registration", "harbor_version", "current_time"],
        "properties": {
            "auth_mode": _STR,
            "primary_auth_mode": {"type": "boolean"},
            "self_registration": {"type": "boolean"},
            "harbor_version": _STR,
            "banner_message": _STR,
            "current_time": _TIME,
            "external_url": _STR,
            "registry_url": _STR,
            "project_creation_restriction": _STR,
            "read_only": {"type": "boolean"},
            "has_ca_root": {"type": "boolean"},
            "with_chartmuseum": {"type": "boolean"},
            "notification_enable": {"type": "boolean"},
            "registry_storage_provider_name": _STR,
        },
    },
    # audit log
    "AuditLog": {
        "type": "object",
        "required": ["id", "username", "resource", "resource_type", "operation", "op_time"],
        "properties": {
            "id": {"type": "integer"},
            "username": _STR,
            "resource": _STR,
            "resource_type": _STR,
            "operation": _STR,
            "op_time": {"type": "string", "format": "date-time"},
            "operation_description": {"type": "string", "description": "a login's: the auth backend"},
        },
    },
}

_CREATED = {
    "201": {
        "description": "Created",
        "headers": {"Location": {"type": "string", "description": "The URL of the created resource"}},
    }
}


def _op(
    op_id: str,
    responses: dict[str, Any],
    *parameters: dict[str, Any],
    tag: str = "user",
    anonymous: bool = False,
) -> dict[str, Any]:
    """`anonymous`: credentials are optional (the answer may say more to a signed-in caller)."""
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [tag],
        "parameters": [_REQUEST_ID, *parameters],
        "responses": responses,
    }
    if anonymous:
        op["security"] = [{}, {"basic": []}]
    return op


PATHS: dict[str, Any] = {
    "/ping": {
        "get": _op("getPing", {"200": {"description": "Pong", "schema": _STR}}, tag="ping", anonymous=True),
    },
    "/health": {
        "get": _op(
            "getHealth",
            {**_ok(_ref("OverallHealthStatus")), "500": _ERRORS["500"]},
            tag="health",
            anonymous=True,
        ),
    },
    "/systeminfo": {
        "get": _op("getSystemInfo", _responses(_ok(_ref("GeneralInfo"))), tag="systeminfo", anonymous=True),
    },
    "/users": {
        "get": _op(
            "listUsers",
            _responses(_ok({"type": "array", "items": _ref("UserResp")}, _PAGE_HEADERS), "400", "403"),
            _Q,
            _USER_SORT,
            _PAGE,
            _PAGE_SIZE,
        ),
        "post": _op(
            "createUser",
            {**_CREATED, **_responses({}, "400", "403", "409", "413")},
            _body("UserCreationReq"),
        ),
    },
    "/users/search": {
        "get": _op(
            "searchUsers",
            _responses(_ok({"type": "array", "items": _ref("UserSearchRespItem")}, _PAGE_HEADERS), "400"),
            {
                "name": "username",
                "in": "query",
                "required": True,
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
            },
            _PAGE,
            _PAGE_SIZE,
        ),
    },
    "/users/current": {
        "get": _op("getCurrentUserInfo", _responses(_ok(_ref("UserResp")))),
    },
    "/users/current/permissions": {
        "get": _op(
            "getCurrentUserPermissions",
            _responses(_ok({"type": "array", "items": _ref("Permission")}), "400"),
            {"name": "scope", "in": "query", "type": "string"},
            {"name": "relative", "in": "query", "type": "boolean"},
        ),
    },
    "/users/{user_id}": {
        "get": _op("getUser", _responses(_ok(_ref("UserResp")), "400", "403", "404"), _USER_ID),
        "put": _op(
            "updateUserProfile",
            _responses(_ok(), "400", "403", "404", "409", "413"),
            _USER_ID,
            _body("UserProfile"),
        ),
        "delete": _op("deleteUser", _responses(_ok(), "400", "403", "404", "412"), _USER_ID),
    },
    "/users/{user_id}/password": {
        "put": _op(
            "updateUserPassword",
            _responses(_ok(), "400", "403", "404", "413"),
            _USER_ID,
            _body("PasswordReq"),
        ),
    },
    "/users/{user_id}/sysadmin": {
        "put": _op(
            "setUserSysAdmin",
            _responses(_ok(), "400", "403", "404", "413"),
            _USER_ID,
            _body("UserSysAdminFlag"),
        ),
    },
    "/users/{user_id}/cli_secret": {
        "put": _op(
            "setCliSecret",
            _responses(_ok(), "400", "403", "404", "412", "413"),
            _USER_ID,
            _body("OIDCCliSecretReq"),
        ),
    },
    # audit log
    "/audit-logs": {
        "get": _op(
            "listAuditLogs",
            _responses(_ok({"type": "array", "items": _ref("AuditLog")}, _PAGE_HEADERS), "400", "403"),
            _Q,
            {**_SORT, "pattern": _AUDIT_SORT},
            _PAGE,
            _PAGE_SIZE,
            tag="auditlog",
        ),
    },
    "/projects/{project_name_or_id}/logs": {
        "get": _op(
            "getLogs",
            _responses(_ok({"type": "array", "items": _ref("AuditLog")}, _PAGE_HEADERS), "400", "403", "404"),
            _IS_RESOURCE_NAME,
            _PROJECT_NAME_OR_ID,
            _Q,
            {**_SORT, "pattern": _AUDIT_SORT},
            _PAGE,
            _PAGE_SIZE,
            tag="project",
        ),
    },
}

# -- runtime configuration and statistics ------------------------------------------------------


def _config_item(kind: str) -> dict[str, Any]:
    """Harbor's StringConfigItem, BoolConfigItem, IntegerConfigItem."""
    return {
        "type": "object",
        "required": ["value", "editable"],
        "properties": {"value": {"type": kind}, "editable": {"type": "boolean"}},
    }


_CONFIG_RULES: dict[str, dict[str, Any]] = {
    "auth_mode": {"enum": list(AUTH_MODES)},
    "project_creation_restriction": {"enum": ["everyone", "adminonly"]},
    "token_expiration": {"minimum": 1, "maximum": (2**31 - 1) // 60},
    "ldap_scope": {"enum": [0, 1, 2]},
    "ldap_group_search_scope": {"enum": [0, 1, 2]},
    "cas_version": {"enum": ["2.0", "3.0"]},
}
_CONFIG_KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    name: (key.kind, _CONFIG_RULES.get(name, {})) for name, key in CONFIG_KEYS.items()
}
_SHOWN_CONFIG_KEYS = [name for name, key in CONFIG_KEYS.items() if not key.secret]  # secrets: never shown

DEFINITIONS.update(
    {
        "StringConfigItem": _config_item("string"),
        "BoolConfigItem": _config_item("boolean"),
        "IntegerConfigItem": _config_item("integer"),
        "ConfigurationsResponse": {
            "type": "object",
            "required": _SHOWN_CONFIG_KEYS,
            "properties": {
                name: _ref(
                    {"string": "StringConfigItem", "boolean": "BoolConfigItem"}.get(kind, "IntegerConfigItem")
                )
                for name, (kind, _) in _CONFIG_KEYS.items()
                if name in _SHOWN_CONFIG_KEYS
            },
        },
        "Configurations": {
            "type": "object",
            "description": "The keys to change; null leaves a key as it is; any other key is a 400.",
            "additionalProperties": False,
            "properties": {
                name: {"type": kind, "x-nullable": True, **rules}
                for name, (kind, rules) in _CONFIG_KEYS.items()
            },
        },
        "Statistic": {
            "type": "object",
            "required": [
                "private_project_count",
                "private_repo_count",
                "public_project_count",
                "public_repo_count",
                "total_project_count",
                "total_repo_count",
                "total_storage_consumption",
            ],
            "properties": {
                name: {"type": "integer", "format": "int64", "minimum": 0}
                for name in (
                    "private_project_count",
                    "private_repo_count",
                    "public_project_count",
                    "public_repo_count",
                    "total_project_count",
                    "total_repo_count",
                    "total_storage_consumption",
                )
            },
        },
    }
)

PATHS.update(
    {
        "/configurations": {
            "get": _op(
                "getConfigurations", _responses(_ok(_ref("ConfigurationsResponse")), "403"), tag="configure"
            ),
            "put": _op(
                "updateConfigurations",
                _responses(_ok(), "400", "403", "413"),
                {"name": "configurations", "in": "body", "required": True, "schema": _ref("Configurations")},
                tag="configure",
            ),
        },
        "/statistics": {
            "get": _op("getStatistic", _responses(_ok(_ref("Statistic"))), tag="statistic"),
        },
    }
)


# -- repositories, artifacts and tags --------------------------------------------------------------

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_PROJECT_NAME = {"name": "project_name", "in": "path", "required": True, **_NAME}
_REPOSITORY_NAME = {
    "name": "repository_name",
    "in": "path",
    "required": True,
    "description": "The name without the project; `a/b` is sent as `a%252Fb`",
    **_NAME,
}
_REFERENCE = {"name": "reference", "in": "path", "required": True, "type": "string", "minLength": 1}
_TAG_NAME = {"name": "tag_name", "in": "path", "required": True, "type": "string", "minLength": 1}
_WITH_TAG = {"name": "with_tag", "in": "query", "type": "boolean", "default": True}
_INT64 = {"type": "integer", "format": "int64"}


def _sort(*fields: str) -> dict[str, Any]:
    return {**_SORT, "pattern": rf"^-?({'|'.join(fields)})$"}


DEFINITIONS.update(
    {
        "Repository": {
            "type": "object",
            "required": ["id", "project_id", "name", "artifact_count", "pull_count"],
            "properties": {
                "id": _INT64,
                "project_id": _INT64,
                "name": _STR,
                "description": _STR,
                "artifact_count": _INT64,
                "pull_count": _INT64,
                "creation_time": _TIME,
                "update_time": _TIME,
            },
        },
        "Tag": {
            "type": "object",
            "required": ["id", "repository_id", "artifact_id", "name"],
            "properties": {
                "id": _INT64,
                "repository_id": _INT64,
                "artifact_id": _INT64,
                "name": _STR,
                "push_time": _TIME,
                "pull_time": _TIME,
                "immutable": {"type": "boolean"},
            },
        },
        "Reference": {
            "type": "object",
            "required": ["parent_id", "child_id", "child_digest"],
            "properties": {
                "parent_id": _INT64,
                "child_id": _INT64,
                "child_digest": _STR,
                "platform": _ref("Platform"),  # absent when the index gives none (or before 0008)
            },
        },
        "Platform": {
            "type": "object",
            "required": ["os", "architecture"],
            "properties": {"architecture": _STR, "os": _STR, "os.version": _STR, "variant": _STR},
        },
        "Artifact": {
            "type": "object",
            "required": [
                "id",
                "type",
                "media_type",
                "manifest_media_type",
                "project_id",
                "repository_id",
                "digest",
            ],
            "properties": {
                "id": _INT64,
                "type": _STR,
                "media_type": _STR,
                "manifest_media_type": _STR,
                "artifact_type": _STR,
                "project_id": _INT64,
                "repository_id": _INT64,
                "digest": _STR,
                "size": _INT64,
                "icon": _STR,
                "push_time": _TIME,
                "pull_time": _TIME,
                "extra_attrs": {"type": "object"},
                "annotations": {"type": "object", "additionalProperties": _STR},
                "references": {"type": "array", "items": _ref("Reference")},
                "tags": {"type": "array", "items": _ref("Tag"), "x-nullable": True},
                "labels": {"type": "array", "items": {"type": "object"}},
            },
        },
        "RepositoryReq": {
            "type": "object",
            "properties": {"description": {"type": "string", "maxLength": 16000}},
        },
        "TagReq": {"type": "object", "required": ["name"], "properties": {"name": _STR}},
    }
)

_REPOSITORY_SORT = _sort("name", "pull_count", "creation_time", "update_time")
_REPO_PARAMS = (_PROJECT_NAME, _REPOSITORY_NAME)
_ARTIFACT_PARAMS = (*_REPO_PARAMS, _REFERENCE)


def _listing(op_id: str, item: str, *parameters: dict[str, Any], tag: str) -> dict[str, Any]:
    return _op(
        op_id,
        _responses(_ok({"type": "array", "items": _ref(item)}, _PAGE_HEADERS), "400", "403", "404"),
        *parameters,
        _PAGE,
        _PAGE_SIZE,
        tag=tag,
        anonymous=True,  # a public project's content is for everyone while anonymous access is on
    )


PATHS.update(
    {
        "/repositories": {
            "get": _listing("listAllRepositories", "Repository", _Q, _REPOSITORY_SORT, tag="repository"),
        },
        "/projects/{project_name}/repositories": {
            "get": _listing(
                "listRepositories", "Repository", _PROJECT_NAME, _Q, _REPOSITORY_SORT, tag="repository"
            ),
        },
        "/projects/{project_name}/repositories/{repository_name}": {
            "get": _op(
                "getRepository",
                _responses(_ok(_ref("Repository")), "400", "403", "404"),
                *_REPO_PARAMS,
                tag="repository",
                anonymous=True,
            ),
            "put": _op(
                "updateRepository",
                _responses(_ok(), "400", "403", "404", "413"),
                *_REPO_PARAMS,
                _body("RepositoryReq"),
                tag="repository",
            ),
            "delete": _op(
                "deleteRepository", _responses(_ok(), "400", "403", "404"), *_REPO_PARAMS, tag="repository"
            ),
        },
        "/projects/{project_name}/repositories/{repository_name}/artifacts": {
            "get": _listing(
                "listArtifacts",
                "Artifact",
                *_REPO_PARAMS,
                _Q,
                _sort("id", "size", "push_time", "pull_time"),
                _WITH_TAG,
                tag="artifact",
            ),
        },
        "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}": {
            "get": _op(
                "getArtifact",
                _responses(_ok(_ref("Artifact")), "400", "403", "404"),
                *_ARTIFACT_PARAMS,
                _WITH_TAG,
                tag="artifact",
                anonymous=True,
            ),
            "delete": _op(
                "deleteArtifact",
                _responses(_ok(), "400", "403", "404", "412"),
                *_ARTIFACT_PARAMS,
                tag="artifact",
            ),
        },
        "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags": {
            "get": _listing(
                "listTags", "Tag", *_ARTIFACT_PARAMS, _Q, _sort("id", "name", "push_time"), tag="artifact"
            ),
            "post": _op(
                "createTag",
                {"201": {"description": "Created"}, **_responses({}, "400", "403", "404", "409", "413")},
                *_ARTIFACT_PARAMS,
                {"name": "tag", "in": "body", "required": True, "schema": _ref("TagReq")},
                tag="artifact",
            ),
        },
        "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}": {
            "delete": _op(
                "deleteTag",
                _responses(_ok(), "400", "403", "404"),
                *_ARTIFACT_PARAMS,
                _TAG_NAME,
                tag="artifact",
            ),
        },
    }
)


# -- projects, members, search ----------------------------------------------------------------

_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_PROJECT_REF = {
    "name": "project_name_or_id",
    "in": "path",
    "required": True,
    "type": "string",
    "description": "The project's name or id (a name, whatever it reads as, with X-Is-Resource-Name: true)",
}
_IS_NAME = {"name": "X-Is-Resource-Name", "in": "header", "type": "boolean", "default": False}
_NAME_IN_LOCATION = {
    "name": "X-Resource-Name-In-Location",
    "in": "header",
    "type": "boolean",
    "default": False,
}
_MID = {
    "name": "mid",
    "in": "path",
    "required": True,
    "type": "integer",
    "format": "int64",
    "minimum": 1,
    "maximum": ID_MAX,
    "description": "The member id: the member's user id",
}
_PROJECT_SORT = {**_SORT, "pattern": r"^-?(name|project_id|creation_time|update_time)$"}
_NO_BODY = {"description": "No body (HEAD)"}

DEFINITIONS.update(
    {
        "ProjectMetadata": {
            "type": "object",
            "properties": {
                "public": _STR,
                "enable_content_trust": _STR,
                "enable_content_trust_cosign": _STR,
                "prevent_vul": _STR,
                "severity": _STR,
                "auto_scan": _STR,
                "auto_sbom_generation": _STR,
                "reuse_sys_cve_allowlist": _STR,
                "retention_id": _STR,
            },
        },
        "CVEAllowlist": {
            "type": "object",
            "properties": {
                "id": _INT,
                "project_id": _INT,
                "items": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ProjectReq": {
            "type": "object",
            "properties": {
                "project_name": {"type": "string", "maxLength": 255},
                "public": {"type": "boolean", "x-nullable": True},
                "metadata": _ref("ProjectMetadata"),
                "cve_allowlist": _ref("CVEAllowlist"),
                "storage_limit": {"type": "integer", "format": "int64", "x-nullable": True},
                "registry_id": {"type": "integer", "format": "int64", "x-nullable": True},
            },
        },
        "Project": {
            "type": "object",
            "required": ["project_id", "owner_id", "name", "owner_name", "repo_count", "metadata"],
            "properties": {
                "project_id": _INT,
                "owner_id": _INT,
                "name": _STR,
                "creation_time": _TIME,
                "update_time": _TIME,
                "deleted": _BOOL,
                "owner_name": _STR,
                "togglable": _BOOL,
                "current_user_role_id": _INT,
                "current_user_role_ids": {"type": "array", "items": _INT},
                "repo_count": _INT,
                "chart_count": _INT,
                "metadata": _ref("ProjectMetadata"),
                "cve_allowlist": _ref("CVEAllowlist"),
            },
        },
        "ProjectDeletable": {
            "type": "object",
            "required": ["deletable"],
            "properties": {"deletable": _BOOL, "message": _STR},
        },
        "ProjectSummary": {
            "type": "object",
            "required": ["repo_count"],
            "properties": {
                "repo_count": _INT,
                "chart_count": _INT,
                "project_admin_count": _INT,
                "maintainer_count": _INT,
                "developer_count": _INT,
                "guest_count": _INT,
                "limited_guest_count": _INT,
            },
        },
        "ProjectMemberEntity": {
            "type": "object",
            "required": [
                "id",
                "project_id",
                "entity_name",
                "role_name",
                "role_id",
                "entity_id",
                "entity_type",
            ],
            "properties": {
                "id": _INT,
                "project_id": _INT,
                "entity_name": _STR,
                "role_name": _STR,
                "role_id": _INT,
                "entity_id": _INT,
                "entity_type": _STR,
            },
        },
        "UserEntity": {"type": "object", "properties": {"user_id": _INT, "username": _STR}},
        "ProjectMember": {
            "type": "object",
            "properties": {
                "role_id": {
                    **_INT,
                    "description": "1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest",
                },
                "member_user": _ref("UserEntity"),
                "member_group": _ref("UserGroup"),
            },
        },
        "RoleRequest": {"type": "object", "properties": {"role_id": _INT}},
        "SearchRepository": {
            "type": "object",
            "required": ["project_id", "project_name", "project_public", "repository_name"],
            "properties": {
                "project_id": _INT,
                "project_name": _STR,
                "project_public": _BOOL,
                "repository_name": _STR,
                "pull_count": _INT,
                "artifact_count": _INT,
            },
        },
        "Search": {
            "type": "object",
            "required": ["project", "repository"],
            "properties": {
                "project": {"type": "array", "items": _ref("Project")},
                "repository": {"type": "array", "items": _ref("SearchRepository")},
            },
        },
    }
)

PATHS.update(
    {
        "/projects": {
            "get": _op(
                "listProjects",
                _responses(_ok({"type": "array", "items": _ref("Project")}, _PAGE_HEADERS), "400"),
                _Q,
                _PROJECT_SORT,
                _PAGE,
                _PAGE_SIZE,
                {"name": "name", "in": "query", "type": "string", "description": "Names containing this"},
                {"name": "public", "in": "query", "type": "boolean"},
                {"name": "owner", "in": "query", "type": "string", "description": "The owner's username"},
                tag="project",
                anonymous=True,
            ),
            "head": _op(
                "headProject",
                {
                    "200": {"description": "A project has this name"},
                    **dict.fromkeys(("400", "401", "404", "429", "500", "503"), _NO_BODY),
                },
                {"name": "project_name", "in": "query", "required": True, "type": "string"},
                tag="project",
            ),
            "post": _op(
                "createProject",
                {**_CREATED, **_responses({}, "400", "403", "409", "413")},
                _NAME_IN_LOCATION,
                _body("ProjectReq"),
                tag="project",
            ),
        },
        "/projects/{project_name_or_id}": {
            "get": _op(
                "getProject",
                _responses(_ok(_ref("Project")), "403", "404"),
                _IS_NAME,
                _PROJECT_REF,
                tag="project",
                anonymous=True,
            ),
            "put": _op(
                "updateProject",
                _responses(_ok(), "400", "403", "404", "413"),
                _IS_NAME,
                _PROJECT_REF,
                _body("ProjectReq"),
                tag="project",
            ),
            "delete": _op(
                "deleteProject",
                _responses(_ok(), "403", "404", "412"),
                _IS_NAME,
                _PROJECT_REF,
                tag="project",
            ),
        },
        "/projects/{project_name_or_id}/_deletable": {
            "get": _op(
                "getProjectDeletable",
                _responses(_ok(_ref("ProjectDeletable")), "403", "404"),
                _IS_NAME,
                _PROJECT_REF,
                tag="project",
            ),
        },
        "/projects/{project_name_or_id}/summary": {
            "get": _op(
                "getProjectSummary",
                _responses(_ok(_ref("ProjectSummary")), "403", "404"),
                _IS_NAME,
                _PROJECT_REF,
                tag="project",
                anonymous=True,
            ),
        },
        "/projects/{project_name_or_id}/members": {
            "get": _op(
                "listProjectMembers",
                _responses(
                    _ok({"type": "array", "items": _ref("ProjectMemberEntity")}, _PAGE_HEADERS),
                    "400",
                    "403",
                    "404",
                ),
                _IS_NAME,
                _PROJECT_REF,
                _PAGE,
                _PAGE_SIZE,
                {
                    "name": "entityname",
                    "in": "query",
                    "type": "string",
                    "description": "Member names containing this",
                },
                tag="member",
            ),
            "post": _op(
                "createProjectMember",
                {**_CREATED, **_responses({}, "400", "403", "404", "409", "413")},
                _IS_NAME,
                _PROJECT_REF,
                _body("ProjectMember"),
                tag="member",
            ),
        },
        "/projects/{project_name_or_id}/members/{mid}": {
            "get": _op(
                "getProjectMember",
                _responses(_ok(_ref("ProjectMemberEntity")), "400", "403", "404"),
                _IS_NAME,
                _PROJECT_REF,
                _MID,
                tag="member",
            ),
            "put": _op(
                "updateProjectMember",
                _responses(_ok(), "400", "403", "404", "413"),
                _IS_NAME,
                _PROJECT_REF,
                _MID,
                _body("RoleRequest"),
                tag="member",
            ),
            "delete": _op(
                "deleteProjectMember",
                _responses(_ok(), "400", "403", "404"),
                _IS_NAME,
                _PROJECT_REF,
                _MID,
                tag="member",
            ),
        },
        "/search": {
            "get": _op(
                "search",
                _responses(_ok(_ref("Search")), "400"),
                {"name": "q", "in": "query", "required": True, "type": "string", "minLength": 1},
                tag="search",
                anonymous=True,
            ),
        },
    }
)

# -- registries and replication (system admins only) -----------------------------------------------


def _id_param(name: str, description: str, *, minimum: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "type": "integer",
        "format": "int64",
        "minimum": minimum,
        "maximum": ID_MAX,
        "description": description,
    }


_REGISTRY_ID = _id_param("id", "The registry's id")
_POLICY_ID = _id_param("id", "The policy's id")
_EXECUTION_ID = _id_param("id", "The execution's id")
_TASK_ID = _id_param("task_id", "The task's id")
_NULLABLE_STR = {"type": "string", "x-nullable": True}
_NULLABLE_BOOL = {"type": "boolean", "x-nullable": True}
_EXECUTION_STATUS = (
    "Harbor's words: InProgress, Succeed, Failed, Stopped (the rows' Running, Success, Error, Stopped)"
)

_REGISTRY_CREDENTIAL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {**_STR, "description": "basic (the only type Wharf supports)"},
        "access_key": {**_STR, "description": "The username"},
        "access_secret": {
            **_STR,
            "description": "The password: stored encrypted, shown as ***** when set, never returned; "
            "***** sent back keeps the stored one",
        },
    },
}

_REGISTRY: dict[str, Any] = {
    "type": "object",
    "description": "A registry replication copies from or to: type harbor or docker-registry.",
    "properties": {
        "id": _INT64,
        "url": {**_STR, "description": "http(s)://host[:port], no path"},
        "name": {"type": "string", "maxLength": 64},
        "credential": _ref("RegistryCredential"),
        "type": {**_STR, "description": "harbor or docker-registry"},
        "insecure": {**_BOOL, "description": "Skip TLS certificate verification"},
        "description": _STR,
        "status": {
            **_STR,
            "description": "healthy, unhealthy or unknown (not checked since changed)",
        },
        "creation_time": _TIME,
        "update_time": _TIME,
    },
}

DEFINITIONS.update(
    {
        "RegistryCredential": _REGISTRY_CREDENTIAL,
        "Registry": _REGISTRY,
        "RegistryPing": {
            "type": "object",
            "description": "A stored registry (id), its fields overridden by those given, or a registry "
            "described by type and url; 200 when it answers /v2/ and takes the credentials, 400 when not. "
            "Pinging a stored registry records its status (healthy, unhealthy).",
            "properties": {
                "id": {"type": "integer", "format": "int64", "x-nullable": True},
                "type": _NULLABLE_STR,
                "url": _NULLABLE_STR,
                "credential_type": _NULLABLE_STR,
                "access_key": _NULLABLE_STR,
                "access_secret": _NULLABLE_STR,
                "insecure": _NULLABLE_BOOL,
            },
        },
        "RegistryUpdate": {
            "type": "object",
            "description": "What to change; null or left out keeps the stored value (the password too).",
            "properties": {
                "name": _NULLABLE_STR,
                "description": _NULLABLE_STR,
                "url": _NULLABLE_STR,
                "credential_type": _NULLABLE_STR,
                "access_key": _NULLABLE_STR,
                "access_secret": _NULLABLE_STR,
                "insecure": _NULLABLE_BOOL,
                "type": {
                    **_NULLABLE_STR,
                    "description": "Accepted when it is the registry's type; it does not change",
                },
                "credential": {
                    **_REGISTRY_CREDENTIAL,
                    "x-nullable": True,
                    "description": "Wharf: the Registry shape's credential, as read back; "
                    "the flat fields above win",
                },
            },
        },
        "FilterStyle": {
            "type": "object",
            "properties": {"type": _STR, "style": _STR, "values": {"type": "array", "items": _STR}},
        },
        "RegistryInfo": {
            "type": "object",
            "properties": {
                "type": _STR,
                "description": _STR,
                "supported_resource_filters": {"type": "array", "items": _ref("FilterStyle")},
                "supported_triggers": {"type": "array", "items": _STR},
            },
        },
        "RegistryProviderInfo": {
            "type": "object",
            "properties": {"endpoint_pattern": {"type": "object"}, "credential_pattern": {"type": "object"}},
        },
        "ReplicationTriggerSettings": {
            "type": "object",
            "properties": {"cron": {**_STR, "description": "6 fields, seconds first, UTC: 0 0 2 * * *"}},
        },
        "ReplicationTrigger": {
            "type": "object",
            "properties": {
                "type": {**_STR, "description": "manual, scheduled or event_based"},
                "trigger_settings": _ref("ReplicationTriggerSettings"),
            },
        },
        "ReplicationFilter": {
            "type": "object",
            "properties": {
                "type": {**_STR, "description": "name, tag or resource"},
                "value": {"description": "A doublestar glob (name, tag), or image/artifact (resource)"},
                "decoration": {**_STR, "description": "matches, or excludes (tag)"},
            },
        },
        "ReplicationPolicy": {
            "type": "object",
            "description": "Push-based: dest_registry is a registered registry and src_registry this Wharf "
            "(id 0, or left out). Pull-based: the other way round. Wharf's own every_registry: true makes "
            "a push-based policy's destination every registered registry, those added later too "
            "(dest_registry is then left out, and null when read); with a name filter of ** one policy "
            "replicates every project to every peer. Left out on create: enabled and override true, "
            "trigger manual, speed -1 (unlimited); left out on update: unchanged (naming any of "
            "src_registry, dest_registry and every_registry sets the direction anew).",
            "properties": {
                "id": _INT64,
                "name": {"type": "string", "maxLength": 255},
                "description": _STR,
                "src_registry": {**_REGISTRY, "x-nullable": True},
                "dest_registry": {
                    **_REGISTRY,
                    "x-nullable": True,
                    "description": "null when every_registry is true",
                },
                "every_registry": _BOOL,
                "dest_namespace": _STR,
                "dest_namespace_replace_count": {"type": "integer", "format": "int32"},
                "trigger": _ref("ReplicationTrigger"),
                "filters": {"type": "array", "items": _ref("ReplicationFilter")},
                "replicate_deletion": _BOOL,
                "deletion": {**_BOOL, "description": "Deprecated: replicate_deletion"},
                "override": _BOOL,
                "enabled": _BOOL,
                "speed": {
                    "type": "integer",
                    "format": "int32",
                    "description": "KB/s per task; -1 or 0: unlimited",
                },
                "copy_by_chunk": _BOOL,
                "creation_time": _TIME,
                "update_time": _TIME,
            },
        },
        "StartReplicationExecution": {
            "type": "object",
            "properties": {"policy_id": _INT64},
        },
        "ReplicationExecution": {
            "type": "object",
            "properties": {
                "id": _INT64,
                "policy_id": _INT64,
                "status": {**_STR, "description": _EXECUTION_STATUS},
                "status_text": _STR,
                "trigger": {**_STR, "description": "manual, scheduled or event_based"},
                "start_time": _TIME,
                "end_time": _TIME,
                "total": _INT64,
                "failed": _INT64,
                "succeed": _INT64,
                "in_progress": _INT64,
                "stopped": _INT64,
            },
        },
        "ReplicationTask": {
            "type": "object",
            "properties": {
                "id": _INT64,
                "execution_id": _INT64,
                "status": {**_STR, "description": "Pending, InProgress, Succeed, Failed or Stopped"},
                "job_id": _STR,
                "operation": _STR,
                "resource_type": _STR,
                "src_resource": _STR,
                "dst_resource": _STR,
                "start_time": _TIME,
                "end_time": _TIME,
            },
        },
    }
)


def _admin(op_id: str, responses: dict[str, Any], *parameters: dict[str, Any], tag: str) -> dict[str, Any]:
    return _op(op_id, responses, *parameters, tag=tag)


def _admin_list(op_id: str, item: str, *parameters: dict[str, Any], tag: str) -> dict[str, Any]:
    return _admin(
        op_id,
        _responses(_ok({"type": "array", "items": _ref(item)}, _PAGE_HEADERS), "400", "403", "404"),
        *parameters,
        _PAGE,
        _PAGE_SIZE,
        tag=tag,
    )


_NAME_QUERY = {
    "name": "name",
    "in": "query",
    "type": "string",
    "description": "Deprecated: names containing this",
}
_STATUS_QUERY = {"name": "status", "in": "query", "type": "string"}

PATHS.update(
    {
        "/registries": {
            "get": _admin_list(
                "listRegistries",
                "Registry",
                _Q,
                _sort("id", "name", "creation_time", "update_time"),
                _NAME_QUERY,
                tag="registry",
            ),
            "post": _admin(
                "createRegistry",
                {**_CREATED, **_responses({}, "400", "403", "409", "413")},
                _NAME_IN_LOCATION,
                {"name": "registry", "in": "body", "required": True, "schema": _ref("Registry")},
                tag="registry",
            ),
        },
        "/registries/ping": {
            "post": _admin(
                "pingRegistry",
                _responses(_ok(), "400", "403", "404", "413"),
                {"name": "registry", "in": "body", "required": True, "schema": _ref("RegistryPing")},
                tag="registry",
            ),
        },
        "/registries/{id}": {
            "get": _admin(
                "getRegistry",
                _responses(_ok(_ref("Registry")), "400", "403", "404"),
                _REGISTRY_ID,
                tag="registry",
            ),
            "put": _admin(
                "updateRegistry",
                _responses(_ok(), "400", "403", "404", "409", "413"),
                _REGISTRY_ID,
                {"name": "registry", "in": "body", "required": True, "schema": _ref("RegistryUpdate")},
                tag="registry",
            ),
            "delete": _admin(
                "deleteRegistry", _responses(_ok(), "400", "403", "404", "412"), _REGISTRY_ID, tag="registry"
            ),
        },
        "/registries/{id}/info": {
            "get": _admin(
                "getRegistryInfo",
                _responses(_ok(_ref("RegistryInfo")), "400", "403", "404"),
                _id_param("id", "The registry's id; 0 is this Wharf", minimum=0),
                tag="registry",
            ),
        },
        "/replication/adapters": {
            "get": _admin(
                "listRegistryProviderTypes",
                _responses(_ok({"type": "array", "items": _STR}), "403"),
                tag="registry",
            ),
        },
        "/replication/adapterinfos": {
            "get": _admin(
                "listRegistryProviderInfos",
                _responses(
                    _ok({"type": "object", "additionalProperties": _ref("RegistryProviderInfo")}), "403"
                ),
                tag="registry",
            ),
        },
        "/replication/policies": {
            "get": _admin_list(
                "listReplicationPolicies",
                "ReplicationPolicy",
                _Q,
                _sort("id", "name", "creation_time", "update_time"),
                _NAME_QUERY,
                tag="replication",
            ),
            "post": _admin(
                "createReplicationPolicy",
                {**_CREATED, **_responses({}, "400", "403", "409", "413")},
                _NAME_IN_LOCATION,
                {"name": "policy", "in": "body", "required": True, "schema": _ref("ReplicationPolicy")},
                tag="replication",
            ),
        },
        "/replication/policies/{id}": {
            "get": _admin(
                "getReplicationPolicy",
                _responses(_ok(_ref("ReplicationPolicy")), "400", "403", "404"),
                _POLICY_ID,
                tag="replication",
            ),
            "put": _admin(
                "updateReplicationPolicy",
                _responses(_ok(), "400", "403", "404", "409", "413"),
                _POLICY_ID,
                {"name": "policy", "in": "body", "required": True, "schema": _ref("ReplicationPolicy")},
                tag="replication",
            ),
            "delete": _admin(
                "deleteReplicationPolicy",
                _responses(_ok(), "400", "403", "404", "412"),
                _POLICY_ID,
                tag="replication",
            ),
        },
        "/replication/executions": {
            "get": _admin_list(
                "listReplicationExecutions",
                "ReplicationExecution",
                _sort("id", "start_time", "end_time", "status"),
                {"name": "policy_id", "in": "query", "type": "integer", "format": "int64"},
                {**_STATUS_QUERY, "description": _EXECUTION_STATUS},
                {
                    "name": "trigger",
                    "in": "query",
                    "type": "string",
                    "description": "manual, scheduled or event_based",
                },
                tag="replication",
            ),
            "post": _admin(
                "startReplication",
                {**_CREATED, **_responses({}, "400", "403", "404", "412", "413")},
                {
                    "name": "execution",
                    "in": "body",
                    "required": True,
                    "schema": _ref("StartReplicationExecution"),
                },
                tag="replication",
            ),
        },
        "/replication/executions/{id}": {
            "get": _admin(
                "getReplicationExecution",
                _responses(_ok(_ref("ReplicationExecution")), "400", "403", "404"),
                _EXECUTION_ID,
                tag="replication",
            ),
            "put": _admin(
                "stopReplication", _responses(_ok(), "400", "403", "404"), _EXECUTION_ID, tag="replication"
            ),
        },
        "/replication/executions/{id}/tasks": {
            "get": _admin_list(
                "listReplicationTasks",
                "ReplicationTask",
                _EXECUTION_ID,
                _sort("id", "start_time", "end_time", "status"),
                {**_STATUS_QUERY, "description": "Pending, InProgress, Succeed, Failed or Stopped"},
                {"name": "resource_type", "in": "query", "type": "string"},
                tag="replication",
            ),
        },
        "/replication/executions/{id}/tasks/{task_id}/log": {
            "get": {
                **_admin(
                    "getReplicationLog",
                    _responses(_ok({"type": "string"}), "400", "403", "404"),
                    _EXECUTION_ID,
                    _TASK_ID,
                    tag="replication",
                ),
                "produces": ["text/plain", "application/json"],  # errors are JSON
            },
        },
    }
)

# -- user groups -----------------------------------------------------------------------------

_GROUP_TYPE = {**_INT, "description": "1 LDAP, 2 HTTP, 3 OIDC, 4 CAS (Wharf's)"}
DEFINITIONS.update(
    {
        "UserGroup": {
            "type": "object",
            "properties": {
                "id": _INT,
                "group_name": _STR,
                "group_type": _GROUP_TYPE,
                "ldap_group_dn": {**_STR, "description": "The DN of an LDAP group (group_type 1)"},
            },
        },
        "UserGroupSearchItem": {
            "type": "object",
            "properties": {"id": _INT, "group_name": _STR, "group_type": _GROUP_TYPE},
        },
    }
)
_GROUP_ID = _id_param("group_id", "The group's id")
PATHS.update(
    {
        "/usergroups": {
            "get": _admin_list(
                "listUserGroups",
                "UserGroup",
                {"name": "ldap_group_dn", "in": "query", "type": "string", "description": "This DN"},
                {
                    "name": "group_name",
                    "in": "query",
                    "type": "string",
                    "description": "Names containing this",
                },
                tag="usergroup",
            ),
            "post": _admin(
                "createUserGroup",
                {**_CREATED, **_responses({}, "400", "403", "409")},
                _body("UserGroup"),
                tag="usergroup",
            ),
        },
        "/usergroups/search": {
            "get": _op(
                "searchUserGroups",
                _responses(
                    _ok({"type": "array", "items": _ref("UserGroupSearchItem")}, _PAGE_HEADERS), "400"
                ),
                {"name": "groupname", "in": "query", "required": True, "type": "string", "minLength": 1},
                _PAGE,
                _PAGE_SIZE,
                tag="usergroup",
            ),
        },
        "/usergroups/{group_id}": {
            "get": _admin(
                "getUserGroup",
                _responses(_ok(_ref("UserGroup")), "400", "403", "404"),
                _GROUP_ID,
                tag="usergroup",
            ),
            "put": _admin(
                "updateUserGroup",
                _responses(_ok(), "400", "403", "404", "409"),
                _GROUP_ID,
                _body("UserGroup"),
                tag="usergroup",
            ),
            "delete": _admin("deleteUserGroup", _responses(_ok(), "400", "403"), _GROUP_ID, tag="usergroup"),
        },
    }
)

# -- the CMDB ownership sync (Wharf's own) ---------------------------------------------------------

_ROLE_ID = {
    **_INT,
    "description": "Harbor's role id: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest",
}
DEFINITIONS.update(
    {
        "CmdbChange": {
            "type": "object",
            "properties": {
                "action": {
                    **_STR,
                    "enum": ["project.create", "member.create", "member.update", "member.delete"],
                },
                "project": _STR,
                "member": {**_STR, "description": "The username, or the group's name"},
                "entity_type": {**_STR, "enum": ["u", "g"]},
                "role_id": _ROLE_ID,
                "previous_role_id": _ROLE_ID,
                "public": {**_BOOL, "description": "A created project's visibility"},
                "owner": {**_STR, "description": "A created project's owner"},
            },
        },
        "CmdbSkipped": {
            "type": "object",
            "properties": {
                "index": {**_INT, "description": "The entry's place in the CMDB's list"},
                "project": {**_STR, "x-nullable": True},
                "reason": _STR,
            },
        },
        "CmdbSyncReport": {
            "type": "object",
            "properties": {
                "dry_run": _BOOL,
                "entries": {**_INT, "description": "Entries the CMDB listed"},
                "changes": {"type": "array", "items": _ref("CmdbChange")},
                "skipped": {"type": "array", "items": _ref("CmdbSkipped")},
                "failed": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"index": _INT, "project": _STR, "error": _STR},
                    },
                },
            },
        },
    }
)
PATHS.update(
    {
        "/system/cmdb/sync": {
            "post": _admin(
                "syncCmdb",
                _responses(_ok(_ref("CmdbSyncReport")), "400", "403", "412"),
                {
                    "name": "dry_run",
                    "in": "query",
                    "type": "boolean",
                    "default": False,
                    "description": "Only plan: answer what would change, change nothing",
                },
                tag="cmdb",
            ),
        },
    }
)

# -- the LDAP directory (Harbor's endpoints) and the group sync (Wharf's) -----------------------

# What every sync's report starts with (the LDAP and the OIDC group syncs).
_SYNC_RUN = {
    "trigger": {**_STR, "description": "schedule or manual"},
    "request_id": {**_STR, "description": "The manual request it answers"},
    "started_at": _STR,
    "finished_at": {**_STR, "description": "Empty while it runs"},
}

DEFINITIONS.update(
    {
        "LdapConf": {
            "type": "object",
            "description": "Settings to ping, over the stored ones (no password: the stored one)",
            "properties": {
                "ldap_url": _STR,
                "ldap_search_dn": _STR,
                "ldap_search_password": _STR,
                "ldap_base_dn": _STR,
                "ldap_filter": _STR,
                "ldap_uid": _STR,
                "ldap_scope": {**_INT, "minimum": 0, "maximum": 2},
                "ldap_connection_timeout": {**_INT, "minimum": 1, "maximum": 300},
                "ldap_verify_cert": {"type": "boolean"},
                "ldap_starttls": {"type": "boolean"},
                "ldap_ca_certificate": {**_STR, "description": "PEM (Wharf's)"},
            },
        },
        "LdapPingResult": {"type": "object", "properties": {"success": {"type": "boolean"}, "message": _STR}},
        "LdapUser": {"type": "object", "properties": {"username": _STR, "realname": _STR, "email": _STR}},
        "LdapUserGroup": {"type": "object", "properties": {"group_name": _STR, "ldap_group_dn": _STR}},
        "LdapImportUsers": {
            "type": "object",
            "properties": {"ldap_uid_list": {"type": "array", "items": _STR, "maxItems": 1000}},
        },
        "LdapFailedImportUser": {"type": "object", "properties": {"uid": _STR, "error": _STR}},
        "SyncRequest": {"type": "object", "properties": {"request_id": _STR}},
        "LdapGroupSyncReport": {
            "type": "object",
            "properties": {
                **_SYNC_RUN,
                "groups": _INT,
                "failed": {
                    "type": "array",
                    "items": _STR,
                    "description": "DNs of the groups the directory could not answer for (unchanged)",
                },
                "added": _INT,
                "removed": _INT,
                "error": _STR,
            },
        },
    }
)


def _sync_path(name: str, *, tag: str) -> dict[str, Any]:
    """A sync the job service's leader runs: POST asks for a run (202, its request id), GET
    answers the last run's report (`<name>Report`)."""
    asked = {"202": {"description": "Asked of the job service", "schema": _ref("SyncRequest")}}
    return {
        "post": _admin(f"request{name}", {**asked, **_responses({}, "403")}, tag=tag),
        "get": _admin(f"get{name}", _responses(_ok(_ref(f"{name}Report")), "403", "404"), tag=tag),
    }


_FAILED_IMPORT = {
    "404": {
        "description": "Some uids were not imported (the others were)",
        "schema": {"type": "array", "items": _ref("LdapFailedImportUser")},
    }
}
PATHS.update(
    {
        "/ldap/ping": {
            "post": _admin(
                "pingLdap",
                _responses(_ok(_ref("LdapPingResult")), "400", "403"),
                {**_body("LdapConf"), "required": False},
                tag="ldap",
            ),
        },
        "/ldap/users/search": {
            "get": _admin(
                "searchLdapUser",
                _responses(_ok({"type": "array", "items": _ref("LdapUser")}), "400", "403", "412"),
                {"name": "username", "in": "query", "type": "string", "description": "Its uid (all: empty)"},
                tag="ldap",
            ),
        },
        "/ldap/users/import": {
            "post": _admin(
                "importLdapUser",
                {**_responses(_ok(), "400", "403", "412"), **_FAILED_IMPORT},
                _body("LdapImportUsers"),
                tag="ldap",
            ),
        },
        "/ldap/groups/search": {
            "get": _admin(
                "searchLdapGroup",
                _responses(_ok({"type": "array", "items": _ref("LdapUserGroup")}), "400", "403", "412"),
                {"name": "groupname", "in": "query", "type": "string"},
                {"name": "groupdn", "in": "query", "type": "string"},
                tag="ldap",
            ),
        },
        "/ldap/groups/sync": _sync_path("LdapGroupSync", tag="ldap"),
    }
)

# -- the OIDC group sync (Wharf's): each OIDC user's groups asked again with their refresh token ---

DEFINITIONS.update(
    {
        "OidcGroupSyncReport": {
            "type": "object",
            "properties": {
                **_SYNC_RUN,
                "checked": {**_INT, "description": "Users the provider answered for"},
                "changed": {**_INT, "description": "Users whose groups or admin flag changed"},
                "dropped": {**_INT, "description": "Users the provider refused: their OIDC groups dropped"},
                "failed": {"type": "array", "items": _STR, "description": "Users left unchanged"},
                "error": {**_STR, "description": "Why the run changed nothing (the provider down, …)"},
            },
        },
    }
)
PATHS.update(
    {
        "/system/oidc/groups/sync": _sync_path("OidcGroupSync", tag="oidc"),
    }
)


DOCUMENT: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Wharf API (Harbor API v2.0 compatible)", "version": "2.0"},
    "basePath": "/api/v2.0",
    "schemes": ["http", "https"],
    "consumes": ["application/json"],
    "produces": ["application/json", "text/plain"],
    "securityDefinitions": {"basic": {"type": "basic"}},
    "security": [{"basic": []}],
    "paths": PATHS,
    "definitions": DEFINITIONS,
}
