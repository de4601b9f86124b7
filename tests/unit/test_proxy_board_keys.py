"""The board's key table (wharf_proxy.board) and pools that change while the proxy runs
(wharf_proxy.pools.reload): every worker maps a (pool, URL) to the same slot, slots change hands
safely, and a worker that has not re-read the file yet never disturbs another upstream's verdict."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from wharf_proxy.board import CHECK_FAILURES, OUT, REQUEST_FAILURES, Board, BoardFull, Ref
from wharf_proxy.pools import Pool, reload, resync
from wharf_proxy.upstreams_file import Lists

A, B, C = "http://10.0.0.1:5000", "http://10.0.0.2:5000", "http://10.0.0.3:5000"


@pytest.fixture
def board() -> Iterator[Board]:
    board = Board(capacity=4, stale_seconds=60)
    yield board
    board.close()


def lists(registry: list[str], token: list[str] | None = None) -> Lists:
    return {"registry": registry, "token": token or [], "ui": []}


def worker(board: Board, registry: list[str], *, eject_after: int = 3) -> dict[str, Pool]:
    """One worker's pools over the shared board."""
    return {
        name: Pool.of(name, urls, board=board, eject_after=eject_after, eject_seconds=10.0)
        for name, urls in lists(registry).items()
    }


def urls(pools: dict[str, Pool]) -> list[str]:
    return [u.url for u in pools["registry"].upstreams]


def test_one_key_one_slot(board: Board) -> None:
    a = board.claim("registry", A)
    assert board.claim("registry", A) == a  # found, not claimed again
    assert board.claim("token", A).slot != a.slot  # the pool is part of the key
    assert board.claim("registry", B).slot not in {a.slot, board.claim("token", A).slot}
    assert board.taken() == 3


def test_a_slot_given_back_is_reset_for_its_next_key(board: Board) -> None:
    a = board.claim("registry", A)
    board.set(a.slot, REQUEST_FAILURES, 2)
    board.set(a.slot, OUT, 1)
    assert board.release(a)
    assert not board.owns(a)
    assert not board.release(a)  # once
    c = board.claim("registry", C, new=True)
    assert c.slot == a.slot
    assert c.gen > a.gen
    assert board.get(c.slot, REQUEST_FAILURES) == 0
    assert board.get(c.slot, OUT) == 2  # new: awaiting its first passing check
    assert not board.owns(a)


def test_a_full_board_takes_only_a_slot_nobody_touched_for_long(board: Board) -> None:
    refs = [board.claim("registry", f"http://10.0.1.{i}:5000", now=100.0) for i in range(4)]
    with pytest.raises(BoardFull, match="all 4 slots are taken"):
        board.claim("registry", C, now=150.0)
    board.touch(refs[1:], now=150.0)  # refs[0]'s workers are gone: nobody touches it
    c = board.claim("registry", C, now=170.0)
    assert c.slot == refs[0].slot
    assert not board.owns(refs[0])


def test_workers_after_a_fork_map_a_key_to_the_same_slot(board: Board) -> None:
    """A key claimed in one process is found by the other, which also sees the slot given back."""
    board.claim("registry", A)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            c = board.claim("registry", C, new=True)
            os.write(write, f"{c.slot} {c.gen}".encode())
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    slot, gen = map(int, os.read(read, 64).split())
    os.close(read)
    os.close(write)
    assert board.claim("registry", C) == Ref(slot, gen)
    assert board.get(slot, OUT) == 2


def test_a_reload_adds_new_instances_out_until_checked_and_keeps_the_verdicts_of_the_rest(
    board: Board,
) -> None:
    pools = worker(board, [A, B])
    registry = pools["registry"]
    a, b = registry.upstreams
    for _ in range(3):
        registry.failed(b, "refused", "connect")
    assert not b.in_rotation

    change = reload(pools, lists([B, C]), board)
    assert change.added == {"registry": [C]}
    assert change.removed == {"registry": [A]}
    assert urls(pools) == [B, C]
    assert registry.upstreams[0] is b  # the same upstream: its requests in flight, its verdict
    assert b.state == "ejected"
    assert a.state == "leaving"  # a request still holding it writes nowhere
    c = registry.upstreams[1]
    assert c.state == "new"
    assert not c.in_rotation
    assert {u.url for u in registry.candidates()} == {B, C}  # none in rotation: both still tried
    for _ in range(5):
        registry.check_failed(c, "refused")  # not up yet: no ejection, no log, it stays new
    assert c.state == "new"
    with capture_logs() as logs:
        registry.check_passed(c)
    assert c.in_rotation
    assert [e["event"] for e in logs] == ["upstream_admitted"]
    assert not reload(pools, lists([B, C]), board)  # nothing changed


def test_a_worker_that_has_not_reloaded_yet_never_touches_the_new_owner_of_a_slot(board: Board) -> None:
    first, second = worker(board, [A, B]), worker(board, [A, B])
    reload(first, lists([B, C]), board)
    c = first["registry"].upstreams[1]
    a_in_second = second["registry"].upstreams[0]
    assert c.slot == a_in_second.slot  # A's slot was given back, and C took it
    assert not a_in_second.in_rotation  # read without the lock: leaving
    with capture_logs() as logs:
        for _ in range(5):
            second["registry"].failed(a_in_second, "refused", "connect")
            second["registry"].check_failed(a_in_second, "refused")
        second["registry"].succeeded(a_in_second)
        second["registry"].check_passed(a_in_second)
    assert logs == []  # no ejection of an upstream that left, nor of C
    assert board.get(c.slot, REQUEST_FAILURES) == 0
    assert board.get(c.slot, CHECK_FAILURES) == 0
    assert c.state == "new"

    reload(second, lists([B, C]), board)
    assert [u.ref for u in second["registry"].upstreams] == [u.ref for u in first["registry"].upstreams]
    assert board.taken() == 2


def test_resync_follows_a_slot_that_changed_hands(board: Board) -> None:
    """The first worker saw A leave and come back (two versions of the file); the second read
    only the last, where A is as it was: its claim of A moved, and it finds the new one."""
    first, second = worker(board, [A]), worker(board, [A])
    reload(first, lists([]), board)
    reload(first, lists([A]), board)
    a_first, a_second = first["registry"].upstreams[0], second["registry"].upstreams[0]
    assert a_first.ref != a_second.ref
    assert not reload(second, lists([A]), board)  # nothing changed in its eyes
    resync(second, board, now=0.0)
    assert a_second.ref == a_first.ref
    assert board.taken() == 1
