"""The mixed load's client: one registry user looping over a weighted mix of real operations.

Each client owns a repository (`bench/mixed-NN`) and a mount destination (`bench/mixed-NN-mounts`)
and pulls from a shared one seeded before the clock starts (never changed while it runs), so it
always knows what every answer must be: any other status, digest or body is an error, counted
and kept (method, path, status, request id) without stopping the run. Its choices come from a
`random.Random` seeded with (seed, client), so a run can be repeated operation for operation.

| operation   | requests                                                                          |
|-------------|-----------------------------------------------------------------------------------|
| push        | the 7 of a docker push of a new one-layer image (`push_small`)                    |
| pull-tag    | GET manifest by tag (digest and bytes checked), GET config and layer (bytes checked)|
| pull-digest | the same with the manifest by digest                                              |
| delete      | DELETE one of its manifests by digest, HEAD → 404; or (where the registry deletes |
|             | tags) DELETE the tag, GET → 404. With nothing of its own to delete: a push        |
| mount       | POST `?mount=&from=` a layer of the shared repository or its own → 201, HEAD 200  |
| abandon     | POST, PATCH 4 KiB (Content-Range), never finished                                 |
| cancel      | POST, PATCH 4 KiB, DELETE the upload → 204, GET its status → 404                  |
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tests.bench.http import Connection, HTTPError, Response
from tests.bench.pushes import ACCEPT, OCTETS, PUSH_REQUESTS, SmallImage, push_small, sha256, small_image

# Read-heavy, as registries in use are; every kind of write present.
WEIGHTS: dict[str, int] = {
    "push": 20,
    "pull-tag": 25,
    "pull-digest": 15,
    "delete": 10,
    "mount": 10,
    "abandon": 10,
    "cancel": 10,
}
SHARED_REPO = "bench/mixed-base"
CHUNK = 4096
ERROR_SAMPLES = 10  # per client: the first errors, word for word


class Unexpected(HTTPError):
    """A status, digest or body other than the one the registry must answer."""


@dataclass(frozen=True)
class Image:
    """An image a client may pull: where it is, its tag, and its bytes."""

    repo: str
    tag: str
    content: SmallImage

    @property
    def digest(self) -> str:
        return self.content.digest


def check(response: Response, status: int, method: str, path: str) -> Response:
    if response.status != status:
        detail = response.body[:200].decode("utf-8", "replace")
        request_id = response.header("X-Request-Id")
        rid = f" request id {request_id}" if request_id else ""
        raise Unexpected(f"{method} {path}: HTTP {response.status}, expected {status}{rid}: {detail}")
    return response


def repo_names(index: int) -> tuple[str, str]:
    """(own repository, mount destination) of client `index`."""
    return f"bench/mixed-{index:02d}", f"bench/mixed-{index:02d}-mounts"


@dataclass
class MixedClient:
    """One client of the mixed load; `auth` grants push and pull on its repositories and pull on
    the shared one, `shared` lists the images there."""

    conn: Connection
    auth: dict[str, str]
    index: int
    seed: str
    shared: list[Image]
    tag_delete: bool = False  # the registry answers DELETE /manifests/<tag> (OCI 1.1, optional)
    own: list[Image] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    late: int = 0  # operations that completed after the deadline: not in the figure, in the CPU cost
    _pushed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}/{self.index}")  # a load mix, not a secret
        self.repo, self.mount_repo = repo_names(self.index)
        self._kinds = list(WEIGHTS)
        self._weights = [WEIGHTS[k] for k in self._kinds]

    # -- the loop -------------------------------------------------------------------------------

    def choose(self) -> str:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        return "push" if kind == "delete" and not self.own else kind

    def step(self, deadline: float | None = None) -> tuple[str, bool]:
        """Run one operation: (its kind, whether it completed without error before `deadline`)."""
        kind = self.choose()
        started = time.monotonic()
        try:
            getattr(self, "op_" + kind.replace("-", "_"))()
        except (HTTPError, ValueError, KeyError) as exc:  # any wrong answer, or a broken connection
            self.errors[kind] += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(f"{kind}: {exc}")
            self.conn.close()  # start the next operation on a clean connection
            return kind, False
        finished = time.monotonic()
        if deadline is not None and finished > deadline:
            self.late += 1
            return kind, False
        self.done[kind] += 1
        self.latencies.setdefault(kind, []).append((finished - started) * 1000)
        return kind, True

    def _request(
        self, method: str, path: str, status: int, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        self.requests += 1
        answer = self.conn.request(method, path, headers={**self.auth, **(headers or {})}, body=body)
        return check(answer, status, method, path)

    # -- operations -----------------------------------------------------------------------------

    def op_push(self) -> None:
        image = Image(self.repo, f"m{self._pushed}", small_image(f"{self.seed}/{self.index}/{self._pushed}"))
        self._pushed += 1
        self.requests += PUSH_REQUESTS
        push_small(self.conn, image.repo, image.tag, image.content, self.auth)
        self.own.append(image)

    def _pick(self) -> Image:
        if self.own and self.rng.random() < 0.5:
            return self.rng.choice(self.own)
        return self.rng.choice(self.shared)

    def _pull(self, image: Image, reference: str) -> None:
        path = f"/v2/{image.repo}/manifests/{reference}"
        answer = self._request("GET", path, 200, headers={"Accept": ACCEPT})
        served = answer.header("Docker-Content-Digest")
        if served not in ("", image.digest) or answer.body != image.content.manifest:
            raise Unexpected(f"GET {path}: other bytes than were pushed (digest {served})")
        for blob in (image.content.config, image.content.layer):
            digest = sha256(blob)
            got = self._request("GET", f"/v2/{image.repo}/blobs/{digest}", 200)
            if got.body != blob:
                raise Unexpected(f"GET /v2/{image.repo}/blobs/{digest}: other bytes than were pushed")

    def op_pull_tag(self) -> None:
        image = self._pick()
        self._pull(image, image.tag)

    def op_pull_digest(self) -> None:
        image = self._pick()
        self._pull(image, image.digest)

    def op_delete(self) -> None:
        image = self.own.pop(self.rng.randrange(len(self.own)))
        if self.tag_delete and self.rng.random() < 0.5:
            path = f"/v2/{image.repo}/manifests/{image.tag}"
            self._request("DELETE", path, 202)
            self._request("GET", path, 404, headers={"Accept": ACCEPT})
            return
        path = f"/v2/{image.repo}/manifests/{image.digest}"
        self._request("DELETE", path, 202)
        self._request("HEAD", path, 404, headers={"Accept": ACCEPT})

    def op_mount(self) -> None:
        source = self._pick()
        layer = source.content.layer
        digest = sha256(layer)
        query = urlencode({"mount": digest, "from": source.repo}, safe=":/")
        self._request("POST", f"/v2/{self.mount_repo}/blobs/uploads/?{query}", 201)
        head = self._request("HEAD", f"/v2/{self.mount_repo}/blobs/{digest}", 200)
        if int(head.header("Content-Length", "-1")) != len(layer):
            raise Unexpected(f"HEAD mounted {digest}: size {head.header('Content-Length')}")

    def _start_and_patch(self) -> str:
        started = self._request("POST", f"/v2/{self.repo}/blobs/uploads/", 202)
        location = self.conn.target(started.header("Location"))
        if not location.startswith("/v2/"):
            raise Unexpected(f"POST /v2/{self.repo}/blobs/uploads/: Location {location!r}")
        chunk = self.rng.randbytes(CHUNK)
        patched = self._request(
            "PATCH",
            location,
            202,
            headers={**OCTETS, "Content-Range": f"0-{CHUNK - 1}"},
            body=chunk,
        )
        return self.conn.target(patched.header("Location") or location)

    def op_abandon(self) -> None:
        self._start_and_patch()

    def op_cancel(self) -> None:
        location = self._start_and_patch()
        self._request("DELETE", location, 204)
        self._request("GET", location, 404)
