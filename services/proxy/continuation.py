"""Continuing a transfer on another instance when its upstream dies mid-body: the pure rules
(which transfers, what to ask, which answers to trust); forward.py does the I/O.

Pulls. A blob GET (`/v2/<name>/blobs/<digest>`) answered 200 or 206 with a Content-Length,
without a Content-Encoding, and naming its object (`Docker-Content-Digest` or `ETag`) is a
`Download`. When its upstream breaks off, the proxy asks another instance for the bytes still
owed (`Range: bytes=<next>-<last>`) and takes the answer only if it is the same object: 206,
`Content-Range: bytes <next>-<last>/<total>` exactly, and the same digest (the same ETag where
there is no digest: an ETag is only a server's validator). The client
sees one unbroken response; blobs are immutable and addressed by digest, so the two halves are
one blob.

Pushes. A PATCH or a PUT with a body to an upload (`/v2/<name>/blobs/uploads/<id>`) is an
`Upload`. The upload's offset when the request began (`start`: the client's Content-Range, else
asked before the body is sent) and its committed offset after the upstream died (`GET` on the
upload: `Range: 0-<last>`) tell how much of the body the registry kept; the proxy sends the
rest from its spool (spool.py), then the client's remaining body, as one request fenced with
`Content-Range: <committed>-<end>` (`X-Wharf-Upload-Offset: <committed>` while the length is
unknown, wharf_shared.accel): the registry takes it only at exactly that offset, so nothing is
written twice, and the final PUT's digest check stays the judge. The spec's `0-0` means
"nothing yet" here (an upload of exactly one byte reads the same; a continuation then is refused
by the fence, never misplaced).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multidict import MultiMapping

from wharf_shared.accel import UPLOAD_OFFSET

# `/v2/<name>/blobs/<digest>`; upload paths (`blobs/uploads/…`) have another slash.
BLOB_GET = re.compile(r"^/v2/.+/blobs/(?P<digest>[^/]+)$")
UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/(?P<id>[^/]+)$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UPLOAD_RANGE = re.compile(r"^0-(\d+)$")
_CLIENT_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")  # as the registry reads it
UPLOAD_METHODS = frozenset({"PATCH", "PUT"})
# What a continuation does not repeat from the client's request: its own range (and the
# condition on it), and the body's description (the continuation carries another body).
PULL_DROPPED = frozenset({"range", "if-range"})
PUSH_DROPPED = frozenset({"content-length", "content-range"})


class Refused(Exception):
    """An answer that cannot continue the transfer; the message says why."""


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int
    end: int  # inclusive
    total: int | None  # None: `*`


def parse_content_range(value: str) -> ContentRange:
    """`bytes <start>-<end>/<total>` (RFC 9110 §14.4) of a 206; Refused for anything else."""
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise Refused(f"Content-Range {value[:100]!r} is not bytes <start>-<end>/<total>")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise Refused(f"Content-Range {value[:100]!r} is not a range of its total")
    return ContentRange(start, end, total)


def _only(headers: MultiMapping[str], name: str) -> str | None:
    """The header's one value; None when absent; Refused when repeated."""
    values = headers.getall(name, [])
    if len(values) > 1:
        raise Refused(f"{name} is repeated")
    return values[0] if values else None


def _length(headers: MultiMapping[str]) -> int | None:
    value = _only(headers, "Content-Length")
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class Download:
    """A blob response that another instance can finish: bytes `first`..`last` (inclusive) of an
    object of `total` bytes, named by `digest` and/or `etag`."""

    first: int
    last: int
    total: int | None
    digest: str | None
    etag: str | None

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @classmethod
    def of(cls, method: str, path: str, status: int, headers: MultiMapping[str]) -> Download | None:
        """The response as a Download; None when it cannot be continued."""
        if method != "GET" or BLOB_GET.match(path) is None or status not in (200, 206):
            return None
        try:
            length = _length(headers)
            digest = _only(headers, "Docker-Content-Digest")
            etag = _only(headers, "ETag")
            if length is None or length == 0 or (digest is None and etag is None):
                return None
            if _only(headers, "Content-Encoding") not in (None, "identity"):
                return None  # a range of an encoded body is not a range of the blob
            if status == 200:
                return cls(0, length - 1, length, digest, etag)
            raw = _only(headers, "Content-Range")
            if raw is None:
                return None
            content_range = parse_content_range(raw)
        except Refused:
            return None
        if content_range.end - content_range.start + 1 != length:
            return None
        return cls(content_range.start, content_range.end, content_range.total, digest, etag)

    def range_header(self, next_byte: int) -> str:
        return f"bytes={next_byte}-{self.last}"

    def check(self, next_byte: int, status: int, headers: MultiMapping[str]) -> None:
        """Refused unless the answer to `range_header(next_byte)` is the rest of this object."""
        if status != 206:
            raise Refused(f"status {status}, not 206")
        raw = _only(headers, "Content-Range")
        if raw is None:
            raise Refused("no Content-Range")
        got = parse_content_range(raw)
        if (got.start, got.end) != (next_byte, self.last):
            raise Refused(f"Content-Range {raw!r}, asked for {next_byte}-{self.last}")
        if self.total is not None and got.total != self.total:
            raise Refused(f"Content-Range {raw!r}: another total than {self.total}")
        length = _length(headers)
        if length is not None and length != self.last - next_byte + 1:
            raise Refused(f"Content-Length {length} for {raw!r}")
        if _only(headers, "Content-Encoding") not in (None, "identity"):
            raise Refused("an encoded body")
        # The digest names the bytes themselves; an ETag is a server's own validator (aiohttp's
        # comes from the file's mtime), so it is the judge only where no digest is given.
        name, expected = ("Docker-Content-Digest", self.digest) if self.digest else ("ETag", self.etag)
        if _only(headers, name) != expected:
            raise Refused(f"{name} {_only(headers, name)!r}, not {expected!r}")


def upload_id(method: str, path: str) -> str | None:
    """The upload a PATCH or PUT writes to; None for any other request."""
    if method not in UPLOAD_METHODS:
        return None
    match = UPLOAD.match(path)
    return match.group("id") if match is not None else None


def client_start(headers: MultiMapping[str]) -> int | None:
    """Where the client says its body starts (its `Content-Range`, as the registry reads it);
    None when it says nothing or something the registry will refuse."""
    values = headers.getall("Content-Range", [])
    if len(values) != 1:
        return None
    match = _CLIENT_CONTENT_RANGE.match(values[0].strip())
    return int(match.group(1)) if match is not None else None


def upload_offset(upload: str, status: int, headers: MultiMapping[str]) -> int:
    """The committed offset an upload's status (`GET` on it: 204 with `Range: 0-<last>`) gives;
    Refused for any other answer, or one about another upload."""
    if status != 204:
        raise Refused(f"upload status {status}, not 204")
    named = _only(headers, "Docker-Upload-UUID")
    if named is not None and named != upload:
        raise Refused(f"the status is of upload {named[:64]!r}")
    raw = _only(headers, "Range")
    match = _UPLOAD_RANGE.match(raw.strip()) if raw is not None else None
    if match is None:
        raise Refused(f"upload Range {raw!r} is not 0-<last>")
    last = int(match.group(1))
    return 0 if last == 0 else last + 1


def resume_point(start: int, committed: int, forwarded: int) -> int:
    """How many of the body's first `forwarded` bytes the registry kept: the body began at the
    upload's offset `start` and the upload now stands at `committed`. Refused when that is not
    within what was forwarded (the upload moved by other hands)."""
    kept = committed - start
    if not 0 <= kept <= forwarded:
        raise Refused(f"the upload stands at {committed}; the body began at {start}, {forwarded} bytes sent")
    return kept


def fence(committed: int, remaining: int | None) -> tuple[str, str] | None:
    """The header that holds a continuation of `remaining` bytes (None: unknown) to the upload
    offset `committed`: its Content-Range, or for a body of unknown length the front door's
    `X-Wharf-Upload-Offset`; None for an empty body, which writes nothing."""
    if remaining is None:
        return UPLOAD_OFFSET, str(committed)
    if remaining == 0:
        return None
    return "Content-Range", f"{committed}-{committed + remaining - 1}"
