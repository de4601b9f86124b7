"""Our OpenAPI (Swagger 2.0, as Harbor's) document of what `/api/v2.0` implements: Harbor's paths,
parameters and field names, written here; served at `/api/v2.0/swagger.json` and what the
schemathesis test holds every answer to. Add a path here with its route."""

from __future__ import annotations

from typing import Any

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
            "creation_time": _TIME,
            "update_time": _TIME,
        },
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
}

# -- runtime configuration and statistics ------------------------------------------------------


def _config_item(kind: str) -> dict[str, Any]:
    """Harbor's StringConfigItem, BoolConfigItem, IntegerConfigItem."""
    return {
        "type": "object",
        "required": ["value", "editable"],
        "properties": {"value": {"type": kind}, "editable": {"type": "boolean"}},
    }


_CONFIG_KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "auth_mode": ("string", {"enum": ["db_auth"]}),
    "project_creation_restriction": ("string", {"enum": ["everyone", "adminonly"]}),
    "self_registration": ("boolean", {}),
    "token_expiration": ("integer", {"minimum": 1, "maximum": (2**31 - 1) // 60}),
    "read_only": ("boolean", {}),
    "anonymous_access": ("boolean", {}),  # Wharf's own: anonymous pulls of public projects
}

DEFINITIONS.update(
    {
        "StringConfigItem": _config_item("string"),
        "BoolConfigItem": _config_item("boolean"),
        "IntegerConfigItem": _config_item("integer"),
        "ConfigurationsResponse": {
            "type": "object",
            "required": list(_CONFIG_KEYS),
            "properties": {
                name: _ref(
                    {"string": "StringConfigItem", "boolean": "BoolConfigItem"}.get(kind, "IntegerConfigItem")
                )
                for name, (kind, _) in _CONFIG_KEYS.items()
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
