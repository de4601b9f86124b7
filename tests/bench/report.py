"""The results table (figures, ratios to the reference, targets met or missed), the server CPU
each unit of work costs, the mixed load's operations and errors, idle memory, and the JSON record.

Most targets are ratios to the reference; a scenario the reference cannot run (token issuance)
has an absolute target instead (`Scenario.target_value`), judged on the figure alone. Each Wharf
target is judged by its own issue's targets (`Scenario.ratio_for`): issue 3's for the registry
alone, issue 10's for the full path (through the proxy, and as `wharf run` starts it). A figure
whose run counted errors (the mixed load) misses its target whatever its speed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.bench.scenarios import BY_KEY, Measurement, Scenario
from tests.bench.targets import ALL_TARGETS, REFERENCE, WHARF_NONE, WHARF_PROXY, WHARF_RUN, WHARF_TOKEN
from tests.support.memory import ProcessMemory

# Issue 3's targets hold for Wharf's registry alone on filesystem storage, compared with the
# reference like for like: auth none against the reference's no auth. The token column is shown
# (with its own verdict) to see what auth costs. Issue 10's hold for the full path (proxy, token
# auth, registry) against the same reference: what a docker client meets, also as `make run`
# starts it with its defaults.
VERDICT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("#3", (WHARF_NONE, WHARF_TOKEN)),
    ("#10", (WHARF_PROXY, WHARF_RUN)),
)
VERDICT_TARGETS = tuple(t for _, group in VERDICT_GROUPS for t in group)
NOISY_CORES = 0.3
GiB_PER_MiB = 1024.0
# figure unit -> (cost unit, scale): server CPU seconds per GiB moved, or per 1,000 of a rate's units.
COST_UNITS = {
    "MiB/s": ("s/GiB", GiB_PER_MiB),
    "req/s": ("s/1k req", 1e3),
    "images/s": ("s/1k images", 1e3),
    "tokens/s": ("s/1k tokens", 1e3),
    "ops/s": ("s/1k ops", 1e3),
}
MiB = 1024 * 1024
IDLE_MEMORY_TARGET_MIB = 250  # issue 10: the whole suite under `make run`, at idle
MEMORY_TARGETS = {WHARF_RUN: IDLE_MEMORY_TARGET_MIB}


def cpu_cost(m: Measurement | None, scale: float) -> float | None:
    """Server CPU seconds per unit of work (cores busy / rate, scaled): robust when other work on
    the machine steals time. Per GiB for MiB/s figures, per 1,000 requests for rates."""
    if m is None or m.error or not m.value or m.server_cores is None:
        return None
    cpu, units = m.detail.get("server_cpu_seconds"), m.detail.get("work_units")
    if cpu is not None and units:  # counted to the end of the timed run (the mixed load)
        return float(cpu) / float(units) * scale
    return m.server_cores / m.value * scale


def error_count(m: Measurement | None) -> int:
    """Errors a run counted without stopping (the mixed load's unexpected answers)."""
    return int(m.detail.get("errors", 0)) if m is not None and isinstance(m.detail.get("errors"), int) else 0


def _value(results: dict[tuple[str, str], Measurement], scenario: str, target: str) -> float | None:
    m = results.get((scenario, target))
    return m.value if m is not None and m.error is None else None


def summary(results: list[Measurement], scenarios: list[Scenario]) -> list[dict[str, Any]]:
    by = {(m.scenario, m.target): m for m in results}
    rows = []
    for sc in scenarios:
        values = {t: _value(by, sc.key, t) for t in ALL_TARGETS if (sc.key, t) in by}
        ref = values.get(REFERENCE)
        ratios: dict[str, float | None] = {}
        verdicts: dict[str, str] = {}
        for t in VERDICT_TARGETS:
            v = values.get(t)
            if t not in values:
                continue
            ratios[t] = v / ref if v is not None and ref else None
            ratio = ratios[t]
            goal_value, goal_ratio = sc.value_for(t), sc.ratio_for(t)
            if goal_value is not None:
                verdicts[t] = "n/a" if v is None else ("met" if v >= goal_value else "missed")
            elif goal_ratio is None:
                verdicts[t] = ""
            elif ratio is None:
                verdicts[t] = "n/a"
            else:
                verdicts[t] = "met" if ratio >= goal_ratio else "missed"
            if verdicts[t] == "met" and error_count(by.get((sc.key, t))):
                verdicts[t] = "missed"  # fast but wrong is not a pass
        errors = {t: m.error for (s, t), m in by.items() if s == sc.key and m.error}
        counted = {t: error_count(m) for (s, t), m in by.items() if s == sc.key and "errors" in m.detail}
        cost_unit, scale = COST_UNITS[sc.unit]
        costs = {t: cpu_cost(by.get((sc.key, t)), scale) for t in values}
        rows.append(
            {
                "scenario": sc.key,
                "label": sc.label,
                "unit": sc.unit,
                "values": values,
                "ratios": ratios,
                "target_ratio": sc.target_ratio,
                "target_value": sc.target_value,
                "proxy_target_ratio": sc.proxy_ratio,
                "verdicts": verdicts,
                "errors": errors,
                "error_counts": counted,
                "server_cpu_per_unit": {"unit": cost_unit, **costs},
            }
        )
    return rows


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _cost(value: float | None) -> str:
    """Three significant figures: CPU costs run from thousandths of a second to tens."""
    return "—" if value is None else f"{value:.3g}"


def _over(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def target_text(row: dict[str, Any], target: str = WHARF_NONE) -> str:
    """`target`'s goal: `>= 3.00x` (to the reference), `>= 1,000/s` (absolute) or `none`."""
    scenario = BY_KEY[row["scenario"]]
    value, ratio = scenario.value_for(target), scenario.ratio_for(target)
    if value is not None:
        return f">= {_num(value)}/s"
    if ratio is not None:
        return f">= {ratio:.2f}x"
    return "none"


def _short(target: str) -> str:
    return target.split("-")[1]


def table(rows: list[dict[str, Any]], results: list[Measurement], targets: list[str]) -> str:
    wharf = [t for t in VERDICT_TARGETS if t in targets]
    # One target column per issue whose Wharf targets ran, then those targets' verdicts.
    groups = [(tag, [t for t in group if t in targets]) for tag, group in VERDICT_GROUPS]
    groups = [(tag, group) for tag, group in groups if group]
    head = ["scenario", "unit", *targets, *(f"{_short(t)}/ref" for t in wharf)]
    for tag, group in groups:
        head += [f"target {tag}", *(_short(t) for t in group)]
    body = []
    for row in rows:
        line = [row["label"], row["unit"], *(_num(row["values"].get(t)) for t in targets)]
        line += [_ratio(row["ratios"].get(t)) for t in wharf]
        for _tag, group in groups:
            line.append(target_text(row, group[0]))
            line += [row["verdicts"].get(t, "n/a") for t in group]
        body.append(line)
    out = [_grid(head, body)]
    absolute = []
    for row in rows:
        scenario = BY_KEY[row["scenario"]]
        whose = " (server CPU: the token process)" if scenario.needs_token_service else ""
        absolute += [
            f"  {row['label']}, {t}: {_num(row['values'][t])} {row['unit']},"
            f" target {target_text(row, t)}: {row['verdicts'][t]}{whose}"
            for t in wharf
            if scenario.value_for(t) is not None and row["values"].get(t) is not None
        ]
    if absolute:
        out += ["", "absolute targets (no reference figure):", *absolute]

    by = {(m.scenario, m.target): m for m in results}
    lat_rows = []
    cpu_rows = []
    for row in rows:
        lat, cpu = [row["label"]], [row["label"]]
        any_lat = False
        for t in targets:
            m = by.get((row["scenario"], t))
            if m is not None and m.latency_ms:
                any_lat = True
                lat.append(f"{m.latency_ms.get('p50', 0):.2f} / {m.latency_ms.get('p99', 0):.2f}")
            else:
                lat.append("—")
            if m is not None and m.server_cores is not None:
                cpu.append(f"{m.server_cores:.2f} / {m.client_cores or 0:.2f} / {m.other_cores or 0:.2f}")
            else:
                cpu.append("—")
        if any_lat:
            lat_rows.append(lat)
        cpu_rows.append(cpu)
    if lat_rows:
        out += ["", "latency, ms (p50 / p99; small-push: per image)", _grid(["scenario", *targets], lat_rows)]
    out += [
        "",
        "CPU, cores busy during the timed run (server process tree / client / rest of the machine)",
        _grid(["scenario", *targets], cpu_rows),
    ]
    cost_rows = []
    for row in rows:
        unit = COST_UNITS.get(row["unit"])
        if unit is None:
            continue
        name, scale = unit
        costs = {t: cpu_cost(by.get((row["scenario"], t)), scale) for t in targets}
        ref = costs.get(REFERENCE)
        line = [row["label"], name, *(_cost(costs[t]) for t in targets)]
        line += [_ratio(_over(ref, costs.get(t))) for t in wharf]
        cost_rows.append(line)
    trees: list[str] = []
    if WHARF_PROXY in targets:
        trees.append(f"{WHARF_PROXY}: proxy + registry + token service")
    if WHARF_RUN in targets:
        trees.append(f"{WHARF_RUN}: the whole `wharf run` tree, its Redis included")
    out += [
        "",
        "server CPU seconds per unit of work: per GiB pushed or pulled, per 1,000 requests (manifest GETs,"
        " tags, …), images, tokens or operations",
        "(lower is better; ref/x = reference/Wharf, >1 means Wharf is leaner; shared Redis and PostgreSQL"
        " not included" + (f"; {'; '.join(trees)}" if trees else "") + ")",
        _grid(["scenario", "unit", *targets, *(f"ref/{_short(t)}" for t in wharf)], cost_rows),
    ]
    mixed = [by[("mixed", t)] for t in targets if ("mixed", t) in by]
    if mixed:
        out += ["", *mixed_table(mixed)]
    noisy = [
        f"  {m.target} · {BY_KEY[m.scenario].label}: {m.detail['background_cores']:.2f} cores busy before it"
        for m in results
        if m.detail.get("background_cores", 0) > NOISY_CORES
    ]
    if noisy:
        out += ["", "machine not quiet before these runs (other work shared the cores):", *noisy]
    notes = [
        f"  {m.target} · {BY_KEY[m.scenario].label}: {m.detail['form']}"
        for m in results
        if m.scenario == "push-mono" and "form" in m.detail
    ]
    errors = [f"  {m.target} · {BY_KEY[m.scenario].label}: {m.error}" for m in results if m.error]
    if notes:
        out += ["", "monolithic push form used:", *notes]
    if errors:
        out += ["", "errors:", *errors]
    return "\n".join(out)


def mixed_table(results: list[Measurement]) -> list[str]:
    """The mixed load per target: operations/s of each kind, errors, and the errors word for word."""
    kinds = list(dict.fromkeys(k for m in results for k in m.detail.get("operations", {})))
    head = ["target", "ops/s", "errors", "req/s", *kinds]
    rows, samples = [], []
    for m in results:
        if m.error:
            rows.append([m.target, "ERROR", "—", "—", *("—" for _ in kinds)])
            continue
        seconds = m.seconds or 1.0
        ops = m.detail.get("operations", {})
        line = [m.target, _num(m.value), str(error_count(m)), _num(m.detail.get("requests", 0) / seconds)]
        rows.append(line + [_num(ops.get(k, 0) / seconds) for k in kinds])
        samples += [f"  {m.target}: {e}" for e in m.detail.get("error_samples", [])]
    clients = max((m.detail.get("clients", 0) for m in results), default=0)
    forms = ", ".join(
        f"{m.target} {'tags and manifests' if m.detail.get('tag_delete') else 'manifests'}" for m in results
    )
    latency = [
        [m.target, *(_latency(m.detail.get("latency_ms_by_operation", {}).get(k)) for k in kinds)]
        for m in results
        if not m.error
    ]
    out = [
        f"mixed load, {clients} clients: operations/s by kind (any unexpected status, digest or body is"
        f" an error; deletes of: {forms})",
        _grid(head, rows),
        "mixed load latency by kind, ms (p50 / p99)",
        _grid(["target", *kinds], latency),
    ]
    if samples:
        out += ["mixed load errors (first of each run):", *samples]
    return out


def _latency(values: dict[str, float] | None) -> str:
    return "—" if not values else f"{values['p50']:,.0f} / {values['p99']:,.0f}"


def memory_json(memory: list[ProcessMemory]) -> dict[str, Any]:
    return {
        "rss_bytes": sum(m.rss for m in memory),
        "pss_bytes": sum(m.pss for m in memory),
        "processes": [asdict(m) for m in memory],
    }


def memory_table(memory: dict[str, dict[str, list[ProcessMemory]]]) -> list[str]:
    """Resident memory of each target's process trees (Wharf's: every service it runs; `wharf run`:
    with its Redis): the sums, then each process; issue 10's target for `wharf run` judged on PSS
    (RSS counts the pages forked workers share with their parent once per process)."""
    moments = list(dict.fromkeys(k for per in memory.values() for k in per))
    head = ["target", *(f"{w} {moment}" for moment in moments for w in ("RSS", "PSS")), "target (PSS)"]
    rows, lines = [], []
    for target, per in memory.items():
        line = [target]
        for moment in moments:
            procs = per.get(moment, [])
            line += [f"{sum(m.rss for m in procs) / MiB:,.1f}", f"{sum(m.pss for m in procs) / MiB:,.1f}"]
        goal = MEMORY_TARGETS.get(target)
        first = per.get(moments[0], []) if moments else []
        if goal is None:
            line.append("")
        else:
            verdict = "met" if sum(m.pss for m in first) <= goal * MiB else "missed"
            line.append(f"<= {goal} MiB: {verdict}")
        rows.append(line)
        for m in first:
            lines.append(
                f"  {target:12} pid {m.pid:>7}  RSS {m.rss / MiB:7.1f}  PSS {m.pss / MiB:7.1f}  {m.name}"
            )
    first_moment = moments[0] if moments else ""
    return [
        "resident memory at idle, MiB (sum over each target's process trees)",
        _grid(head, rows),
        f"per process ({first_moment}):",
        *lines,
    ]


def _grid(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)


def measurement_json(m: Measurement) -> dict[str, Any]:
    return asdict(m)
