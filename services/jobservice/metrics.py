"""The events consumer's metrics, beside the HTTP ones every service has."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from wharf_jobservice.consumer import Batch
from wharf_shared.db.audit import AuditRecord
from wharf_shared.metrics import Metrics


class EventMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.events = Counter(
            "wharf_jobservice_events_consumed", "Events read from the stream", registry=registry
        )
        self.recorded = Counter(
            "wharf_jobservice_audit_records",
            "Audit records written (duplicates excluded)",
            ["operation"],
            registry=registry,
        )
        self.claimed = Counter(
            "wharf_jobservice_events_claimed_entries",
            "Stream entries taken over from a consumer that left them pending",
            registry=registry,
        )
        self.malformed = Counter(
            "wharf_jobservice_events_malformed_entries",
            "Stream entries that could not be decoded (acknowledged and skipped)",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "wharf_jobservice_events_batch_duration_seconds",
            "Time to write and acknowledge one batch",
            registry=registry,
        )

    def batch(self, batch: Batch, seconds: float) -> None:
        self.events.inc(len(batch.events))
        if batch.claimed:
            self.claimed.inc(batch.claimed)
        self.batch_seconds.observe(seconds)

    def records(self, written: Sequence[AuditRecord]) -> None:
        for record in written:
            self.recorded.labels(record.operation).inc()
