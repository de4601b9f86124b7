"""The pure rules of continuing a transfer (wharf_proxy.continuation): which responses can be
continued, which continuations are the same object, what an upload's status says, where the
body resumes and how the continuation is fenced."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from wharf_proxy.continuation import (
    ContentRange,
    Download,
    Refused,
    client_start,
    fence,
    parse_content_range,
    resume_point,
    upload_id,
    upload_offset,
)
from wharf_shared.accel import UPLOAD_OFFSET

DIGEST = "sha256:" + "ab" * 32
BLOB = f"/v2/library/app/blobs/{DIGEST}"


def headers(**values: str) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in values.items():
        out.add(name.replace("_", "-"), value)
    return out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 5-5/6", ContentRange(5, 5, 6)),
        (" bytes 10-19/* ", ContentRange(10, 19, None)),
    ],
)
def test_content_ranges_are_read(value: str, expected: ContentRange) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0-99/100",
        "bytes 0-99",
        "bytes 9-5/100",
        "bytes 0-100/100",
        "bytes */100",
        "items 0-1/2",
        "bytes -1-2/3",
    ],
)
def test_malformed_content_ranges_are_refused(value: str) -> None:
    with pytest.raises(Refused):
        parse_content_range(value)


def test_a_whole_blob_is_a_download() -> None:
    found = Download.of("GET", BLOB, 200, headers(Content_Length="1000", Docker_Content_Digest=DIGEST))
    assert found == Download(0, 999, 1000, DIGEST, None)
    assert found.length == 1000
    assert found.range_header(400) == "bytes=400-999"


def test_a_range_of_a_blob_is_a_download() -> None:
    found = Download.of(
        "GET", BLOB, 206, headers(Content_Length="100", Content_Range="bytes 200-299/1000", ETag='"e"')
    )
    assert found == Download(200, 299, 1000, None, '"e"')
    assert found.range_header(250) == "bytes=250-299"


@pytest.mark.parametrize(
    ("method", "path", "status", "values"),
    [
        ("HEAD", BLOB, 200, {"Content_Length": "10", "Docker_Content_Digest": DIGEST}),
        (
            "GET",
            "/v2/library/app/manifests/v1",
            200,
            {"Content_Length": "10", "Docker_Content_Digest": DIGEST},
        ),
        (
            "GET",
            "/v2/library/app/blobs/uploads/x",
            200,
            {"Content_Length": "10", "Docker_Content_Digest": DIGEST},
        ),
        ("GET", BLOB, 404, {"Content_Length": "10", "Docker_Content_Digest": DIGEST}),
        ("GET", BLOB, 307, {"Content_Length": "0", "Docker_Content_Digest": DIGEST}),
        ("GET", BLOB, 200, {"Docker_Content_Digest": DIGEST}),  # no length
        ("GET", BLOB, 200, {"Content_Length": "0", "Docker_Content_Digest": DIGEST}),
        ("GET", BLOB, 200, {"Content_Length": "10"}),  # nothing names the object
        (
            "GET",
            BLOB,
            200,
            {"Content_Length": "10", "Docker_Content_Digest": DIGEST, "Content_Encoding": "gzip"},
        ),
        ("GET", BLOB, 206, {"Content_Length": "10", "Docker_Content_Digest": DIGEST}),  # no Content-Range
        (
            "GET",
            BLOB,
            206,
            {"Content_Length": "9", "Docker_Content_Digest": DIGEST, "Content_Range": "bytes 0-9/20"},
        ),
        (
            "GET",
            BLOB,
            206,
            {"Content_Length": "10", "Docker_Content_Digest": DIGEST, "Content_Range": "0-9/20"},
        ),
    ],
)
def test_what_is_not_a_download(method: str, path: str, status: int, values: dict[str, str]) -> None:
    assert Download.of(method, path, status, headers(**values)) is None


def test_repeated_naming_headers_are_not_a_download() -> None:
    repeated = headers(Content_Length="10", Docker_Content_Digest=DIGEST)
    repeated.add("Docker-Content-Digest", "sha256:" + "cd" * 32)
    assert Download.of("GET", BLOB, 200, repeated) is None


WHOLE = Download(0, 999, 1000, DIGEST, '"e"')


def rest(**overrides: str) -> CIMultiDict[str]:
    values = {
        "Content_Range": "bytes 400-999/1000",
        "Content_Length": "600",
        "Docker_Content_Digest": DIGEST,
        "ETag": '"e"',
        **overrides,
    }
    return headers(**{k: v for k, v in values.items() if v})


def test_the_rest_of_the_same_object_continues() -> None:
    WHOLE.check(400, 206, rest())
    WHOLE.check(400, 206, rest(Content_Length=""))  # a length is not required, only checked


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, rest()),  # the whole object again
        (416, rest()),
        (206, rest(Content_Range="")),
        (206, rest(Content_Range="bytes 401-999/1000")),  # not where it was asked
        (206, rest(Content_Range="bytes 400-998/1000")),  # stops short
        (206, rest(Content_Range="bytes 400-999/2000")),  # another object's total
        (206, rest(Content_Range="bytes 400-999/*")),
        (206, rest(Content_Length="599")),
        (206, rest(Docker_Content_Digest="sha256:" + "cd" * 32)),  # another object
        (206, rest(Docker_Content_Digest="")),  # says nothing of the object
        (206, rest(Content_Encoding="gzip")),
    ],
)
def test_anything_else_is_refused(status: int, answer: CIMultiDict[str]) -> None:
    with pytest.raises(Refused):
        WHOLE.check(400, status, answer)


def test_the_digest_is_the_judge_and_the_etag_only_without_one() -> None:
    WHOLE.check(400, 206, rest(ETag='"another server\'s validator"'))
    WHOLE.check(400, 206, rest(ETag=""))
    named_by_etag = Download(0, 999, 1000, None, '"e"')
    named_by_etag.check(400, 206, rest(Docker_Content_Digest=""))
    for other in ('"f"', ""):
        with pytest.raises(Refused):
            named_by_etag.check(400, 206, rest(Docker_Content_Digest="", ETag=other))


def test_uploads_are_patch_and_put_to_an_upload() -> None:
    path = "/v2/library/app/blobs/uploads/0123abcd"
    assert upload_id("PATCH", path) == "0123abcd"
    assert upload_id("PUT", path) == "0123abcd"
    assert upload_id("POST", path) is None
    assert upload_id("GET", path) is None
    assert upload_id("PATCH", "/v2/library/app/blobs/uploads/") is None
    assert upload_id("PUT", "/v2/library/app/manifests/v1") is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"Content_Range": "100-199"}, 100),
        ({"Content_Range": "bytes=5-9"}, 5),
        ({}, None),
        ({"Content_Range": "5-"}, None),
    ],
)
def test_where_the_client_says_its_body_starts(values: dict[str, str], expected: int | None) -> None:
    assert client_start(headers(**values)) == expected


UPLOAD = "0123abcd"


@pytest.mark.parametrize(("range_header", "offset"), [("0-0", 0), ("0-1", 2), ("0-1048575", 1048576)])
def test_an_upload_status_gives_its_offset(range_header: str, offset: int) -> None:
    assert upload_offset(UPLOAD, 204, headers(Range=range_header, Docker_Upload_UUID=UPLOAD)) == offset
    assert upload_offset(UPLOAD, 204, headers(Range=range_header)) == offset


@pytest.mark.parametrize(
    ("status", "values"),
    [
        (404, {"Range": "0-9"}),
        (200, {"Range": "0-9"}),
        (204, {}),
        (204, {"Range": "bytes=0-9"}),
        (204, {"Range": "1-9"}),
        (204, {"Range": "0-9", "Docker_Upload_UUID": "other"}),
    ],
)
def test_other_answers_are_not_an_upload_status(status: int, values: dict[str, str]) -> None:
    with pytest.raises(Refused):
        upload_offset(UPLOAD, status, headers(**values))


def test_the_body_resumes_past_what_the_registry_kept() -> None:
    assert resume_point(start=100, committed=100, forwarded=5000) == 0  # nothing kept
    assert resume_point(start=100, committed=5100, forwarded=5000) == 5000  # all of it
    assert resume_point(start=0, committed=3000, forwarded=5000) == 3000
    with pytest.raises(Refused):
        resume_point(start=100, committed=50, forwarded=5000)  # the upload went back
    with pytest.raises(Refused):
        resume_point(start=100, committed=5101, forwarded=5000)  # more than was sent


def test_continuations_are_fenced_at_the_committed_offset() -> None:
    assert fence(1000, 500) == ("Content-Range", "1000-1499")
    assert fence(0, 1) == ("Content-Range", "0-0")
    assert fence(1000, None) == (UPLOAD_OFFSET, "1000")  # a body of unknown length
    assert fence(1000, 0) is None  # an empty body writes nothing
