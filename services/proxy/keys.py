"""The proxy's typed app and request keys."""

from __future__ import annotations

from aiohttp import web

from wharf_proxy.board import Board
from wharf_proxy.forward import Forwarder, Outcome
from wharf_proxy.local_blobs import LocalBlobs
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.pools import Pool
from wharf_proxy.reloader import Reloader

POOLS = web.AppKey("pools", dict[str, Pool])
RELOADER = web.AppKey("reloader", Reloader)  # re-reads the upstreams file
BOARD = web.AppKey("board", Board)  # the verdicts on upstreams, shared by the worker processes
FORWARDER = web.AppKey("forwarder", Forwarder)
PROXY_METRICS = web.AppKey("proxy_metrics", ProxyMetrics)
LOCAL_BLOBS = web.AppKey[LocalBlobs | None]("local_blobs")  # None: blob GETs are relayed

POOL = web.RequestKey("pool", str)  # the pool a request was routed to
OUTCOME = web.RequestKey("outcome", Outcome)  # how forwarding went, for the access log
