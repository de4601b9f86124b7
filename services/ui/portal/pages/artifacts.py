"""A repository and its artifacts: the list (tags with their pull commands, digests, sizes, times,
an index's platforms, accessories such as signatures and SBOMs) and one artifact's page (its tags
to add and delete, its platforms, accessories and annotations, its deletion).

Reads call the domain functions of `/api/v2.0/projects/{p}/repositories/{r}/artifacts`, after the
same permission check (`project_scope`); changes are that API's own calls, sent by the page's
script. The repository is one path segment (`team%2Fapp`, or Harbor's twice-encoded
`team%252Fapp`), read as the API reads it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wharf_shared import media_types as mt
from wharf_shared import rbac
from wharf_shared.keys import DB, RUNTIME
from wharf_shared.platforms import Platform
from wharf_ui import artifacts, repositories
from wharf_ui.artifacts import ArtifactInfo
from wharf_ui.handlers.artifacts import _filters
from wharf_ui.handlers.scope import Scope, project_scope, repository_name
from wharf_ui.paths import decoded_name
from wharf_ui.portal.render import page, short_digest
from wharf_ui.portal.viewer import PortalError, require_viewer
from wharf_ui.query import Fuzzy, QueryError

PAGE_SIZE = "10"
# What an accessory is, by its artifact type (Harbor's accessory kinds, and the common others).
ACCESSORY_KINDS = {
    "application/vnd.dev.cosign.artifact.sig.v1+json": "Signature",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "Signature",
    "application/vnd.cncf.notary.signature": "Signature",
    "application/spdx+json": "SBOM",
    "application/vnd.cyclonedx+json": "SBOM",
    "application/vnd.syft+json": "SBOM",
    "application/vnd.goharbor.harbor.sbom.v1": "SBOM",
    "application/vnd.in-toto+json": "Attestation",
    "application/vnd.dsse.envelope.v1+json": "Attestation",
}
_TYPE_LABELS = {"IMAGE": "Image", "CHART": "Helm chart", "CNAB": "CNAB bundle"}


def kind_of(artifact: ArtifactInfo) -> str:
    """What a person calls the artifact: Image index, Image, Signature, SBOM, Helm chart…"""
    if artifact.manifest_media_type in mt.INDEXES:
        return "Image index"
    known = ACCESSORY_KINDS.get(artifact.artifact_type or "")
    if known is not None:
        return known
    return _TYPE_LABELS.get(artifact.type, "Artifact")


@dataclass(frozen=True, slots=True)
class Child:
    """A manifest an index lists, with the platform the index gives it (None: not known)."""

    artifact: ArtifactInfo
    platform: Platform | None


@dataclass(frozen=True, slots=True)
class Row:
    artifact: ArtifactInfo
    children: list[Child]
    accessories: list[ArtifactInfo]


@dataclass(frozen=True, slots=True)
class Abilities:
    """What the viewer may change here (the API refuses the rest; pages do not offer it)."""

    add_tag: bool
    delete_tag: bool
    delete_artifact: bool
    push: bool


def _abilities(scope: Scope, *, read_only: bool, anonymous_access: bool) -> Abilities:
    def can(resource: str, action: str) -> bool:
        allowed = rbac.can(scope.identity, scope.project, resource, action, anonymous_access=anonymous_access)
        return allowed and not read_only

    return Abilities(
        can("tag", "create"), can("tag", "delete"), can("artifact", "delete"), can("repository", "push")
    )


def _ordered(children: list[Child]) -> list[Child]:
    """By platform (`linux/amd64` before `linux/arm64`), the unknown last, then by digest."""
    return sorted(children, key=lambda c: (c.platform is None, str(c.platform or ""), c.artifact.digest))


def _children(index: ArtifactInfo, found: dict[int, ArtifactInfo]) -> list[Child]:
    return _ordered([Child(found[r.child_id], r.platform) for r in index.references if r.child_id in found])


def _names(request: web.Request, scope: Scope) -> tuple[str, str]:
    """The repository's full name (`proj/team/app`) and the part after the project."""
    full_name = repository_name(request, scope.project_name)
    return full_name, full_name[len(scope.project_name) + 1 :]


async def repository_page(request: web.Request) -> web.Response:
    await require_viewer(request)
    scope = await project_scope(request, "artifact", "list")
    full_name, short_name = _names(request, scope)
    runtime = await request.app[RUNTIME].get()
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query, conditions, order = _filters(request, artifacts.ARTIFACTS)
    tag = request.query.get("tag", "").strip()
    try:
        if tag:
            conditions.append(artifacts.tag_condition(Fuzzy(tag)))
    except QueryError as exc:
        raise PortalError(str(exc)) from None
    conditions.append(artifacts.top_level())
    async with request.app[DB].read() as conn:
        repository = await repositories.get(conn, scope.project.project_id, full_name)
        found, total = await artifacts.list_artifacts(
            conn, repository.id, conditions, order, query.page, with_tags=True
        )
        children = await artifacts.by_ids(conn, [r.child_id for a in found for r in a.references])
        accessories = await artifacts.referrers_of(conn, repository.id, [a.digest for a in found])
    rows = [Row(a, _children(a, children), accessories[a.digest]) for a in found]
    newest_tag = next((a.tags[0].name for a in found if a.tags), None)
    return await page(
        request,
        "repository.html",
        title=short_name,
        section="projects",
        project=scope.project_name,
        repository=repository,
        full_name=full_name,
        short_name=short_name,
        rows=rows,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        tag=tag,
        filtered=bool(tag or request.query.get("q")),
        newest_tag=newest_tag,
        kind_of=kind_of,
        may=_abilities(scope, read_only=runtime.read_only, anonymous_access=runtime.anonymous_access),
    )


async def artifact_page(request: web.Request) -> web.Response:
    await require_viewer(request)
    scope = await project_scope(request, "artifact", "read")
    full_name, short_name = _names(request, scope)
    runtime = await request.app[RUNTIME].get()
    reference = artifacts.parse_reference(decoded_name(request, "reference"))
    async with request.app[DB].read() as conn:
        repository = await repositories.get(conn, scope.project.project_id, full_name)
        artifact = await artifacts.get_artifact(conn, full_name, reference, with_tags=True)
        children = await artifacts.by_ids(conn, [r.child_id for r in artifact.references])
        accessories = (await artifacts.referrers_of(conn, repository.id, [artifact.digest]))[artifact.digest]
        relations = await artifacts.relations(conn, artifact)
    return await page(
        request,
        "artifact.html",
        title=f"{kind_of(artifact)} {short_digest(artifact.digest)} · {short_name}",
        section="projects",
        project=scope.project_name,
        repository=repository,
        full_name=full_name,
        short_name=short_name,
        artifact=artifact,
        children=_children(artifact, children),
        accessories=accessories,
        relations=relations,
        platform=relations.platform,  # the platform an index gives this manifest
        kind_of=kind_of,
        may=_abilities(scope, read_only=runtime.read_only, anonymous_access=runtime.anonymous_access),
    )


PAGES = (
    ("/harbor/projects/{project_name}/repositories/{repository_name}", repository_page, "portal_repository"),
    (
        "/harbor/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
        artifact_page,
        "portal_artifact",
    ),
)
