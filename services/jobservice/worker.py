"""`wharf-jobservice worker`: the Celery worker (threads, in the main thread) and, in a background
thread, one uvloop event loop that holds the database, Redis and an aiohttp ClientSession and
runs `/health`, `/health/ready` and `/metrics`, the audit events consumer, the replication
trigger, the scheduler and the reconciler (`engine.Engine`). Task bodies run their coroutine on
that loop (`run_coroutine_threadsafe(…).result()`).

Celery messages carry only ids (SQL is the truth): acks late, rejected back to the queue when
the worker is lost, one prefetched message per thread, no result backend; a Redis visibility
timeout well above the task time limit (an unacknowledged message comes back only after it).
SIGTERM/SIGINT: Celery's warm shutdown (running tasks finish), then the loop's services close.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import uvloop
from aiohttp import web

from wharf_jobservice import keys
from wharf_jobservice.app import create_app
from wharf_jobservice.engine import EngineHost
from wharf_shared.config import Settings
from wharf_shared.jobs import REPLICATION_PLAN, TASK_RUN
from wharf_shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class LoopThread:
    """One event loop in a thread of its own; `call` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        context = contextvars.copy_context()  # the log context bound so far (the service's name)
        self._thread = threading.Thread(
            target=lambda: context.run(self._run), name="jobservice-loop", daemon=True
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class Services:
    """The loop's side: the app (health, metrics, consumers, engine) served on host:port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = EngineHost(settings)
        self.app = create_app(settings, contexts=[self.host.context], checks=self.host.checks)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        jobs = self.settings.jobservice
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, jobs.host, jobs.port, reuse_address=True)
        await site.start()
        log.info("jobservice_worker_serving", host=jobs.host, port=jobs.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def celery_app(settings: Settings, loop: LoopThread, host: EngineHost) -> Any:
    from celery import Celery

    jobs = settings.jobservice
    app = Celery("wharf", broker=settings.effective_broker_url, set_as_current=False)
    visibility = max(3600.0, 2 * jobs.task_time_limit_seconds + jobs.retry_backoff_max_seconds + 60)
    app.conf.update(
        task_default_queue=jobs.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility, "socket_timeout": 30},
    )

    # A task body waits for its coroutine on the loop; bounded, should the loop be gone.
    bound = jobs.task_time_limit_seconds + 120

    @app.task(name=REPLICATION_PLAN, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def plan(execution_id: int) -> None:
        loop.call(host.engine.plan(int(execution_id)), timeout=bound)

    @app.task(name=TASK_RUN, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_task(task_id: int) -> str:
        return loop.call(host.engine.run_task(int(task_id)), timeout=bound)

    return app


def run_worker(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; the exit status."""
    loop = LoopThread()
    loop.start()
    services = Services(settings)
    # From now on (not only once Celery runs): SIGHUP's default would end the process.
    on_hup = _reopen_audit_file(loop, services.app)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        loop.call(services.start(), timeout=120)
    except BaseException:
        with _quiet():
            loop.call(services.stop(), timeout=30)
        loop.stop()
        raise
    jobs = settings.jobservice
    code = 0
    try:
        app = celery_app(settings, loop, services.host)
        # Celery warns of root because a pickle message could run code; this worker accepts JSON only.
        from celery.exceptions import SecurityWarning

        warnings.filterwarnings("ignore", category=SecurityWarning)
        worker = _worker_class(app, on_hup)(
            hostname=f"wharf@{services.host.engine.worker}",
            pool_cls="threads",
            concurrency=jobs.concurrency,
            queues=[jobs.queue],
            loglevel=settings.log_level.upper(),
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            optimization="fair",
            quiet=True,
        )
        worker.start()
        code = int(worker.exitcode or 0)
    finally:
        log.info("jobservice_worker_stopping")
        with _quiet():
            loop.call(services.stop(), timeout=60)
        loop.stop()
    return code


def _reopen_audit_file(loop: LoopThread, web_app: web.Application) -> Callable[..., None]:
    """SIGHUP's handler (logrotate's signal): the audit file is reopened on the loop."""

    def reopen(*_args: Any) -> None:
        audit_file = web_app.get(keys.AUDIT_FILE)
        if audit_file is not None:
            loop.loop.call_soon_threadsafe(audit_file.reopen)

    return reopen


def _worker_class(app: Any, on_hup: Callable[..., None]) -> Any:
    """Celery's worker, with SIGHUP kept ours: Celery's own re-executes the whole process."""
    from celery import platforms

    class Worker(app.Worker):  # type: ignore[misc]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            platforms.signals["SIGHUP"] = on_hup

    return Worker


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Log what a shutdown step raises; the next steps still run."""
    try:
        yield
    except Exception as exc:
        log.warning("jobservice_stop_step_failed", error=str(exc) or type(exc).__name__)
