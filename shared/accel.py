"""Internal redirects of blob downloads (the pattern of nginx's `X-Accel-Redirect`).

A front door that can read the registry's filesystem storage says so on the blob GETs it
forwards (`X-Wharf-Accel: blobs`). The registry, when the peer is a trusted proxy, does all
it does for a pull (authorization, the repository's link to the blob, metrics) and answers
with the headers it would send, the blob's size, and `X-Accel-Redirect: /_wharf/storage/<the
blob's storage-relative path>`, but no body (`Content-Length: 0`: a length with no bytes
behind it would break the connection's framing). The front door sends the file itself with
sendfile. wharf-proxy strips the prefix and checks the rest; nginx maps the prefix to the
storage root in an `internal` location (ansible/roles/nginx/templates/nginx.conf.j2).

Clients never set the request header nor see the redirect: the front door removes both.

`X-Wharf-Upload-Write: <id>`, also the front door's, names a write to an upload (a PATCH, or a
PUT with a body) whose body it holds and may send again to another instance when the first died
before answering: the registry records the id with the write, and takes a repeat of it once.

One more header is the front door's: `X-Wharf-Upload-Offset: <n>` on a PATCH or PUT with a body
says "write this body only if the upload stands at n", as `Content-Range: <n>-<end>` does, for a
body whose length is not known (a chunked one that the front door continues on another instance
after its upstream died: a Content-Range needs the end).
"""

from __future__ import annotations

import re

ACCEL_REQUEST = "X-Wharf-Accel"  # from the front door: it can serve local blobs
ACCEL_BLOBS = "blobs"  # its only value
ACCEL_REDIRECT = "X-Accel-Redirect"  # from the registry: serve this file instead
BLOB_LENGTH = "X-Wharf-Blob-Length"  # from the registry: the whole blob's size, as SQL records it
REDIRECT_PREFIX = "/_wharf/storage/"  # the URI prefix that stands for the storage root
UPLOAD_WRITE = "X-Wharf-Upload-Write"  # from the front door: its id of an upload write it may repeat
WRITE_ID = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_OFFSET = "X-Wharf-Upload-Offset"  # from the front door: the upload offset a body must start at

# Headers that are the front door's and the registry's business only, in either direction.
INTERNAL_HEADERS = frozenset(
    name.lower() for name in (ACCEL_REQUEST, ACCEL_REDIRECT, BLOB_LENGTH, UPLOAD_WRITE, UPLOAD_OFFSET)
)


def redirect_uri(storage_path: str) -> str:
    """The `X-Accel-Redirect` value naming a storage-relative path."""
    return REDIRECT_PREFIX + storage_path
