"""The ui service's URL map: every `/api/v2.0` route, one row each."""

from __future__ import annotations

from aiohttp import web

from wharf_ui.handlers import (
    artifacts,
    audit_logs,
    cmdb,
    configurations,
    ldap,
    members,
    projects,
    registries,
    replication,
    repositories,
    search,
    sessions,
    sso,
    statistics,
    syncs,
    system,
    usergroups,
    users,
)

API = "/api/v2.0"
# A repository's name comes without its project, encoded twice when it holds slashes.
_REPOS = "/projects/{project_name}/repositories"
_REPO = _REPOS + "/{repository_name}"
_ARTIFACT = _REPO + "/artifacts/{reference}"
_POLICIES = "/replication/policies"
_EXECUTIONS = "/replication/executions"

ROUTES = (
    ("GET", "/ping", system.ping, "ping"),
    ("GET", "/health", system.health, "api_health"),
    ("GET", "/systeminfo", system.systeminfo, "systeminfo"),
    ("GET", "/swagger.json", system.swagger, "swagger"),
    ("POST", "/system/cmdb/sync", cmdb.sync_cmdb, "sync_cmdb"),
    ("GET", "/users", users.list_users, "list_users"),
    ("POST", "/users", users.create_user, "create_user"),
    ("GET", "/users/search", users.search_users, "search_users"),
    ("GET", "/users/current", users.current_user, "current_user"),
    ("GET", "/users/current/permissions", users.current_permissions, "current_permissions"),
    ("GET", "/users/{user_id}", users.get_user, "get_user"),
    ("PUT", "/users/{user_id}", users.update_user, "update_user"),
    ("DELETE", "/users/{user_id}", users.delete_user, "delete_user"),
    ("PUT", "/users/{user_id}/password", users.update_password, "update_password"),
    ("PUT", "/users/{user_id}/sysadmin", users.set_sysadmin, "set_sysadmin"),
    ("PUT", "/users/{user_id}/cli_secret", users.set_cli_secret, "set_cli_secret"),
    ("GET", "/usergroups", usergroups.list_usergroups, "list_usergroups"),
    ("POST", "/usergroups", usergroups.create_usergroup, "create_usergroup"),
    ("GET", "/usergroups/search", usergroups.search_usergroups, "search_usergroups"),
    ("GET", "/usergroups/{group_id}", usergroups.get_usergroup, "get_usergroup"),
    ("PUT", "/usergroups/{group_id}", usergroups.update_usergroup, "update_usergroup"),
    ("DELETE", "/usergroups/{group_id}", usergroups.delete_usergroup, "delete_usergroup"),
    # the LDAP directory (Harbor's), and the group sync (ours)
    ("POST", "/ldap/ping", ldap.ping_ldap, "ping_ldap"),
    ("GET", "/ldap/users/search", ldap.search_ldap_users, "search_ldap_users"),
    ("POST", "/ldap/users/import", ldap.import_ldap_users, "import_ldap_users"),
    ("GET", "/ldap/groups/search", ldap.search_ldap_groups, "search_ldap_groups"),
    ("POST", "/ldap/groups/sync", syncs.request_ldap_group_sync, "request_ldap_group_sync"),
    ("GET", "/ldap/groups/sync", syncs.get_ldap_group_sync, "get_ldap_group_sync"),
    ("POST", "/system/oidc/groups/sync", syncs.request_oidc_group_sync, "request_oidc_group_sync"),
    ("GET", "/system/oidc/groups/sync", syncs.get_oidc_group_sync, "get_oidc_group_sync"),
    # projects, members, search
    ("GET", "/projects", projects.list_projects, "list_projects"),
    ("HEAD", "/projects", projects.head_project, "head_project"),
    ("POST", "/projects", projects.create_project, "create_project"),
    ("GET", "/projects/{project_name_or_id}", projects.get_project, "get_project"),
    ("PUT", "/projects/{project_name_or_id}", projects.update_project, "update_project"),
    ("DELETE", "/projects/{project_name_or_id}", projects.delete_project, "delete_project"),
    ("GET", "/projects/{project_name_or_id}/_deletable", projects.project_deletable, "project_deletable"),
    ("GET", "/projects/{project_name_or_id}/summary", projects.project_summary, "project_summary"),
    ("GET", "/projects/{project_name_or_id}/members", members.list_members, "list_members"),
    ("POST", "/projects/{project_name_or_id}/members", members.add_member, "add_member"),
    ("GET", "/projects/{project_name_or_id}/members/{mid}", members.get_member, "get_member"),
    ("PUT", "/projects/{project_name_or_id}/members/{mid}", members.update_member, "update_member"),
    ("DELETE", "/projects/{project_name_or_id}/members/{mid}", members.delete_member, "delete_member"),
    ("GET", "/search", search.search_all, "search"),
    # audit log
    ("GET", "/audit-logs", audit_logs.list_audit_logs, "list_audit_logs"),
    ("GET", "/projects/{project_name_or_id}/logs", audit_logs.list_project_logs, "get_logs"),
    # -- repositories, artifacts and tags ---------------------------------------------------------
    ("GET", "/repositories", repositories.list_all_repositories, "list_all_repositories"),
    ("GET", _REPOS, repositories.list_repositories, "list_repositories"),
    ("GET", _REPO, repositories.get_repository, "get_repository"),
    ("PUT", _REPO, repositories.update_repository, "update_repository"),
    ("DELETE", _REPO, repositories.delete_repository, "delete_repository"),
    ("GET", _REPO + "/artifacts", artifacts.list_artifacts, "list_artifacts"),
    ("GET", _ARTIFACT, artifacts.get_artifact, "get_artifact"),
    ("DELETE", _ARTIFACT, artifacts.delete_artifact, "delete_artifact"),
    ("GET", _ARTIFACT + "/tags", artifacts.list_tags, "list_tags"),
    ("POST", _ARTIFACT + "/tags", artifacts.create_tag, "create_tag"),
    ("DELETE", _ARTIFACT + "/tags/{tag_name}", artifacts.delete_tag, "delete_tag"),
    # runtime configuration and statistics
    ("GET", "/configurations", configurations.get_configurations, "get_configurations"),
    ("PUT", "/configurations", configurations.update_configurations, "update_configurations"),
    ("GET", "/statistics", statistics.get_statistic, "get_statistic"),
    # -- registries and replication (system admins only) -------------------------------------------
    ("GET", "/registries", registries.list_registries, "list_registries"),
    ("POST", "/registries", registries.create_registry, "create_registry"),
    ("POST", "/registries/ping", registries.ping_registry, "ping_registry"),
    ("GET", "/registries/{id}", registries.get_registry, "get_registry"),
    ("PUT", "/registries/{id}", registries.update_registry, "update_registry"),
    ("DELETE", "/registries/{id}", registries.delete_registry, "delete_registry"),
    ("GET", "/registries/{id}/info", registries.get_registry_info, "get_registry_info"),
    ("GET", "/replication/adapters", registries.list_adapters, "list_registry_provider_types"),
    ("GET", "/replication/adapterinfos", registries.list_adapter_infos, "list_registry_provider_infos"),
    ("GET", _POLICIES, replication.list_policies, "list_replication_policies"),
    ("POST", _POLICIES, replication.create_policy, "create_replication_policy"),
    ("GET", _POLICIES + "/{id}", replication.get_policy, "get_replication_policy"),
    ("PUT", _POLICIES + "/{id}", replication.update_policy, "update_replication_policy"),
    ("DELETE", _POLICIES + "/{id}", replication.delete_policy, "delete_replication_policy"),
    ("GET", _EXECUTIONS, replication.list_executions, "list_replication_executions"),
    ("POST", _EXECUTIONS, replication.start_execution, "start_replication"),
    ("GET", _EXECUTIONS + "/{id}", replication.get_execution, "get_replication_execution"),
    ("PUT", _EXECUTIONS + "/{id}", replication.stop_execution, "stop_replication"),
    ("GET", _EXECUTIONS + "/{id}/tasks", replication.list_tasks, "list_replication_tasks"),
    ("GET", _EXECUTIONS + "/{id}/tasks/{task_id}/log", replication.get_task_log, "get_replication_log"),
)

# portal sessions (outside /api/v2.0; the proxy sends /c/ here)
PORTAL = (
    ("POST", "/c/login", sessions.login, "login"),
    ("GET", "/c/logout", sessions.logout, "logout"),
    ("GET", "/c/log_out", sessions.logout, "log_out"),  # Harbor's portal's path
    ("GET", "/c/oidc/login", sso.oidc_login, "oidc_login"),
    ("GET", "/c/oidc/callback", sso.oidc_callback, "oidc_callback"),
    ("POST", "/c/oidc/onboard", sso.oidc_onboard, "oidc_onboard"),  # Harbor's onboarding form
    ("GET", "/harbor/oidc-onboard", sso.onboarding_page, "portal_oidc_onboard"),
    ("GET", "/c/cas/login", sso.cas_login, "cas_login"),
    ("GET", "/c/cas/callback", sso.cas_callback, "cas_callback"),
    ("POST", "/c/cas/callback", sso.cas_logout, "cas_single_logout"),  # CAS's single-logout POST
)


def add_routes(app: web.Application) -> None:
    rows = [(method, API + path, handler, name) for method, path, handler, name in ROUTES]
    for method, path, handler, name in [*rows, *PORTAL]:
        if method == "GET":
            app.router.add_get(path, handler, name=name, allow_head=False)
        else:
            app.router.add_route(method, path, handler, name=name)
