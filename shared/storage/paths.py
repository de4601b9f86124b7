"""Where registry bytes live inside a storage driver.

    <root>/
      blobs/
        <algorithm>/<first two hex digits>/<hex>/data   a blob or manifest, content-addressed,
                                                       shared by every repository
      uploads/
        <upload id>/<part>                             bytes of an upload in progress: one file
                                                       per request that wrote some, named by it

Nothing here names a repository or tag: which repository may see a blob, and which manifest
a tag points at, is SQL metadata. A blob path is written once (atomically, after its digest
was verified) and never changes; deleting it is garbage collection's job.
"""

from __future__ import annotations

from wharf_shared.digests import Digest

BLOBS = "blobs"
UPLOADS = "uploads"


def blob_path(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def upload_dir(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


def upload_part_path(upload_id: str, part: str) -> str:
    return f"{UPLOADS}/{upload_id}/{part}"
