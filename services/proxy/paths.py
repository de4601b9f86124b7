"""Request targets the front door refuses before any route acts on them.

A target is reduced to its path first: origin-form (`/v2/x?n=1`) as it is, absolute-form
(`http://host/v2/x`, which servers must accept) to its path; asterisk-form (`*`) and anything
else is malformed. The path is then percent-decoded, so that encoded spellings (`%2e%2e`,
`%5c`, `%2f%2f`, `%00`) are judged as what they decode to, and refused (400 `BAD_REQUEST`)
when it has:

- an empty segment (`//`), except the trailing slash (`/v2/`): no service names anything so,
  and some servers and file systems collapse them;
- a `.` or `..` segment: a dot-segment is a relative reference, meaningless in a request and
  the classic way to climb out of a prefix (`/v2/../metrics`);
- a backslash, which some servers and file systems read as a separator;
- a control character (U+0000 to U+001F, U+007F);
- broken percent-encoding (`%zz`, a lone `%`) or bytes that are not UTF-8.

The query string is the service's business. What is forwarded is exactly the target as the
client sent it (reduced to origin-form), never a re-encoded copy.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

# The usual path: segments of unreserved and sub-delim characters, none starting with a dot, no
# escapes; it needs no further look.
_PLAIN = re.compile(r"(?:/[A-Za-z0-9_~:@!$&'()*+,;=-][A-Za-z0-9._~:@!$&'()*+,;=-]*)*/?")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


class MalformedTarget(Exception):
    """A request target the front door refuses; the message says why."""


def origin_form(target: str) -> str:
    """The target as `/path?query`; absolute-form loses its scheme and authority."""
    if target.startswith("/"):
        return target
    match = _ABSOLUTE.match(target)
    if match is not None:
        rest = target[match.end() :]
        return rest if rest.startswith("/") else "/" + rest
    return target


def check(target: str) -> None:
    """Raise `MalformedTarget` when the front door refuses `target` (see the module's rules)."""
    reduced = origin_form(target)
    if not reduced.startswith("/"):
        raise MalformedTarget("the request target is not a path")
    path = reduced.split("?", 1)[0].split("#", 1)[0]
    if _PLAIN.fullmatch(path):
        return
    if _BROKEN_ESCAPE.search(path):
        raise MalformedTarget("broken percent-encoding in the path")
    try:
        # aiohttp decoded the request line as UTF-8 with surrogateescape: back to its bytes.
        decoded = unquote_to_bytes(path.encode("utf-8", "surrogateescape")).decode("utf-8")
    except UnicodeError:
        raise MalformedTarget("the path is not UTF-8") from None
    if _CONTROL.search(decoded):
        raise MalformedTarget("control character in the path")
    if "\\" in decoded:
        raise MalformedTarget("backslash in the path")
    segments = decoded.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            raise MalformedTarget("dot-segment in the path")
        if segment == "" and index < len(segments) - 1:
            raise MalformedTarget("empty segment (//) in the path")
