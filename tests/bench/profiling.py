"""`--profile`: py-spy attached to Wharf's registry (parent and workers) while a scenario is timed;
for the token scenario, to the token service's process instead (the target the scenario times);
on the full path, to the proxy and, each recorded and summarised on its own, to the processes
behind it (registry, token service); under `wharf run`, to each service it started.

py-spy is not a project dependency: `.venv/bin/pip install py-spy`. Its raw output (collapsed
stacks, one `frame;frame;… count` line per distinct stack) is kept next to the results and
summarised here: where samples end (self), which functions they pass through (inclusive), and
which source files the self samples fall in.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.targets import Target

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Frames under every request (process start-up, the worker loop): left out of the inclusive view.
_SCAFFOLD = re.compile(
    r"<frozen runpy>|(registry|token|proxy)/__main__\.py"
    r"|^run(\.<locals>\.spawn)? \(shared/web\.py|^Runner\.run "
)


def py_spy_binary() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class PySpy:
    binary: str
    out_dir: Path
    rate: int = 200
    extra: list[str] = field(default_factory=list)  # more py-spy flags, e.g. --native, --gil, --idle
    files: dict[tuple[str, str], list[Path]] = field(default_factory=dict)

    @contextmanager
    def __call__(self, target: Target, scenario: str) -> Iterator[object]:
        if not target.is_wharf:
            yield None
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        recordings = [self._record(name, scenario, pid) for name, pid in target.profiled()]
        try:
            time.sleep(1.0)  # attach to every worker before the clock starts
            yield None
        finally:
            for process, _path, _runs in recordings:
                process.send_signal(signal.SIGINT)
            for process, path, runs in recordings:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                if path.exists():
                    runs.append(path)

    def _record(self, key: str, scenario: str, pid: int) -> tuple[subprocess.Popen[bytes], Path, list[Path]]:
        runs = self.files.setdefault((key, scenario), [])
        path = self.out_dir / f"{key}-{scenario}-{len(runs) + 1}.txt"
        argv = [self.binary, "record", "--pid", str(pid), "--subprocesses"]
        if "--native" not in self.extra:  # native stacks need the process paused while sampled
            argv.append("--nonblocking")
        argv += ["--rate", str(self.rate), "--format", "raw", "--output", str(path), *self.extra]
        log = (self.out_dir / "py-spy.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return process, path, runs


@dataclass
class Profile:
    samples: int
    self_functions: list[tuple[str, int]]
    inclusive_functions: list[tuple[str, int]]
    self_files: list[tuple[str, int]]


def _frame_name(frame: str) -> str | None:
    if frame.startswith(("process ", "thread ")):
        return None
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['func']} ({match['file']})"


def summarize(paths: list[Path], top: int = 15) -> Profile:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            names = [n for n in (_frame_name(f) for f in stack.split(";")) if n is not None]
            if not names:
                continue
            total += count
            self_counts[names[-1]] += count
            for name in set(names):
                if not _SCAFFOLD.search(name):
                    inclusive[name] += count
            match = _FRAME.match(stack.split(";")[-1])
            files[match["file"] if match else "?"] += count
    return Profile(total, self_counts.most_common(top), inclusive.most_common(top), files.most_common(top))


def render(profile: Profile, title: str) -> str:
    if not profile.samples:
        return f"{title}: no samples"
    lines = [f"{title}: {profile.samples} samples (busy threads of the server processes)"]
    for heading, rows in (
        ("self (where the samples end)", profile.self_functions),
        ("inclusive (on the stack)", profile.inclusive_functions),
        ("self, by file", profile.self_files),
    ):
        lines.append(f"  {heading}:")
        lines.extend(f"    {100 * n / profile.samples:5.1f}%  {name}" for name, n in rows)
    return "\n".join(lines)
