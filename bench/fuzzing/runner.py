"""The campaign: inputs spread over worker processes, each input under a CPU-time watchdog, findings saved as
reproducers, figures summed at the end.

Input ``i`` is a pure function of (seed, i) and the corpus, so the work is split by index (worker ``w`` takes every
``i`` with ``i % workers == w``) and nothing but findings crosses between processes. Each input runs under
``setitimer(ITIMER_PROF)``: past the limit of CPU seconds the worker's own signal handler raises :class:`InputTimeout`
(a ``BaseException``, so no ``except Exception`` in the code under test swallows it), the input counts as a hang,
and the worker exits so its successor starts from clean state. An input stuck where no signal gets through (inside
one long C call, or blocked) is caught by the parent: a worker that shows no progress for ``hard_limit`` seconds
(of the parent's own steps, so a suspended machine is no hang) is killed, the input is regenerated from its index,
and a successor continues after it. CPU time, not wall time, so a machine
busy with other work does not turn slow inputs into hangs.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import queue
import random
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from pathlib import Path
from types import FrameType
from typing import Any

from edge.errors import EdgeError

from .targets import Corpus, IngestEscaped, Target

#: Per worker and target: inputs, accepted, rejected, expected, exceptions, hangs, false accepts, max CPU (µs).
_FIELDS = ("inputs", "accepted", "rejected", "expected", "exceptions", "hangs", "false_accepts", "max_cpu_us",
           "slowest_index")  # fmt: skip
_HANG_EXIT = 3
#: Reproducers kept per distinct finding (kind, target, type, place); every occurrence is counted.
_KEEP_PER_FINDING = 3


class InputTimeout(BaseException):
    """Raised in a worker when one input used more CPU than allowed."""


def _on_timer(_signum: int, _frame: FrameType | None) -> None:
    raise InputTimeout


# --- reproducers ---------------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Plain JSON for an input: bytes become {"hex": ...} (base64 when large)."""
    if isinstance(value, bytes):
        if len(value) > 4096:
            return {"b64": base64.b64encode(value).decode("ascii")}
        return {"hex": value.hex()}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def _place(exc: BaseException) -> str:
    """The innermost frame in the project (edge/ or bench/) where ``exc`` was raised: what tells findings apart."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = exc
    while isinstance(inner, IngestEscaped):
        inner = inner.inner
        frames = traceback.extract_tb(inner.__traceback__) or frames
    for root in ("/edge/", "/bench/"):  # the project's code under test first, the harness only if nothing else
        for frame in reversed(frames):
            path = frame.filename.replace(os.sep, "/")
            if root in path and not path.endswith("/fuzzing/runner.py"):
                return f"{root[1:]}{path.split(root, 1)[1]}:{frame.lineno}"
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _type_name(exc: BaseException) -> str:
    if isinstance(exc, IngestEscaped):
        return f"{type(exc.inner).__name__} (escaped ingest)"
    return type(exc).__name__


@dataclass(slots=True)
class Finding:
    kind: str  # exception | hang | false_accept
    target: str
    type: str
    place: str
    index: int
    message: str
    reproducer: str | None = None


def save_reproducer(out: Path, finding: Finding, payload: Any, seed: int, detail: str = "") -> str:
    out.mkdir(parents=True, exist_ok=True)
    name = f"{finding.kind}-{finding.target}-{finding.type}-{finding.index}"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    path = out / f"{safe[:150]}.json"
    path.write_text(json.dumps({
        "kind": finding.kind, "target": finding.target, "type": finding.type, "place": finding.place,
        "seed": seed, "index": finding.index, "message": finding.message[:2000], "detail": detail[-20000:],
        "input": to_json(payload),
    }, indent=1))  # fmt: skip
    return str(path)


# --- running one input -------------------------------------------------------------------------------------------


def choose(rng_value: float, targets: Sequence[Target], total: float) -> Target:
    point = rng_value * total
    for target in targets:
        point -= target.weight
        if point < 0:
            return target
    return targets[-1]


def make_input(corpus: Corpus, targets: Sequence[Target], seed: int, index: int) -> tuple[Target, Any]:
    rng = random.Random(f"{seed}:{index}")
    target = choose(rng.random(), targets, sum(t.weight for t in targets))
    try:
        return target, target.generate(rng, corpus)
    except Exception as exc:
        raise HarnessError(f"generating input {index} for {target.name} failed: {exc!r}") from exc


class HarnessError(Exception):
    """The harness itself failed (not the code under test): the campaign stops and says so."""


@dataclass(slots=True)
class RunResult:
    status: str  # accepted | rejected | expected | false_accept | exception | hang
    cpu: float
    detail: str = ""
    error: BaseException | None = None


def run_one(target: Target, payload: Any, corpus: Corpus, limit: float | None) -> RunResult:
    """Run one input under the CPU watchdog (``limit`` None: no watchdog, for replays)."""
    start = time.process_time()
    status, detail = "accepted", ""
    error: BaseException | None = None
    previous = signal.signal(signal.SIGPROF, _on_timer) if limit is not None else None
    try:
        try:
            if limit is not None:
                signal.setitimer(signal.ITIMER_PROF, limit)
            outcome = target.run(payload, corpus)
            status, detail = outcome.status, outcome.detail
        finally:
            if limit is not None:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.signal(signal.SIGPROF, previous)
    except InputTimeout as exc:
        status, error = "hang", exc
    except EdgeError as exc:
        status, error = ("exception", exc) if target.nothing_may_escape else ("rejected", None)
    except Exception as exc:  # noqa: BLE001 - this is what the harness counts
        status, error = "exception", exc
    return RunResult(status, time.process_time() - start, detail, error)


# --- workers -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Shared:
    counts: SynchronizedArray[Any]  # [worker][target][field]
    current: SynchronizedArray[Any]  # index in progress per worker (-1: none)
    started: SynchronizedArray[Any]  # monotonic start of that input (0: idle)
    resume: SynchronizedArray[Any]  # where a successor starts
    finished: SynchronizedArray[Any]  # 1 once a worker got through its share
    stop: Synchronized[Any]


def _worker(wid: int, workers: int, start: int, end: int, seed: int, limit: float, corpus: Corpus,
            targets: Sequence[Target], shared: _Shared, findings: Any, out: Path) -> None:  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the campaign
    names = [t.name for t in targets]
    width = len(_FIELDS)
    base = wid * len(targets) * width
    kept: dict[tuple[str, str, str, str], int] = {}
    try:
        for index in range(start, end, workers):
            if shared.stop.value:
                break
            shared.current[wid] = index
            shared.started[wid] = time.monotonic()
            try:
                target, payload = make_input(corpus, targets, seed, index)
            except HarnessError as exc:  # the harness's own bug: reported, the input skipped, the campaign goes on
                shared.started[wid] = 0.0
                shared.resume[wid] = index + workers
                findings.put(Finding("harness", "harness", type(exc.__cause__).__name__, _place(exc.__cause__ or exc),
                                     index, str(exc)[:500]))
                continue
            result = run_one(target, payload, corpus, limit)
            shared.started[wid] = 0.0
            row = base + names.index(target.name) * width
            shared.counts[row] += 1
            column = {"accepted": 1, "rejected": 2, "expected": 3, "exception": 4, "hang": 5, "false_accept": 6}
            shared.counts[row + column[result.status]] += 1
            if int(result.cpu * 1e6) > shared.counts[row + 7]:
                shared.counts[row + 7] = int(result.cpu * 1e6)
                shared.counts[row + 8] = index
            shared.resume[wid] = index + workers
            if result.status in ("exception", "hang", "false_accept"):
                error = result.error
                finding = Finding(result.status, target.name, _type_name(error) if error else "false accept",
                                  _place(error) if error else result.detail[:80], index,
                                  str(error)[:500] if error else result.detail)  # fmt: skip
                key = (finding.kind, finding.target, finding.type, finding.place)
                kept[key] = kept.get(key, 0) + 1
                if kept[key] <= _KEEP_PER_FINDING:
                    trace = "".join(traceback.format_exception(error)) if error else ""
                    finding.reproducer = save_reproducer(out, finding, payload, seed, trace)
                findings.put(finding)
                if result.status == "hang":
                    corpus.close_runtime()
                    findings.close()
                    findings.join_thread()  # the queue's feeder thread must deliver the finding before _exit
                    os._exit(_HANG_EXIT)  # a fresh process for what follows: the timeout may have left state behind
        shared.finished[wid] = 1
    finally:
        corpus.close_runtime()


# --- the campaign ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Summary:
    inputs: int
    seconds: float
    workers: int
    seed: int
    limit: float
    by_target: dict[str, dict[str, int]]
    findings: list[Finding] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(row[name] for row in self.by_target.values())

    @property
    def exceptions(self) -> int:
        return self.total("exceptions")

    @property
    def hangs(self) -> int:
        return self.total("hangs")

    @property
    def false_accepts(self) -> int:
        return self.total("false_accepts")

    @property
    def harness_errors(self) -> int:
        return sum(1 for finding in self.findings if finding.kind == "harness")


def run_campaign(corpus: Corpus, targets: Sequence[Target], *, inputs: int, seed: int = 1, limit: float = 1.0,
                 workers: int | None = None, out: Path, hard_limit: float | None = None, progress: bool = False,
                 start: int = 0) -> Summary:  # fmt: skip
    """Run inputs ``start`` .. ``start + inputs - 1`` over ``workers`` processes; return the figures."""
    context = multiprocessing.get_context("fork")  # the corpus (keys, cards, parsed trees) is inherited, not pickled
    workers = workers or os.cpu_count() or 1
    hard_limit = hard_limit or max(30.0, 20 * limit)
    end = start + inputs
    width = len(_FIELDS)
    shared = _Shared(
        counts=context.Array("q", workers * len(targets) * width, lock=False),
        current=context.Array("q", [-1] * workers, lock=False),
        started=context.Array("d", [0.0] * workers, lock=False),
        resume=context.Array("q", [start + w for w in range(workers)], lock=False),
        finished=context.Array("b", [0] * workers, lock=False),
        stop=context.Value("b", 0, lock=False),
    )
    findings_queue = context.Queue()
    tmpfs = "/dev/shm" if Path("/dev/shm").is_dir() else None  # the SQLite files of the office targets fsync
    runtime_root = Path(tempfile.mkdtemp(prefix="cccd-edge-fuzz-", dir=tmpfs))
    corpus.runtime_root = runtime_root
    findings: list[Finding] = []
    began = time.monotonic()

    def launch(wid: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(wid, workers, shared.resume[wid], end, seed, limit, corpus,
                                                        targets, shared, findings_queue, out), daemon=True)
        process.start()
        return process

    def drain() -> None:
        while True:
            try:
                findings.append(findings_queue.get_nowait())
            except queue.Empty:
                return

    running = {wid: launch(wid) for wid in range(workers) if start + wid < end}
    last_report = began
    # Seconds each worker has spent on its current input, counted from the parent's own steps with each step capped:
    # a pause of the whole machine (a suspended VM, a laptop lid) moves the clock on but is nobody's hang.
    watched: dict[int, tuple[int, float]] = {}
    tick = time.monotonic()
    try:
        while running:
            time.sleep(0.2)
            step, tick = min(time.monotonic() - tick, 1.0), time.monotonic()
            drain()
            for wid, process in list(running.items()):
                index, spent = watched.get(wid, (-1, 0.0))
                busy = bool(shared.started[wid])
                spent = spent + step if busy and index == shared.current[wid] else 0.0
                watched[wid] = (int(shared.current[wid]), spent)
                stalled = spent > hard_limit
                if process.is_alive() and not stalled:
                    continue
                if stalled:
                    process.kill()
                process.join()
                drain()
                if shared.finished[wid] or shared.stop.value:
                    del running[wid]
                    continue
                if process.exitcode != _HANG_EXIT:  # killed by us, or died on its own (a crash of the interpreter)
                    index = int(shared.current[wid])
                    try:
                        target, payload = make_input(corpus, targets, seed, index)
                    except HarnessError:
                        target, payload = targets[0], None  # stuck while generating: the harness's own bug
                    kind = "hang" if stalled else "exception"
                    finding = Finding(kind, target.name, "stuck (killed)" if stalled else f"exit {process.exitcode}",
                                      "?", index, f"worker {'made no progress' if stalled else 'died'}")
                    finding.reproducer = save_reproducer(out, finding, payload, seed)
                    findings.append(finding)
                    row = (wid * len(targets) + [t.name for t in targets].index(target.name)) * width
                    shared.counts[row] += 1
                    shared.counts[row + (5 if stalled else 4)] += 1
                    shared.resume[wid] = index + workers
                    shared.started[wid] = 0.0
                watched.pop(wid, None)
                if shared.resume[wid] >= end:
                    del running[wid]
                else:
                    running[wid] = launch(wid)
            if progress and time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                done = sum(shared.counts[i] for i in range(0, len(shared.counts), width))
                print(f"  {done:,} inputs, {len(findings)} findings, {time.monotonic() - began:.0f} s", flush=True)
    except KeyboardInterrupt:
        shared.stop.value = 1
        for process in running.values():
            process.join(timeout=hard_limit)
            if process.is_alive():
                process.kill()
        drain()
    seconds = time.monotonic() - began
    shutil.rmtree(runtime_root, ignore_errors=True)
    corpus.runtime_root = None
    by_target: dict[str, dict[str, int]] = {}
    for t_index, target in enumerate(targets):
        totals = dict.fromkeys(_FIELDS, 0)
        for wid in range(workers):
            offset = (wid * len(targets) + t_index) * width
            for f_index, name in enumerate(_FIELDS[:-2]):
                totals[name] += shared.counts[offset + f_index]
            if shared.counts[offset + 7] > totals["max_cpu_us"]:
                totals["max_cpu_us"], totals["slowest_index"] = shared.counts[offset + 7], shared.counts[offset + 8]
        by_target[target.name] = totals
    total = sum(row["inputs"] for row in by_target.values())
    return Summary(total, seconds, workers, seed, limit, by_target, findings)


def format_summary(summary: Summary, out: Path) -> str:
    lines = [
        f"fuzz: {summary.inputs:,} inputs in {summary.seconds:.1f} s wall "
        f"({summary.inputs / max(summary.seconds, 1e-9):,.0f} inputs/s) on {summary.workers} workers; "
        f"seed {summary.seed}; watchdog {summary.limit:g} s CPU per input",
        "",
        f"{'target':<14}{'inputs':>10}{'accepted':>10}{'refused':>10}{'expected':>9}{'exceptions':>11}{'hangs':>7}"
        f"{'false acc.':>11}{'max CPU ms':>11}",
    ]
    for name, row in summary.by_target.items():
        lines.append(f"{name:<14}{row['inputs']:>10,}{row['accepted']:>10,}{row['rejected']:>10,}{row['expected']:>9,}"
                     f"{row['exceptions']:>11,}{row['hangs']:>7,}{row['false_accepts']:>11,}"
                     f"{row['max_cpu_us'] / 1000:>11.1f}")  # fmt: skip
    lines.append(f"{'total':<14}{summary.inputs:>10,}{summary.total('accepted'):>10,}{summary.total('rejected'):>10,}"
                 f"{summary.total('expected'):>9,}{summary.exceptions:>11,}{summary.hangs:>7,}"
                 f"{summary.false_accepts:>11,}")  # fmt: skip
    slowest = max(summary.by_target.items(), key=lambda item: item[1]["max_cpu_us"])
    lines.append(f"slowest input: {slowest[1]['max_cpu_us'] / 1000:.0f} ms CPU, {slowest[0]} input "
                 f"{slowest[1]['slowest_index']} (regenerate it with the same seed and corpus)")
    if summary.harness_errors:
        lines.append(f"HARNESS ERRORS (inputs not run, a bug of bench/fuzzing): {summary.harness_errors}")
    lines += ["", f"non-EdgeError exceptions: {summary.exceptions}    hangs over {summary.limit:g} s: {summary.hangs}"
                  f"    false accepts: {summary.false_accepts}"]  # fmt: skip
    groups: dict[tuple[str, str, str, str], list[Finding]] = {}
    for finding in summary.findings:
        groups.setdefault((finding.kind, finding.target, finding.type, finding.place), []).append(finding)
    for (kind, target, kind_type, place), items in sorted(groups.items()):
        example = next((f.reproducer for f in items if f.reproducer), None)
        lines.append(f"  {kind:<12} {target:<13} {kind_type:<32} x{len(items):<6} at {place}")
        lines.append(f"      {items[0].message[:160]}")
        if example:
            lines.append(f"      reproducer: {example}")
    if summary.findings:
        lines.append(f"reproducers in {out} (replay one: bench/fuzz.py --replay FILE)")
    return "\n".join(lines)
