"""Pools over the shared board: when an upstream leaves and rejoins the rotation, counted once
however many processes see it fail."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from wharf_proxy.board import OUT_SINCE, Board
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.pools import Pool
from wharf_shared.metrics import Metrics

A, B = "http://10.0.0.1:5000", "http://10.0.0.2:5000"


@pytest.fixture
def board() -> Iterator[Board]:
    board = Board([("registry", A), ("registry", B)])
    yield board
    board.close()


@dataclass
class Worker:
    """The registry pool [A, B] as one worker process has it, with that process's metrics."""

    pool: Pool
    metrics: Metrics

    def counted(self, family: str, upstream: str = A, **labels: str) -> float:
        """What this process counted in `wharf_proxy_<family>_total` for `upstream`."""
        wanted = {"pool": "registry", "upstream": upstream, **labels}
        total = 0.0
        for metric in self.metrics.registry.collect():
            for sample in metric.samples:
                if sample.name == f"wharf_proxy_{family}_total" and wanted.items() <= sample.labels.items():
                    total += sample.value
        return total


def worker(board: Board, *, eject_after: int = 3, eject_seconds: float = 10.0) -> Worker:
    metrics = Metrics("proxy")
    pool = Pool.of(
        "registry",
        [A, B],
        board=board,
        eject_after=eject_after,
        eject_seconds=eject_seconds,
        metrics=ProxyMetrics(metrics),
    )
    return Worker(pool, metrics)


def as_if_out_since(board: Board, pool: Pool, seconds: float) -> None:
    """Move the ejection into the past (rather than wait for it)."""
    board.set(pool.upstreams[0].slot, OUT_SINCE, time.monotonic() - seconds)


def test_an_upstream_is_ejected_once_however_often_it_fails_again(board: Board) -> None:
    w = worker(board)
    pool = w.pool
    a = pool.upstreams[0]
    pool.failed(a, "refused", "connect")
    pool.failed(a, "refused", "connect")
    assert a.in_rotation
    pool.failed(a, "refused", "connect")
    assert not a.in_rotation
    assert [u.url for u in pool.candidates()][-1] == A  # a last resort
    for _ in range(10):
        pool.failed(a, "refused", "connect")
        pool.check_failed(a, "health check failed")
    assert w.counted("upstream_ejections") == 1
    assert w.counted("upstream_failures", kind="connect") == 13
    assert w.counted("upstream_failures", kind="health") == 10
    assert pool.healthy_count() == 1


def test_answered_requests_do_not_hide_failing_checks(board: Board) -> None:
    """An instance that is not ready (its Redis gone, say) still answers some requests."""
    w = worker(board)
    pool = w.pool
    a = pool.upstreams[0]
    for _ in range(3):
        pool.succeeded(a)
        pool.check_failed(a, "not ready (503): redis: ConnectionError")
    assert not a.in_rotation


def test_an_answer_resets_the_count_of_failed_requests(board: Board) -> None:
    w = worker(board)
    pool = w.pool
    a = pool.upstreams[0]
    for _ in range(5):
        pool.failed(a, "reset", "reset")
        pool.failed(a, "reset", "reset")
        pool.succeeded(a)
    assert a.in_rotation


def test_back_after_eject_seconds_with_a_passing_check(board: Board) -> None:
    w = worker(board, eject_seconds=30)
    pool = w.pool
    a = pool.upstreams[0]
    for _ in range(3):
        pool.check_failed(a, "health check failed")
    pool.check_passed(a)
    pool.succeeded(a)  # an answer, as a last resort, does not bring it back either
    assert not a.in_rotation  # too soon: one that passes checks but fails requests would flap
    as_if_out_since(board, pool, 31)
    pool.check_passed(a)
    assert a.in_rotation
    pool.check_passed(a)
    assert w.counted("upstream_restorations") == 1
    # Its failures were forgotten: it takes three more to go out again.
    pool.failed(a, "reset", "reset")
    pool.check_failed(a, "health check failed")
    assert a.in_rotation


def test_processes_sharing_a_board_share_verdicts(board: Board) -> None:
    """A forked worker's failures take the upstream out for every worker, and a sibling that
    sees it fail afterwards does not eject (or log, or count) it again."""
    child = os.fork()
    if child == 0:  # a worker: its own pools over the inherited board
        code = 1
        try:
            w = worker(board)
            worker_pool = w.pool
            for _ in range(3):
                worker_pool.failed(worker_pool.upstreams[0], "refused", "connect")
            code = 0 if w.counted("upstream_ejections") == 1 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    w = worker(board)
    pool = w.pool
    a = pool.upstreams[0]
    assert not a.in_rotation
    pool.failed(a, "refused", "connect")
    assert w.counted("upstream_ejections") == 0  # the child's ejection, not this process's


def test_changes_from_processes_at_once_are_never_lost(board: Board) -> None:
    """Two processes counting failures of one upstream at the same time: every one counts (the
    board's lock makes each read-modify-write whole)."""
    rounds = 5000
    w = worker(board, eject_after=10 * rounds)
    pool = w.pool
    children = []
    for _ in range(2):
        child = os.fork()
        if child == 0:
            try:
                for _ in range(rounds):
                    pool.failed(pool.upstreams[0], "refused", "connect")
            finally:
                os._exit(0)
        children.append(child)
    for child in children:
        os.waitpid(child, 0)
    for _ in range(10 * rounds - 2 * rounds - 1):
        pool.failed(pool.upstreams[0], "refused", "connect")
    assert pool.upstreams[0].in_rotation
    pool.failed(pool.upstreams[0], "refused", "connect")
    assert not pool.upstreams[0].in_rotation


def test_one_process_at_a_time_runs_the_health_checks(board: Board) -> None:
    now = time.monotonic()
    assert board.lead(101, now, 5)
    assert not board.lead(102, now + 1, 5)
    assert board.lead(101, now + 4, 5)  # renewed by its holder
    assert not board.lead(102, now + 8, 5)
    assert board.lead(102, now + 9.5, 5)  # the holder let it run out: it died or stalled
    assert not board.lead(101, now + 10, 5)
