"""The bench's reporting and the mixed load's choices (pure logic: no server involved)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.bench.http import Connection
from tests.bench.mixed import WEIGHTS, MixedClient
from tests.bench.report import COST_UNITS, cpu_cost, summary
from tests.bench.scenarios import BY_KEY, Measurement
from tests.bench.targets import REFERENCE, WHARF_NONE, WHARF_PROXY, WHARF_RUN


@pytest.mark.parametrize(
    ("scenario", "unit", "value", "cores", "cost"),
    [
        ("push-mono", "MiB/s", 512.0, 1.0, 2.0),  # 1 core for 0.5 GiB/s: 2 CPU seconds per GiB
        ("pull", "MiB/s", 1024.0, 0.5, 0.5),
        ("manifest", "req/s", 2000.0, 1.0, 0.5),  # 0.5 CPU seconds per 1,000 manifest GETs
        ("mixed", "ops/s", 100.0, 1.5, 15.0),
    ],
)
def test_cpu_cost_is_seconds_per_gib_or_per_thousand(
    scenario: str, unit: str, value: float, cores: float, cost: float
) -> None:
    name, scale = COST_UNITS[unit]
    assert name == ("s/GiB" if unit == "MiB/s" else f"s/1k {unit.removesuffix('/s')}")
    measured = Measurement(scenario, REFERENCE, value, unit, server_cores=cores)
    assert cpu_cost(measured, scale) == pytest.approx(cost)
    assert cpu_cost(Measurement(scenario, REFERENCE, value, unit, error="boom"), scale) is None


def test_mixed_load_with_errors_misses_its_target_whatever_its_speed() -> None:
    def run(target: str, value: float, errors: int) -> Measurement:
        return Measurement("mixed", target, value, "ops/s", server_cores=1.0, detail={"errors": errors})

    results = [run(REFERENCE, 100.0, 0), run(WHARF_NONE, 200.0, 0), run(WHARF_PROXY, 200.0, 3)]
    results.append(run(WHARF_RUN, 120.0, 0))
    (row,) = summary(results, [BY_KEY["mixed"]])
    assert row["ratios"] == {WHARF_NONE: 2.0, WHARF_PROXY: 2.0, WHARF_RUN: 1.2}
    assert row["verdicts"] == {WHARF_NONE: "met", WHARF_PROXY: "missed", WHARF_RUN: "missed"}
    assert row["error_counts"] == {REFERENCE: 0, WHARF_NONE: 0, WHARF_PROXY: 3, WHARF_RUN: 0}
    assert row["server_cpu_per_unit"][REFERENCE] == pytest.approx(10.0)  # s per 1,000 operations


def test_the_mixed_loads_cost_counts_the_operations_that_ended_after_the_deadline() -> None:
    # 100 ops/s to the deadline, but 6,600 operations in the 66 CPU seconds of the whole timed run.
    detail = {"server_cpu_seconds": 66.0, "work_units": 6600, "errors": 0}
    measured = Measurement("mixed", REFERENCE, 100.0, "ops/s", server_cores=1.0, detail=detail)
    assert cpu_cost(measured, COST_UNITS["ops/s"][1]) == pytest.approx(10.0)


def _client(index: int, seed: str = "1/1") -> MixedClient:
    return MixedClient(Connection("http://127.0.0.1:9"), {}, index, seed, [])  # never connects


def test_mixed_choices_are_seeded_per_client_and_follow_the_weights() -> None:
    first, again, other = _client(3), _client(3), _client(4)
    picks = [first.choose() for _ in range(2000)]
    assert picks == [again.choose() for _ in range(2000)]
    assert picks[:50] != [other.choose() for _ in range(50)]
    counts = Counter(picks)
    # With nothing of its own, a client pushes instead of deleting.
    assert "delete" not in counts
    assert counts["push"] / len(picks) == pytest.approx((WEIGHTS["push"] + WEIGHTS["delete"]) / 100, abs=0.04)
    assert counts["pull-tag"] / len(picks) == pytest.approx(WEIGHTS["pull-tag"] / 100, abs=0.04)
