"""The replication bench's figures and report (pure logic: no site started)."""

from __future__ import annotations

import json

from tests.bench.replication import (
    REFERENCE,
    RERUN,
    WHARF,
    ReplicationResult,
    ReplicationRun,
    result_json,
    table,
)

MiB = 1024 * 1024


def measured() -> ReplicationResult:
    result = ReplicationResult(50, (MiB, MiB // 4), 4, total_bytes=64 * MiB)
    result.runs = [
        ReplicationRun(WHARF, seconds=4.0, artifacts=50, bytes=64 * MiB),
        ReplicationRun(REFERENCE, seconds=6.0, artifacts=50, bytes=64 * MiB),
        ReplicationRun(RERUN, seconds=0.5, artifacts=50),
    ]
    return result


def test_figures_and_ratio() -> None:
    result = measured()
    wharf = result.run(WHARF)
    assert wharf is not None
    assert (wharf.mib_per_s, wharf.artifacts_per_s) == (16.0, 12.5)
    rerun = result.run(RERUN)
    assert rerun is not None
    assert (rerun.mib_per_s, rerun.artifacts_per_s) == (None, 100.0)  # nothing crossed: no MiB/s
    assert result.ratio == 1.5  # skopeo's seconds over Wharf's: Wharf faster
    record = json.loads(json.dumps(result_json(result)))
    assert record["ratio_reference_seconds_over_wharf_seconds"] == 1.5
    assert record["runs"][WHARF]["mib_per_s"] == 16.0
    lines = table(result)
    assert "1024 KiB + 256 KiB layers" in lines[0]
    assert lines[-1] == "  ratio skopeo s / Wharf s: 1.50 (Wharf faster)"


def test_a_failed_run_has_no_ratio() -> None:
    result = measured()
    reference = result.run(REFERENCE)
    assert reference is not None
    reference.error = "RuntimeError: skopeo not installed"
    reference.seconds = None
    assert result.ratio is None
    lines = table(result)
    assert any("ERROR RuntimeError: skopeo not installed" in line for line in lines)
    assert lines[-1].endswith("- (a run is missing)")
    assert result_json(result)["ratio_reference_seconds_over_wharf_seconds"] is None
