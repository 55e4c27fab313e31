"""The simulation's engine: a world from the seed, worker threads drawing and running operations
(with a race every ``race_every`` steps, all workers released together by a barrier), the
invariant check after every ``check_every`` steps of each worker, and the operation log.

The check is ``coupons.ledger_check.check_ledger`` (what ``manage.py check_ledger`` runs) plus
``ops.simulation_checks``, inside one ``REPEATABLE READ READ ONLY`` transaction: every query of
the check sees the same committed state, so that a posting committed by another worker between
two of its queries cannot show up as a false violation.

A violation is (1) anything the check reports, (2) an operation that broke its expectation
(``ops._broken``), (3) an exception other than ``ApplicationError`` out of a service (a refusal
must be an ``ApplicationError``; anything else would be a 500), (4) more than one winner of an
exclusive race (two reversals of one redemption, two payments of one statement). Each distinct
violation counts once, at the step it was first seen (numbers in an error's message, such as
process ids of a deadlock, do not make it distinct).

Checks are coalesced: a worker's check is skipped when a check that started after its operation
finished has already run (checks take a lock, one at a time). So every operation is followed by
at least one complete check, while sixteen workers do not run sixteen checks of the same state.
A violation is reported with the operation after which the check that found it started, and the
operations since the last check that found nothing (with one worker: exactly the operation).
One check also runs before the workers start: what it finds was wrong before the run (the
checks read the whole database, earlier runs included) and is reported as such.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections, transaction

from coupons.ledger_check import check_ledger
from tests.simulation.ops import EXCLUSIVE, Executor, Outcome, Worker, plan_race, simulation_checks
from tests.simulation.world import World, build_world

BARRIER_TIMEOUT = 300  # seconds a race waits for the slowest worker before giving up on races


@dataclass
class Violation:
    text: str
    seq: int  # operations finished (by all workers) when it was first seen
    worker: int | None = None
    step: int | None = None
    op: dict | None = None
    trace: str | None = None
    since: int | None = None  # the first operation after the last check that found nothing

    def describe(self) -> str:
        if self.seq == 0:
            return f"{self.text}\n    present before the run started (the checks read the whole database)"
        where = f"after operation {self.seq}"
        if self.since is not None and self.since < self.seq:
            where += f" (operations {self.since}-{self.seq} ran since the last clean check)"
        if self.worker is not None:
            where += f"; worker {self.worker}, step {self.step}: {json.dumps(self.op, ensure_ascii=False)}"
        return f"{self.text}\n    {where}"


@dataclass
class Result:
    operations: int
    refused: int
    violations: int
    seed: int
    first_violation: Violation | None
    accepted: int = 0
    skipped: int = 0
    details: list[Violation] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # "op status" → how many
    races: dict = field(default_factory=dict)  # race kind → how many rounds
    checks: int = 0
    seconds: float = 0.0
    diverged: int = 0  # replay only: operations whose outcome differs from the log

    @property
    def line(self) -> str:
        return (
            f"simulation: {self.operations} operations ({self.refused} refused), "
            f"{self.violations} violations, seed {self.seed}"
        )

    def operation_log(self) -> list[tuple]:
        """The log without the order across workers: (worker, step, op, outcome)."""
        return [(e["w"], e["step"], json.dumps(e["op"], sort_keys=True), e["out"]) for e in self.log]


def check_now(world: World, alias: str = "default") -> list[str]:
    """Every invariant violation in one consistent snapshot of the database."""
    connection = connections[alias]
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        report = check_ledger()
        return [*report.violations, *simulation_checks(world)]


@contextlib.contextmanager
def fraud_scoring(enabled: bool):
    """Scoring on submission and on new usage (Celery tasks, eager in tests) reads the whole
    programme each time; the simulation leaves it out unless asked (``--score``)."""
    from coupons import signals
    from fraud import receivers

    hooks = [
        (signals.application_submitted, receivers.score_on_submission, "fraud.score_on_submission"),
        (signals.usage_ingested, receivers.rescore_on_usage, "fraud.rescore_on_usage"),
    ]
    if not enabled:
        for signal, _receiver, uid in hooks:
            signal.disconnect(dispatch_uid=uid)
    try:
        yield
    finally:
        if not enabled:
            for signal, receiver, uid in hooks:
                signal.connect(receiver, dispatch_uid=uid)


class _Run:
    """The state the worker threads share."""

    def __init__(self, world, *, workers, operations, check_every, alias, race_every, log_path, header):
        self.world, self.workers, self.operations = world, workers, operations
        self.check_every, self.alias, self.race_every = check_every, alias, race_every
        self.lock = threading.Lock()
        self.seq = 0
        self.checks = 0
        self.check_lock = threading.Lock()
        self.checked_from = 0  # operations finished when the last check started
        self.clean_until = 0  # the last check that found nothing started after this operation
        self.log: list[dict] = []
        self.counts: Counter = Counter()
        self.violations: dict[str, Violation] = {}
        self.bodies: dict = {}
        self.bodies_lock = threading.Lock()
        self.barrier = threading.Barrier(workers, action=self._plan, timeout=BARRIER_TIMEOUT)
        self.race_round = 0
        self.race_plan: tuple[str, list[dict]] = ("none", [])
        self.race_kinds: dict[int, str] = {}
        self.race_results: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
        self.log_file = Path(log_path).open("w", encoding="utf-8") if log_path else None
        if self.log_file:
            self._write({"header": header})

    def _write(self, entry: dict) -> None:
        if self.log_file:
            self.log_file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            self.log_file.flush()

    def close(self) -> None:
        if self.log_file:
            self.log_file.close()

    # races

    def _plan(self) -> None:
        """Runs in one thread while the others wait at the barrier."""
        round_ = self.race_round
        self.race_round += 1
        try:
            kind, specs = plan_race(self.world, round_, self.workers)
        except Exception as error:
            self.violate(f"[harness] planning race {round_} failed: {type(error).__name__}: {error}")
            kind, specs = "none", []
        self.race_kinds[round_] = kind
        self.race_plan = (kind, specs)

    def race_spec(self, w: int, worker: Worker) -> dict:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return worker.draw()
        _kind, specs = self.race_plan
        return dict(specs[w]) if specs else worker.draw()

    # records

    def violate(self, text: str, *, w=None, step=None, op=None, trace=None, seq=None, since=None) -> None:
        key = re.sub(r"\d+", "#", text.split("\n", 1)[0]) if text.startswith("[error]") else text
        with self.lock:
            if key not in self.violations:
                found = Violation(text, self.seq if seq is None else seq, w, step, op, trace, since)
                self.violations[key] = found
                self._write({"seq": found.seq, "violation": text, "w": w, "step": step})

    def record(self, w: int, step: int, spec: dict, outcome: Outcome, facts: dict, executor: Executor) -> int:
        with self.lock:
            self.seq += 1
            executor.publish()
            entry = {"seq": self.seq, "w": w, "step": step, "op": spec, "out": outcome.text}
            if outcome.message:
                entry["msg"] = outcome.message
            self.log.append(entry)
            self.counts[f"{spec['op']} {outcome.status}"] += 1
            if "race" in spec:
                self.race_results[spec["race"]].append((outcome.status, facts.get("name")))
            self._write(entry)
            seq = self.seq
        if outcome.status == "error":
            self.violate(
                f"[error] {spec['op']}: {outcome.detail}", w=w, step=step, op=spec, trace=outcome.trace, seq=seq
            )
        if outcome.broken:
            self.violate(
                f"[expectation] {' '.join(filter(None, [spec['op'], _subject(spec)]))}: {outcome.broken}, "
                f"got {outcome.text}",
                w=w,
                step=step,
                op=spec,
                seq=seq,
            )
        return seq

    def check(self, *, seq: int, force: bool = False) -> None:
        """Check, unless a check that started after operation ``seq`` has already run."""
        with self.check_lock:
            if self.checked_from >= seq and not force:
                return
            with self.lock:
                start = self.seq
                last = self.log[start - 1] if start else None
            self.checked_from = start
            found = check_now(self.world, self.alias)
            self.checks += 1
            since = self.clean_until + 1
            if not found:
                self.clean_until = start
        for text in found:
            if last is None:
                self.violate(text, seq=start, since=since)
            else:
                self.violate(text, w=last["w"], step=last["step"], op=last["op"], seq=start, since=since)

    def judge_races(self) -> None:
        for round_, results in sorted(self.race_results.items()):
            kind = self.race_kinds.get(round_, "?")
            winners = sum(status == "ok" for status, _name in results)
            if kind in EXCLUSIVE and winners > 1:
                self.violate(f"[race] round {round_} ({kind}): {winners} workers succeeded, at most one may")
            names = {name for status, name in results if status == "ok" and name}
            if kind == "claim_same_key" and len(names) > 1:
                self.violate(f"[race] round {round_} ({kind}): one key answered with {sorted(names)}")

    # a worker

    def work(self, w: int) -> None:
        step = None
        try:
            executor = Executor(self.world, self.bodies, self.bodies_lock)
            worker = Worker(self.world, w)
            for step in range(self.operations):
                racing = self.race_every and (step + 1) % self.race_every == 0
                spec = self.race_spec(w, worker) if racing else worker.draw()
                outcome, facts = executor.run(spec)
                worker.learn(spec, outcome, facts)
                seq = self.record(w, step, spec, outcome, facts, executor)
                if outcome.status == "error":
                    connections[self.alias].close()  # start the next operation on a clean connection
                if self.check_every and (step + 1) % self.check_every == 0:
                    self.check(seq=seq)
        except Exception as error:
            self.violate(
                f"[harness] worker {w} stopped at step {step}: {type(error).__name__}: {error}",
                w=w,
                step=step,
                trace=traceback.format_exc(),
            )
            self.barrier.abort()
        finally:
            connections[self.alias].close()

    def result(self, seed: int, seconds: float) -> Result:
        details = sorted(self.violations.values(), key=lambda v: v.seq)
        statuses = Counter()
        for key, n in self.counts.items():
            statuses[key.rsplit(" ", 1)[1]] += n
        return Result(
            operations=self.seq,
            refused=statuses["refused"],
            violations=len(details),
            seed=seed,
            first_violation=details[0] if details else None,
            accepted=statuses["ok"],
            skipped=statuses["skipped"],
            details=details,
            log=self.log,
            counts=dict(sorted(self.counts.items())),
            races=dict(Counter(self.race_kinds.values())),
            checks=self.checks,
            seconds=seconds,
        )


def _subject(spec: dict) -> str:
    for key in ("app", "coupon", "redemption", "case", "replay", "as"):
        if key in spec:
            return str(spec[key])
    return ""


def run(
    seed: int,
    workers: int,
    operations: int,
    check_every: int = 1,
    database_alias: str = "default",
    *,
    race_every: int = 12,
    log_path: str | None = None,
    score: bool = False,
    token: str | None = None,
    progress=None,
    progress_every: float = 30.0,
) -> Result:
    """Build the world of ``seed`` and run ``workers`` threads of ``operations`` operations each.
    The services use the default database; ``database_alias`` names the connection the engine
    checks on and closes (the default one unless a router sends the models elsewhere).
    ``progress``, if given, is called with a line of text every ``progress_every`` seconds."""
    if workers < 1 or operations < 0:
        raise ValueError("at least one worker and no negative number of operations")
    started = time.monotonic()
    header = {
        "seed": seed,
        "workers": workers,
        "operations": operations,
        "race_every": race_every,
        "check_every": check_every,
        "score": score,
    }
    with fraud_scoring(score):
        world = build_world(seed, token=token)
        state = _Run(
            world,
            workers=workers,
            operations=operations,
            check_every=check_every,
            alias=database_alias,
            race_every=race_every,
            log_path=log_path,
            header=header,
        )
        stop = threading.Event()

        def monitor() -> None:
            while not stop.wait(progress_every):
                progress(
                    f"{state.seq}/{workers * operations} operations, {len(state.violations)} violations, "
                    f"{state.checks} checks, {time.monotonic() - started:.0f} s"
                )

        try:
            state.check(seq=0, force=True)  # what was wrong before this run is told apart
            threads = [threading.Thread(target=state.work, args=(w,), name=f"sim-worker-{w}") for w in range(workers)]
            if progress:
                threads.append(threading.Thread(target=monitor, name="sim-progress", daemon=True))
            for thread in threads:
                thread.start()
            for thread in threads[:workers]:
                thread.join()
            stop.set()
            state.judge_races()
            state.check(seq=state.seq, force=True)
        finally:
            stop.set()
            state.close()
    return state.result(seed, time.monotonic() - started)


def replay(
    log_path: str,
    *,
    until: int | None = None,
    check_every: int = 1,
    database_alias: str = "default",
    token: str | None = None,
) -> Result:
    """Run the operations of a log again, one at a time in the order they finished, on a fresh
    world of the log's seed, checking after every ``check_every`` of them. Outcomes that differ
    from the log are counted in ``diverged`` (a race run one at a time can go otherwise)."""
    started = time.monotonic()
    lines = [json.loads(line) for line in Path(log_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    header = next(line["header"] for line in lines if "header" in line)
    entries = sorted((line for line in lines if "op" in line), key=lambda e: e["seq"])
    if until is not None:
        entries = [e for e in entries if e["seq"] <= until]
    seed = header["seed"]
    with fraud_scoring(header.get("score", False)):
        world = build_world(seed, token=token)
        state = _Run(
            world,
            workers=1,
            operations=len(entries),
            check_every=check_every,
            alias=database_alias,
            race_every=0,
            log_path=None,
            header=header,
        )
        executor = Executor(world, state.bodies, state.bodies_lock)
        diverged = 0
        for index, entry in enumerate(entries):
            spec = entry["op"]
            outcome, facts = executor.run(spec)
            seq = state.record(entry["w"], entry["step"], spec, outcome, facts, executor)
            if outcome.text != entry["out"]:
                diverged += 1
                state.log[-1]["logged"] = entry["out"]
            if outcome.status == "error":
                connections[database_alias].close()
            if check_every and (index + 1) % check_every == 0:
                state.check(seq=seq)
        state.check(seq=state.seq, force=True)
    result = state.result(seed, time.monotonic() - started)
    result.diverged = diverged
    return result
