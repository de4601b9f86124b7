"""`wharf-jobservice` / `python -m wharf_jobservice`: the job service's processes.

`wharf-jobservice events` runs the event-stream consumer (audit log, pull counts) with `/health`
and `/metrics` on `WHARF_JOBSERVICE__PORT`. Run as many as you like: they share the stream's
entries in one consumer group; `events` imports none of Celery.

`wharf-jobservice worker` runs the same consumer and, beside it, the replication engine: the
Celery worker (replication plans and tasks), the event-based trigger, the scheduler and the
reconciler (`worker.py`). Run as many as you like as well: tasks are claimed in SQL with a lease,
and one process at a time leads the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from wharf_shared.config import ConfigError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wharf-jobservice", description="Wharf's job service.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "events",
        help="consume the event stream: audit log, pull counts (several instances share the work)",
        description="Consume the event stream in a consumer group: audit records and pull counts. "
        "Serves /health, /health/ready and /metrics on WHARF_JOBSERVICE__HOST:WHARF_JOBSERVICE__PORT.",
    )
    commands.add_parser(
        "worker",
        help="run replication jobs (Celery worker), schedules and event triggers, and the events consumer",
        description="The Celery worker (threads) for replication plans and tasks, the event-based "
        "replication trigger, the scheduler and reconciler (one leader among the workers), and the "
        "events consumer. Serves /health, /health/ready and /metrics on "
        "WHARF_JOBSERVICE__HOST:WHARF_JOBSERVICE__PORT.",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command not in ("events", "worker"):
        _parser().print_help(sys.stderr)
        sys.exit(2)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wharf-jobservice: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    from wharf_shared.logging import configure_logging, get_logger

    configure_logging(settings.log_level, "jobservice")
    log = get_logger("wharf_jobservice")
    from wharf_jobservice.app import create_app
    from wharf_shared.db.engine import DatabaseURLError
    from wharf_shared.db.schema import SchemaError, preflight
    from wharf_shared.serving import run

    try:
        asyncio.run(preflight(settings))
    except (SchemaError, DatabaseURLError, OSError) as exc:
        log.error("startup_failed", error=str(exc))
        print(f"wharf-jobservice: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    if args.command == "worker":
        from wharf_jobservice.worker import run_worker

        sys.exit(run_worker(settings))
    jobs = settings.jobservice
    run(lambda: create_app(settings), jobs.host, jobs.port)


if __name__ == "__main__":
    main()
