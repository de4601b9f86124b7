"""Which request targets the front door refuses before routing (wharf_proxy.paths), and what it
forwards for the rest."""

from __future__ import annotations

import pytest

from wharf_proxy.paths import MalformedTarget, check, origin_form

ACCEPTED = [
    "/",
    "/v2/",
    "/v2",
    "/v2/library/app/manifests/v1.0",
    "/v2/library/app/blobs/uploads/?digest=sha256:1&x=a//b/../c",  # the query is the service's
    "/v2/a.b/..c/...",  # dots inside names are not dot-segments
    "/v2/%C3%A9t%C3%A9/tags/list",
    "/api/v2.0/projects/p/repositories/a%252Fb",  # Harbor's double-encoded repository names
    "/service/token?scope=repository:a/b:pull",
    "http://registry.example.com/v2/x",
]

REFUSED = {
    "//v2/x": "empty segment",
    "/v2//x": "empty segment",
    "/v2/a%2F%2Fb": "empty segment",
    "/\\evil": "backslash",
    "/v2/a%5cb": "backslash",
    "/v2/../metrics": "dot-segment",
    "/v2/./x": "dot-segment",
    "/v2/%2e%2E/metrics": "dot-segment",
    "/v2/..": "dot-segment",
    "/v2/a%00b": "control character",
    "/v2/a%0d%0aX-Injected:%201": "control character",
    "/v2/a%7f": "control character",
    "/v2/%zz": "percent-encoding",
    "/v2/a%": "percent-encoding",
    "/v2/%ff": "not UTF-8",
    "/v2/\udcff": "not UTF-8",  # a raw 0xff byte, as aiohttp decodes the request line
    "*": "not a path",
    "v2/x": "not a path",
}


@pytest.mark.parametrize("target", ACCEPTED)
def test_accepted(target: str) -> None:
    check(target)


@pytest.mark.parametrize(("target", "reason"), REFUSED.items())
def test_refused(target: str, reason: str) -> None:
    with pytest.raises(MalformedTarget, match=reason):
        check(target)


def test_forwarded_target_is_origin_form_as_sent() -> None:
    assert origin_form("/v2/a%2Fb?n=1") == "/v2/a%2Fb?n=1"
    assert origin_form("http://elsewhere:8080/v2/x?n=1") == "/v2/x?n=1"
    assert origin_form("https://elsewhere") == "/"
