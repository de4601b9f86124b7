"""The client address behind trusted proxies (what login throttling keys on)."""

from __future__ import annotations

import os

import pytest
from aiohttp.test_utils import make_mocked_request

from wharf_shared.addresses import client_address, parse_networks
from wharf_shared.config import ConfigError, load_settings

TRUSTED = parse_networks(["127.0.0.0/8", "10.0.0.0/24"])


def address(peer: str, forwarded: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    request = make_mocked_request("GET", "/", headers=headers)
    request._cache["remote"] = peer  # the peer as the transport would report it
    return client_address(request, TRUSTED)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", None, "203.0.113.5"),  # straight from the client
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # an untrusted peer cannot claim another address
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),  # through our proxy
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # a forged first hop is ignored
        ("127.0.0.1", "198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two trusted hops
        ("127.0.0.1", None, "127.0.0.1"),  # the proxy itself
        ("127.0.0.1", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # only proxies: the farthest one
        ("127.0.0.1", "garbage", "garbage"),  # what the proxy said, even if unparseable
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert address(peer, forwarded) == expected


def test_bad_network_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("WHARF_")]:
        monkeypatch.delenv(name)  # the harness's own WHARF_TEST_* too
    monkeypatch.setenv("WHARF_TRUSTED_PROXIES", "10.0.0.0/33")
    with pytest.raises(ConfigError, match="WHARF_TRUSTED_PROXIES"):
        load_settings()
