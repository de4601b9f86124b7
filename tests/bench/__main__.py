"""Run the bench: `python -m tests.bench [--quick] [--workers N] [--db sqlite|postgresql] [--only …]
[--targets wharf-none,wharf-token,wharf-proxy,wharf-run,reference]`.

`--only listing` runs just the management API's listing pages (`listing.py`: a `wharf-ui` process
over 10,000 repositories and tags, on `--db`); without `--only` it runs after the registry's.

`--only portal` runs just the portal's repositories page (`portal.py`: a `wharf-ui` process over a
project of 10,000 repositories, page 1, a middle page, the last, a name search; median ms through
the page handler, figures only); without `--only` it runs after the listing.

`--only replication` runs just the replication throughput (`replication.py`: 50 images pushed from
one Wharf to another by a `wharf-jobservice worker`, MiB/s and artifacts/s, beside skopeo copying
the same images 4 at a time, and the policy's re-run with nothing to copy); without `--only` it
runs after the listing. Neither raises out of the bench: a failure is printed and recorded."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.bench import profiling
from tests.bench.listing import ListingCase, run_listing
from tests.bench.machine import disk_probe, settle
from tests.bench.portal import PortalCase, run_portal
from tests.bench.replication import (
    DEFAULT_LAYERS,
    QUICK_LAYERS,
    ReplicationResult,
    result_json,
    run_replication,
)
from tests.bench.replication import table as replication_table
from tests.bench.report import (
    measurement_json,
    memory_json,
    memory_table,
    summary,
    table,
    write_json,
)
from tests.bench.scenarios import (
    ALIASES,
    BY_KEY,
    SCENARIOS,
    Bench,
    Config,
    Measurement,
    Scenario,
    no_profiler,
    probe_single_post,
)
from tests.bench.targets import (
    ALL_TARGETS,
    REFERENCE,
    WHARF_PROXY,
    WHARF_RUN,
    WHARF_TOKEN,
    Target,
    reference_binary,
    reference_version,
    start_full_path,
    start_reference,
    start_wharf,
    start_wharf_run,
)
from tests.bench.wrk import wrk_binary, wrk_version
from tests.support import s3
from tests.support.memory import ProcessMemory, tree_memory
from tests.support.processes import ROOT
from tests.support.s3 import moto_server

MiB = 1024 * 1024
LISTING = "listing"  # the management API's list pages: not a registry scenario, no targets
REPLICATION = "replication"  # Wharf A → Wharf B by the job service, beside skopeo: no targets either
PORTAL = "portal"  # the portal's repositories page over 10,000 repositories: no targets


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.key for s in SCENARIOS] + [LISTING, PORTAL, REPLICATION]
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs (a smoke test)")
    parser.add_argument("--workers", type=int, default=2, help="Wharf registry worker processes (default 2)")
    parser.add_argument(
        "--proxy-workers", type=int, default=2, help=f"proxy worker processes of {WHARF_PROXY} (default 2)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="Wharf's database")
    parser.add_argument(
        "--storage",
        choices=("filesystem", "s3"),
        default="filesystem",
        help="Wharf's storage: s3 runs a moto S3 server on a free port (figures for information)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these (repeat or comma-separate): {', '.join(names)}; `push` = both pushes",
    )
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated subset of {', '.join(ALL_TARGETS)} (default: all)",
    )
    parser.add_argument("--seconds", type=float, help="length of each timed run (default 10, quick 2)")
    parser.add_argument("--blob-mib", type=int, help="large blob size (default 256, quick 16)")
    parser.add_argument("--chunk-mib", type=int, help="PATCH size of the chunked push (default 16, quick 4)")
    parser.add_argument("--reps", type=int, help="timed pushes per target and round (default 1)")
    parser.add_argument(
        "--rounds", type=int, help="run everything this many times, report medians (default 3, quick 1)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        help="wait up to this many seconds for a quiet machine before each timed run (default 20, quick 3)",
    )
    parser.add_argument(
        "--replication-images", type=int, default=50, help="images the replication copies (default 50)"
    )
    parser.add_argument(
        "--replication-layers-kib",
        help="layer sizes of each replicated image, comma-separated KiB (default 1024,256, quick 128,32)",
    )
    parser.add_argument(
        "--replication-concurrency",
        type=int,
        default=4,
        help="the worker's concurrency, and skopeo copies at a time (default 4)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--mixed-seconds", type=float, help="length of the mixed load's run (default 60, quick 5)"
    )
    parser.add_argument("--mixed-clients", type=int, default=32, help="mixed load clients (default 32)")
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the mixed load's choices and images (default 1)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="attach py-spy to Wharf's registry (token: its token service; full path: the proxy and the"
        " services behind it; wharf-run: each service `wharf run` started) while each scenario is timed",
    )
    parser.add_argument(
        "--py-spy-args",
        default="",
        help='more py-spy record flags for --profile, e.g. --py-spy-args="--native --gil"',
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / ".bench", help="results directory (default .bench/)"
    )
    args = parser.parse_args(argv)
    chosen: list[str] = []
    for item in (p.strip() for raw in args.only for p in raw.split(",")):
        if not item:
            continue
        expanded = ALIASES.get(item, (item,))
        for key in expanded:
            if key not in BY_KEY and key not in (LISTING, PORTAL, REPLICATION):
                parser.error(f"unknown scenario {item!r}: choose from {', '.join(names)}")
            chosen.append(key)
    args.scenarios = [s for s in SCENARIOS if not chosen or s.key in chosen]
    args.listing = not chosen or LISTING in chosen
    args.replication = not chosen or REPLICATION in chosen
    args.portal = not chosen or PORTAL in chosen
    if args.replication_layers_kib:
        try:
            sizes = args.replication_layers_kib.split(",")
            args.layer_bytes = tuple(int(k) * 1024 for k in sizes if k.strip())
        except ValueError:
            parser.error("--replication-layers-kib: comma-separated integers")
        if not args.layer_bytes or min(args.layer_bytes) <= 0:
            parser.error("--replication-layers-kib: positive sizes")
    else:
        args.layer_bytes = QUICK_LAYERS if args.quick else DEFAULT_LAYERS
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.target_keys = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.target_keys) - set(ALL_TARGETS)
    if unknown or not args.target_keys:
        parser.error(f"--targets: choose from {', '.join(ALL_TARGETS)}")
    args.target_keys = [t for t in ALL_TARGETS if t in args.target_keys]
    return args


def make_config(args: argparse.Namespace, wrk: str | None) -> Config:
    quick = args.quick
    return Config(
        blob_bytes=(args.blob_mib or (16 if quick else 256)) * MiB,
        chunk_bytes=(args.chunk_mib or (4 if quick else 16)) * MiB,
        reps=args.reps or 1,
        seconds=args.seconds or (2.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        wrk_binary=wrk or "",
        settle_seconds=args.settle if args.settle is not None else (3.0 if quick else 20.0),
        wrk_connections=args.connections,
        mixed_clients=args.mixed_clients,
        mixed_seconds=args.mixed_seconds or (5.0 if quick else 60.0),
        seed=args.seed,
    )


def _git(*argv: str) -> str:
    try:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip()


def environment(
    args: argparse.Namespace, config: Config, wrk: str | None, reference: str | None
) -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "wrk": wrk_version(wrk) if wrk else "not installed",
        "reference": reference_version(reference) if reference else "not installed",
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain"))},
        "db": args.db,
        "storage": args.storage,
        "workers": args.workers,
        "proxy_workers": args.proxy_workers,
        "quick": args.quick,
        "profiled": args.profile,
        "config": {k: v for k, v in vars(config).items() if k != "wrk_binary"},
    }


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)  # unwinds the ExitStack: servers stopped, databases dropped, temp dir removed


def start_targets(
    stack: ExitStack, args: argparse.Namespace, work: Path, logs: Path, reference: str | None
) -> list[Target]:
    targets = []
    token_service = any(s.needs_token_service for s in args.scenarios)
    endpoint = stack.enter_context(moto_server(logs / "moto")) if args.storage == "s3" else None

    def storage() -> dict[str, str] | None:
        return s3.storage_env(endpoint, s3.create_bucket(endpoint)) if endpoint else None

    for key in args.target_keys:
        out(f"starting {key} …")
        if key == REFERENCE:
            assert reference is not None
            target = start_reference(stack, work, logs, reference)
        elif key == WHARF_RUN:  # make run's defaults: SQLite and filesystem whatever --db and --storage say
            target = start_wharf_run(stack, work, logs)
        elif key == WHARF_PROXY:
            target = start_full_path(
                stack,
                work,
                logs,
                db_kind=args.db,
                workers=args.workers,
                proxy_workers=args.proxy_workers,
                storage_env=storage(),
            )
        else:
            auth = "token" if key == WHARF_TOKEN else "none"
            target = start_wharf(
                stack,
                work,
                logs,
                auth=auth,
                db_kind=args.db,
                workers=args.workers,
                token_service=token_service,
                storage_env=storage(),
            )
        target.single_post = probe_single_post(target)
        out(f"  {target.label} at {target.url} (pid {target.process.pid})")
        for behind in target.behind:
            out(f"    behind it: {behind.name} at {behind.url} (pid {behind.pid})")
        if target.token_service is not None:
            server = target.token_service.server
            out(f"  {server.label} at {server.url} (pid {server.process.pid})")
        targets.append(target)
    return targets


def measure_memory(targets: list[Target]) -> dict[str, list[ProcessMemory]]:
    """RSS and PSS of every process of each target (its trees: all the services it runs)."""
    return {t.key: [m for root in t.memory_roots() for m in tree_memory(root).processes] for t in targets}


def run_all(
    bench: Bench, args: argparse.Namespace, targets: list[Target], results: list[Measurement]
) -> None:
    """Every scenario against every target, `--rounds` times; the order of targets rotates each
    round so that none always runs first (or right after another's writes)."""
    collected: dict[tuple[str, str], list[Measurement]] = {}
    for number in range(args.rounds):
        order = targets[number % len(targets) :] + targets[: number % len(targets)]
        for scenario in args.scenarios:
            out(f"\n== {scenario.label} ({scenario.unit}), round {number + 1} of {args.rounds}")
            runs_on = [t for t in order if scenario.runs_on(t)]
            if not runs_on:
                out(f"  skipped: needs Wharf's token service (--targets with {WHARF_TOKEN})")
            for target in runs_on:
                measurement = run_one(bench, scenario, target)
                collected.setdefault((scenario.key, target.key), []).append(measurement)
    for scenario in args.scenarios:
        for target in targets:
            if (scenario.key, target.key) in collected:
                results.append(combine(collected[(scenario.key, target.key)]))


def run_one(bench: Bench, scenario: Scenario, target: Target) -> Measurement:
    started = time.monotonic()
    try:
        measurement = scenario.run(bench, target)
    except Exception as exc:
        measurement = Measurement(
            scenario.key, target.key, None, scenario.unit, error=f"{type(exc).__name__}: {exc}"
        )
        servers = target.servers()
        if scenario.needs_token_service and target.token_service is not None:
            servers.append(target.token_service.server.process)
        for server in servers:
            process = server.process
            if process is not None and process.poll() is not None:
                measurement.error = (
                    f"{measurement.error} ({server.name} exited {process.returncode}; log {server.log_path})"
                )
    took = time.monotonic() - started
    if measurement.error:
        out(f"  {target.key:12} ERROR {measurement.error}  [{took:.0f}s]")
        return measurement
    extra = ""
    if measurement.latency_ms:
        lat = measurement.latency_ms
        extra = f"  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms"
    cpu = f"  cpu srv {measurement.server_cores or 0:.2f} cli {measurement.client_cores or 0:.2f}"
    goal = scenario.value_for(target.key)
    if goal is not None:
        verdict = "met" if (measurement.value or 0) >= goal else "missed"
        extra += f"  target ≥ {goal:,.0f}/s: {verdict}"
    out(f"  {target.key:12} {measurement.value or 0:12,.1f} {scenario.unit}{extra}{cpu}  [{took:.0f}s]")
    return measurement


def combine(rounds: list[Measurement]) -> Measurement:
    """One figure from the rounds: the median; latency and CPU from the median round."""
    ok = [m for m in rounds if m.error is None and m.value is not None]
    if not ok:
        return rounds[0]
    ok.sort(key=lambda m: m.value or 0.0)
    chosen = ok[(len(ok) - 1) // 2]
    values = [m.value or 0.0 for m in ok]
    samples = [v for m in ok for v in (m.samples or [m.value or 0.0])]
    merged = Measurement(**{**vars(chosen), "value": statistics.median(values), "samples": samples})
    merged.detail = {**chosen.detail, "rounds": len(rounds), "round_values": values}
    merged.detail["background_cores"] = max(m.detail.get("background_cores", 0.0) for m in ok)
    failed = [m.error for m in rounds if m.error]
    if failed:
        merged.detail["failed_rounds"] = failed
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = wrk_binary()
    reference = reference_binary()
    if wrk is None:
        out("bench: wrk not found: the request-rate scenarios will fail (Debian: apt-get install -y wrk)")
    if reference is None and REFERENCE in args.target_keys:
        out(
            "bench: docker-registry not found: no reference, no ratios"
            " (Debian: apt-get install -y docker-registry)"
        )
        args.target_keys.remove(REFERENCE)
    if not args.target_keys:
        return 1
    spy_bin = profiling.py_spy_binary() if args.profile else None
    if args.profile and spy_bin is None:
        out("bench: --profile needs py-spy (.venv/bin/pip install py-spy)")
        return 1
    config = make_config(args, wrk)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run_dir = args.output / stamp
    logs = run_dir / "logs"
    spy = (
        profiling.PySpy(spy_bin, run_dir / "profiles", extra=args.py_spy_args.split())
        if spy_bin is not None
        else None
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    results: list[Measurement] = []
    memory: dict[str, dict[str, list[ProcessMemory]]] = {}
    labels: dict[str, str] = {}
    listing: list[ListingCase] = []
    portal: list[PortalCase] = []
    replication: list[ReplicationResult] = []
    env = environment(args, config, wrk, reference)
    out(
        f"Wharf bench {stamp}: {env['cpus']} CPUs, db {args.db}, storage {args.storage}, "
        f"{args.workers} worker(s), "
        f"blob {config.blob_bytes // MiB} MiB, chunks {config.chunk_bytes // MiB} MiB, "
        f"{config.seconds:g} s runs"
    )
    status = 0
    try:
        with ExitStack() as stack:
            work = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)  # registered first: runs last
            if args.scenarios:
                # The registries stop before the listing runs, so it has the machine to itself.
                with ExitStack() as registries:
                    try:
                        targets = start_targets(registries, args, work, logs, reference)
                    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # backends.py speaks pytest
                        out(f"bench: a backing service is missing: {exc}")
                        return 1
                    labels = {t.key: t.label for t in targets}
                    settle(config.settle_seconds)
                    for key, procs in measure_memory(targets).items():
                        memory.setdefault(key, {})["after start"] = procs
                    env["disk"] = disk_probe(work / "disk-probe")
                    out(f"disk ({work}): {env['disk']}")
                    bench = Bench(config, spy or no_profiler)
                    run_all(bench, args, targets, results)
                    settle(config.settle_seconds)
                    for key, procs in measure_memory(targets).items():
                        memory.setdefault(key, {})["after the load"] = procs
                    out("\nstopping servers …")
            if args.listing:
                status = run_listing_pages(stack, args, config, work, logs, listing)
            if args.portal:
                status = run_portal_pages(stack, args, config, work, logs, portal) or status
            if args.replication:
                status = run_replication_copies(args, config, work, logs, replication) or status
    except KeyboardInterrupt:
        out("\ninterrupted: servers stopped, temp dir removed")
        status = 130
    finally:
        if results or memory or listing or portal or replication:
            finish(args, env, labels, results, memory, run_dir, started, spy, listing, replication, portal)
    return status or (1 if any(m.error for m in results) else 0)


def run_listing_pages(
    stack: ExitStack,
    args: argparse.Namespace,
    config: Config,
    work: Path,
    logs: Path,
    listing: list[ListingCase],
) -> int:
    """The listing pages (`listing.py`) on `--db`; 1 when they could not be measured."""
    size = 1_000 if args.quick else 10_000
    out(f"\n== listing: pages of /api/v2.0 lists over {size:,} repositories and tags (db {args.db})")
    settle(config.settle_seconds)
    try:
        listing.extend(
            run_listing(
                stack,
                work,
                logs,
                db_kind=args.db,
                repositories=size,
                tags=size,
                samples=10 if args.quick else 30,
                out=out,
            )
        )
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        out(f"bench: a backing service is missing: {exc}")
        return 1
    except Exception as exc:
        out(f"  ERROR {type(exc).__name__}: {exc}")
        return 1
    return 0


def run_portal_pages(
    stack: ExitStack,
    args: argparse.Namespace,
    config: Config,
    work: Path,
    logs: Path,
    portal: list[PortalCase],
) -> int:
    """The portal's repositories page (`portal.py`) on `--db`; 1 when it could not be measured."""
    size = 1_000 if args.quick else 10_000
    out(f"\n== portal: a project's repositories page over {size:,} repositories (db {args.db})")
    settle(config.settle_seconds)
    try:
        portal.extend(
            run_portal(
                stack,
                work,
                logs,
                db_kind=args.db,
                repositories=size,
                samples=10 if args.quick else 30,
                out=out,
            )
        )
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        out(f"bench: a backing service is missing: {exc}")
        return 1
    except Exception as exc:
        out(f"  ERROR {type(exc).__name__}: {exc}")
        return 1
    return 0


def run_replication_copies(
    args: argparse.Namespace,
    config: Config,
    work: Path,
    logs: Path,
    replication: list[ReplicationResult],
) -> int:
    """The replication throughput (`replication.py`) on `--db`; 1 when a run failed. Its sites
    and worker stop before this returns."""
    result = ReplicationResult(args.replication_images, args.layer_bytes, args.replication_concurrency)
    replication.append(result)
    out(
        f"\n== replication: {result.images} images Wharf A → Wharf B, beside skopeo"
        f" (db {args.db}, {result.concurrency} at a time)"
    )
    settle(config.settle_seconds)
    try:
        with ExitStack() as sites:
            run_replication(sites, work, logs, result, db_kind=args.db, out=out)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        result.error = f"a backing service is missing: {exc}"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    if result.error:
        out(f"  ERROR {result.error}")
    return 1 if result.error or any(r.error for r in result.runs) else 0


def finish(
    args: argparse.Namespace,
    env: dict[str, Any],
    labels: dict[str, str],
    results: list[Measurement],
    memory: dict[str, dict[str, list[ProcessMemory]]],
    run_dir: Path,
    started: dt.datetime,
    spy: profiling.PySpy | None,
    listing: list[ListingCase],
    replication: list[ReplicationResult],
    portal: list[PortalCase],
) -> None:
    rows = summary(results, args.scenarios)
    present = [t for t in ALL_TARGETS if any(m.target == t for m in results)]
    record: dict[str, Any] = {
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "argv": sys.argv[1:],
        "environment": env,
        "targets": labels,
        "summary": rows,
        "results": [measurement_json(m) for m in results],
        # Server CPU seconds per GiB pushed/pulled, per 1,000 requests (manifest GETs …), per target.
        "cpu_cost": {row["scenario"]: row["server_cpu_per_unit"] for row in rows},
        "memory": {
            target: {moment: memory_json(procs) for moment, procs in per.items()}
            for target, per in memory.items()
        },
        # ms per page through `wharf-ui` (issue 12: under 100), see listing.py.
        "listing": [vars(case) for case in listing],
        # ms per page of the portal's repositories page through `wharf-ui`, see portal.py.
        "portal": [vars(case) for case in portal],
        # Wharf's replication A → B beside skopeo's copies of the same images, see replication.py.
        "replication": [result_json(result) for result in replication],
    }
    profile_text = []
    if spy is not None:
        record["profiles"] = {}
        for (target, scenario), paths in sorted(spy.files.items()):
            prof = profiling.summarize(paths)
            record["profiles"][f"{target}/{scenario}"] = {
                "files": [str(p) for p in paths],
                "samples": prof.samples,
                "self": prof.self_functions,
                "inclusive": prof.inclusive_functions,
                "by_file": prof.self_files,
            }
            profile_text.append(profiling.render(prof, f"{target} · {BY_KEY[scenario].label}"))
    path = run_dir.with_suffix(".json")
    write_json(path, record)
    write_json(args.output / "latest.json", record)
    out("")
    out("targets: " + "; ".join(f"{k} = {v}" for k, v in labels.items()))
    note = "  (PROFILED: py-spy was attached, figures are perturbed)" if spy is not None else ""
    out(f"Wharf vs reference, same machine, same run{note}")
    if results:
        out(table(rows, results, present))
    if memory:
        out("")
        out("\n".join(memory_table(memory)))
    for result in replication:
        out("")
        out("\n".join(replication_table(result)))
    for text in profile_text:
        out("")
        out(text)
    out(f"\nresults: {path} (and {args.output / 'latest.json'}); server logs: {run_dir / 'logs'}")


if __name__ == "__main__":
    sys.exit(main())
