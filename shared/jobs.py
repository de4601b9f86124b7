"""Enqueue a job by its task name, after the caller's transaction committed (`send_task`): what
every service but the job service knows of Celery. It imports no job-service code.

A message only wakes a worker: the execution's rows in SQL are the truth, and the job service's
reconciler plans again an execution whose message was lost (Redis down at the enqueue, a crash
between the commit and the enqueue). So a failed enqueue is logged, not raised to the caller.
Celery is imported at the first enqueue: a process that never enqueues does not load it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wharf_shared.logging import get_logger

if TYPE_CHECKING:
    from celery import Celery

    from wharf_shared.config import Settings

log = get_logger(__name__)

# Task names: the job service registers these; others only name them.
REPLICATION_PLAN = "wharf.replication.plan"  # args: execution id
TASK_RUN = "wharf.jobs.run_task"  # args: task id

_clients: dict[tuple[str, str], Celery] = {}
_clients_lock = threading.Lock()


def client(broker_url: str, queue: str) -> Celery:
    """A Celery app that only sends (one per broker and queue, per process)."""
    with _clients_lock:
        app = _clients.get((broker_url, queue))
        if app is None:
            from celery import Celery

            app = Celery("wharf", broker=broker_url, set_as_current=False)
            app.conf.task_default_queue = queue
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_transport_options = {"socket_timeout": 5, "socket_connect_timeout": 5}
            _clients[(broker_url, queue)] = app
        return app


def send(settings: Settings, name: str, args: Sequence[Any], *, countdown: float | None = None) -> None:
    """Send `name(*args)` (blocking: call it from a thread in async code)."""
    jobs = settings.jobservice
    client(settings.effective_broker_url, jobs.queue).send_task(
        name, args=list(args), queue=jobs.queue, countdown=countdown, retry=False
    )


async def enqueue(settings: Settings, name: str, *args: Any) -> bool:
    """Send after commit, off the event loop; False (logged) when the broker did not take it."""
    try:
        await asyncio.to_thread(send, settings, name, args)
    except Exception as exc:  # the reconciler sends it again later
        log.warning("enqueue_failed", task=name, args=list(args), error=str(exc))
        return False
    return True
