"""A full fraud rescore of the demo world against one PostgreSQL ``GROUP BY enterprise`` over the
same usage table, in the same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/benchscore \\
        .venv/bin/python -m bench.score --yes [--scale 100000] [--usage-per-application 170] [--repeat 1]

It loads a large demo world (``seed_demo``: 100,000 applications and 9.6 million usage rows
by default) into the database that DATABASE_URL names and writes a risk assessment per
application on every run. Point it at a database of its own (``benchscore``, created when
missing); it refuses to run without ``--yes`` or ``BENCH_OK=1``, on anything but PostgreSQL and
on the ``postgres``/``root``/``test``/``template*`` databases.

What it does, in one run on one database:

1. migrates; loads the demo world with ``seed_demo`` unless the database already holds it (as
   many applications as the scale and as many usage rows as the generator makes; a database
   holding another demo world is refused); trains the fraud model unless one is in use
   (``FRAUD_MODEL_PATH`` is ``bench/out/score-model.pickle`` for the run, so that the
   project's own model file is never touched). None of this is timed;
2. ``VACUUM ANALYZE`` of the tables the rescore reads and writes, then ``CHECKPOINT``;
3. baseline: ``SELECT enterprise_id, count(*), sum(card_hours), sum(amount) FROM
   coupons_usagerecord GROUP BY enterprise_id``, every row fetched (PostgreSQL's parallel workers
   share the CPUs), once untimed (a warm cache) and then once per repeat;
4. rescore: ``score_programs(Program.objects.all(), processes=N)`` (what ``manage.py score_risk
   --processes N`` runs; N = ``--processes``, the CPUs by default), end to end (the registry and
   history read once, then each programme in a forked process: features from the database, rules
   and models, the assessments written with COPY and the applications' score and band updated),
   the fraud model loaded afresh from its file inside the timed part. The libraries the model
   needs are imported beforehand, as in a running worker. A ``CHECKPOINT`` runs before each timed
   part;
5. one more rescore in this process alone, not part of the ratio, for the breakdown of where the
   time goes (``--profile`` runs it under cProfile).

The last line is

```
rescore 100000 applications in 5.8 s (17143 applications/s), GROUP BY enterprise 1.67 s, ratio 3.50
```

with ``ratio`` = rescore time / aggregation time (the best of ``--repeat`` of each). Exit status
1 when the ratio is above ``--max-ratio`` (4), 2 when the benchmark could not run. Figures,
with the breakdown of the one-process rescore, go to ``bench/out/score.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import (
    OUT,
    ROOT,
    BenchError,
    checkpoint,
    database_label,
    django_setup,
    ensure_database,
    log,
    manage,
    own_database_url,
    pg_connect,
    require_consent,
    run_main,
    server_version,
    write_json,
)

DEFAULT_SCALE = 100_000
DEFAULT_USAGE_PER_APPLICATION = 170  # 9.6 million usage rows at scale 100,000
MODEL_PATH = OUT / "score-model.pickle"
WORLD_FILE = OUT / "score-world.json"  # per database, what was loaded: re-runs need not run the generator
DATABASE = "benchscore"
AGGREGATION = (
    "SELECT enterprise_id, count(*), sum(card_hours), sum(amount) FROM coupons_usagerecord GROUP BY enterprise_id"
)
# The rescore that ingestion starts (a debounced Celery task) is switched off while seed_demo
# loads usage (FRAUD_RESCORE_ON_USAGE), and any task goes to kombu's in-process memory broker,
# never run: without a broker, local settings would run tasks eagerly, a rescore of most of the
# world after each provider's usage. seed_demo scores everything at its end anyway.
TASKS_QUEUED = {
    "CELERY_BROKER_URL": "memory://",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "FRAUD_RESCORE_ON_USAGE": "false",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.score",
        description=(
            "Benchmark a full fraud rescore (features from the database, rules and models, the assessments "
            "written) of the demo world against one PostgreSQL GROUP BY enterprise over the same usage table, "
            "on the database DATABASE_URL names. It loads a large demo world there and writes an assessment per "
            "application on every run; requires --yes or BENCH_OK=1."
        ),
        epilog="Last line: 'rescore N applications in S s (R applications/s), GROUP BY enterprise G s, ratio X.XX'. "
        "Exit 1 if ratio > --max-ratio; 2 if the benchmark could not run.",
    )
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="demo applications (default 100,000)")
    parser.add_argument(
        "--usage-per-application",
        type=int,
        default=DEFAULT_USAGE_PER_APPLICATION,
        help="demo usage rows per application, before the share without usage (default 170: 9.6 million rows at scale 100,000)",
    )
    parser.add_argument("--seed", type=int, default=42, help="demo generator seed")
    parser.add_argument("--repeat", type=int, default=1, help="measure each side this many times, keep the best")
    parser.add_argument(
        "--warm-rescore",
        action="store_true",
        help="run one untimed full rescore before the timed ones (default: the untimed aggregation is the warm-up)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes the timed rescore runs in, one programme each (default: the CPUs, %(default)s)",
    )
    parser.add_argument("--max-ratio", type=float, default=4.0, help="highest acceptable rescore/aggregation ratio")
    parser.add_argument(
        "--profile",
        type=Path,
        nargs="?",
        const=OUT / "score.prof",
        default=None,
        help="run the (last) timed rescore under cProfile, write the stats there (default bench/out/score.prof) "
        "and print the top functions; the profiler slows it down",
    )
    parser.add_argument("--out", type=Path, default=OUT / "score.json")
    parser.add_argument(
        "--yes", action="store_true", help="agree to load the demo world into the DATABASE_URL database"
    )
    args = parser.parse_args(argv)
    for name in ("scale", "usage_per_application", "repeat", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# --- the database ----------------------------------------------------------------------------


def counts(url: str) -> tuple[int, int]:
    """Applications and usage rows in the database."""
    with pg_connect(url) as conn:
        applications = conn.execute("SELECT count(*) FROM coupons_application").fetchone()[0]
        usage = conn.execute("SELECT count(*) FROM coupons_usagerecord").fetchone()[0]
    return applications, usage


def rescore_tables() -> list[str]:
    """The tables the rescore reads or writes."""
    from coupons.models import Application, Program, ReferencePrice, UsageRecord, UsageWeek
    from enterprises.models import Organisation, Provider
    from fraud.models import Outcome, RiskAssessment, SummarySignature

    models = [
        UsageRecord,
        UsageWeek,
        Application,
        Program,
        ReferencePrice,
        Organisation,
        Provider,
        RiskAssessment,
        Outcome,
        SummarySignature,
    ]
    industry = Organisation._meta.get_field("industry").related_model
    return [model._meta.db_table for model in [*models, industry]]


def vacuum(url: str) -> None:
    started = time.perf_counter()
    tables = rescore_tables()
    with pg_connect(url) as conn:
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")
    log(f"VACUUM ANALYZE of {len(tables)} tables and CHECKPOINT in {time.perf_counter() - started:.1f}s")


def aggregation(url: str) -> tuple[float, int]:
    """Seconds for the GROUP BY enterprise, every row fetched, and the number of rows."""
    with pg_connect(url) as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(AGGREGATION)
        rows = cursor.fetchall()
        return time.perf_counter() - started, len(rows)


# --- the demo world --------------------------------------------------------------------------


def world_key(args) -> dict:
    return {"scale": args.scale, "seed": args.seed, "usage_per_application": args.usage_per_application}


def ensure_world(url: str, args) -> dict:
    """The demo world of ``args`` in the database: loaded with seed_demo unless it is there.
    Returns the counts."""
    applications, usage = counts(url)
    key = world_key(args)
    try:
        worlds = json.loads(WORLD_FILE.read_text())
    except (OSError, ValueError):
        worlds = {}
    known = worlds.get(database_label(url), {}) if isinstance(worlds, dict) else {}
    loaded = (known.get("applications"), known.get("usage_rows"))
    if {k: known.get(k) for k in key} == key and loaded == (applications, usage):
        log(f"demo world already loaded ({applications} applications, {usage} usage rows)")
        return known
    from fixtures.demo.generator import DemoConfig, generate

    started = time.perf_counter()
    data = generate(
        DemoConfig(applications=args.scale, seed=args.seed, usage_per_application=args.usage_per_application)
    )
    expected = (len(data.applications), data.usage_count_estimate())
    log(
        f"demo generator: scale {args.scale}, {expected[0]} applications, {expected[1]} usage rows "
        f"({time.perf_counter() - started:.0f}s)"
    )
    del data
    if (applications, usage) != expected:
        if applications or usage:
            raise BenchError(
                f"{database_label(url)} holds {applications} applications and {usage} usage rows, the demo world of "
                f"scale {args.scale} has {expected[0]} and {expected[1]}: another world (or usage wiped by another "
                "benchmark). Give this benchmark a fresh database (dropdb/createdb) or the --scale it was loaded with"
            )
        log("loading the demo world with seed_demo: tens of minutes at scale 100,000 (it also scores everything)")
        started = time.perf_counter()
        manage(
            url,
            "seed_demo",
            "--scale",
            str(args.scale),
            "--seed",
            str(args.seed),
            "--usage-per-application",
            str(args.usage_per_application),
            "--no-users",
            "--truth",
            str(OUT / f"score-truth-{urlsplit(url).path.lstrip('/')}.csv"),
        )
        log(f"seed_demo took {time.perf_counter() - started:.0f}s")
        applications, usage = counts(url)
        if (applications, usage) != expected:
            raise BenchError(
                f"after seed_demo: {applications} applications and {usage} usage rows, expected {expected[0]} and "
                f"{expected[1]}"
            )
    world = {**key, "applications": applications, "usage_rows": usage}
    write_json(WORLD_FILE, {**(worlds if isinstance(worlds, dict) else {}), database_label(url): world})
    return world


def ensure_model() -> str:
    """The fraud model of bench/out/score-model.pickle, trained on this database's world (the
    active model version recorded there): trained again when it is not. Untimed."""
    from fraud.model import current_model
    from fraud.models import ModelVersion
    from fraud.training import train_fraud_model

    model = current_model()
    active = ModelVersion.objects.filter(active=True).values_list("version", flat=True).first()
    if model is not None and model.version == active:
        log(f"fraud model in use: {model.version} ({'supervised' if model.supervised is not None else 'anomaly only'})")
        return model.version
    log(
        "training the fraud model (untimed) ..."
        if model is None
        else f"training the fraud model (untimed): {MODEL_PATH.name} holds {model.version}, this database's is {active}"
    )
    started = time.perf_counter()
    result = train_fraud_model(force=True)
    log(
        f"trained {result.version} on {result.samples} applications ({result.labelled} labelled) "
        f"in {time.perf_counter() - started:.0f}s"
    )
    model = current_model()
    if model is None or model.version != result.version:
        raise BenchError(f"no fraud model {result.version} at {MODEL_PATH} after training")
    return result.version


def preload() -> None:
    """What a running worker has imported already: the libraries of features and models (the
    model's classes come with unpickling it once). The model itself is loaded again, timed."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401

    from fraud.model import FraudModel

    FraudModel.load(MODEL_PATH)


# --- the breakdown ---------------------------------------------------------------------------


class Breakdown:
    """Wall time per wrapped function (inclusive) and the SQL executed inside each, the SQL
    attributed to the innermost wrapped function running. Installed for one rescore only."""

    # (module, attribute, label): score_program calls these through the module globals.
    TARGETS = (
        ("fraud.scoring", "current_model", "model load"),
        ("fraud.scoring", "load_context", "load_context"),
        ("fraud.features", "_registry", "load_context/_registry"),
        ("fraud.features", "_components", "load_context/_components"),
        ("fraud.scoring", "build_features", "build_features"),
        ("fraud.features", "_summary_similarity", "build_features/_summary_similarity"),
        ("fraud.features", "_usage", "build_features/_usage"),
        ("fraud.features", "_provider_sums", "build_features/_provider_sums"),
        ("fraud.scoring", "assess", "assess"),
        ("fraud.scoring", "_write_assessments", "_write_assessments"),
        ("fraud.scoring", "_update_application_risk", "_update_application_risk"),
    )

    def __init__(self):
        self.seconds: dict[str, float] = {label: 0.0 for _m, _a, label in self.TARGETS}
        self.sql: dict[str, float] = {}
        self.queries: dict[str, int] = {}
        self.stack: list[str] = []
        self.saved: list[tuple[object, str, object]] = []

    def wrap(self, function, label: str):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.stack.append(label)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.stack.pop()

        return timed

    def sql_wrapper(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            label = self.stack[-1] if self.stack else "score_program"
            self.sql[label] = self.sql.get(label, 0.0) + time.perf_counter() - started
            self.queries[label] = self.queries.get(label, 0) + 1

    @contextlib.contextmanager
    def installed(self):
        import importlib

        from django.db import connection

        for module_name, attribute, label in self.TARGETS:
            module = importlib.import_module(module_name)
            original = getattr(module, attribute)
            self.saved.append((module, attribute, original))
            setattr(module, attribute, self.wrap(original, label))
        try:
            with connection.execute_wrapper(self.sql_wrapper):
                yield self
        finally:
            for module, attribute, original in reversed(self.saved):
                setattr(module, attribute, original)
            self.saved.clear()

    def as_dict(self, total: float) -> dict:
        s = self.seconds
        inner = sum(v for k, v in s.items() if k.startswith("build_features/"))
        written = s["_write_assessments"] + s["_update_application_risk"]
        parts = {
            "model_load": s["model load"],
            "load_context": s["load_context"],
            "load_context_registry": s["load_context/_registry"],
            "load_context_components": s["load_context/_components"],
            "build_features": s["build_features"],
            "build_features_usage": s["build_features/_usage"] + s["build_features/_provider_sums"],
            "build_features_summary_similarity": s["build_features/_summary_similarity"],
            "build_features_rest": s["build_features"] - inner,
            "assess": s["assess"],
            "write_assessments": s["_write_assessments"],
            "update_application_risk": s["_update_application_risk"],
            "other": total - s["model load"] - s["load_context"] - s["build_features"] - s["assess"] - written,
        }
        return {
            "seconds": parts,
            "sql_seconds": dict(self.sql),
            "queries": dict(self.queries),
        }


def rescore(profile: Path | None = None, processes: int = 1) -> tuple[float, int, dict | None, list[dict]]:
    """One timed full rescore: seconds, applications scored, the breakdown (one process only),
    per programme."""
    from django.db import connection

    from coupons.models import Program
    from fraud import model as fraud_model
    from fraud.scoring import score_programs

    connection.ensure_connection()
    breakdown = Breakdown()
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    with breakdown.installed():
        fraud_model._cache.update(key=None, model=None)  # the model is loaded inside the timed part
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        results = score_programs(Program.objects.all(), processes=processes)
        seconds = time.perf_counter() - started
        if profiler:
            profiler.disable()
    scored = sum(r.scored for r in results)
    if profiler:
        import io
        import pstats

        profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        log(f"cProfile of the rescore (stats in {profile}):\n{text.getvalue()}")
    per_program = [
        {"program": r.program, "scored": r.scored, "model_version": r.model_version, "bands": r.bands} for r in results
    ]
    return seconds, scored, breakdown.as_dict(seconds) if processes == 1 else None, per_program


def check_written(started_at: dt.datetime, scored: int) -> None:
    """Every application has a score and this run wrote one assessment per scored application."""
    from coupons.models import Application
    from fraud.models import RiskAssessment

    written = RiskAssessment.objects.filter(created_at__gte=started_at).count()
    unscored = Application.objects.filter(risk_score__isnull=True).count()
    if written != scored:
        raise BenchError(f"the rescore reported {scored} applications but wrote {written} assessments")
    if unscored:
        raise BenchError(f"{unscored} applications have no risk score after the rescore")


# --- the run ---------------------------------------------------------------------------------


def run(args) -> dict:
    url = own_database_url(DATABASE)
    require_consent(args.yes, f"loads a large demo world into {database_label(url)} and writes assessments there")
    # Before Django starts here or in manage.py: the bench's own model file, tasks never eager.
    os.environ["FRAUD_MODEL_PATH"] = str(MODEL_PATH)
    os.environ.update(TASKS_QUEUED)
    ensure_database(url, DATABASE)
    manage(url, "migrate", "--noinput", "-v", "0")
    django_setup(url)
    from django.db import connection
    from django.utils import timezone

    world = ensure_world(url, args)
    version = ensure_model()
    preload()
    connection.close()
    vacuum(url)

    log("aggregation (untimed, warms the cache) ...")
    warm_seconds, groups = aggregation(url)
    log(f"aggregation warm-up {warm_seconds:.2f}s, {groups} enterprises")
    if args.warm_rescore:
        log("untimed rescore (warm-up) ...")
        seconds, scored, _breakdown, _programs = rescore()
        log(f"warm-up rescore {seconds:.1f}s, {scored} applications")

    aggregation_seconds, rescore_seconds = [], []
    scored = 0
    per_program: list[dict] = []
    for attempt in range(1, args.repeat + 1):
        checkpoint(url)
        seconds, groups = aggregation(url)
        aggregation_seconds.append(seconds)
        log(f"[{attempt}/{args.repeat}] GROUP BY enterprise {seconds:.2f}s ({groups} rows)")
        checkpoint(url)
        started_at = timezone.now()
        seconds, scored, _breakdown, per_program = rescore(processes=args.processes)
        check_written(started_at, scored)
        rescore_seconds.append(seconds)
        log(
            f"[{attempt}/{args.repeat}] rescore in {args.processes} processes {seconds:.1f}s, {scored} applications "
            f"= {scored / seconds:.0f}/s"
        )
    best = min(range(len(rescore_seconds)), key=rescore_seconds.__getitem__)
    rescore_best, aggregation_best = rescore_seconds[best], min(aggregation_seconds)
    # Where the time goes: one more rescore, in this process alone (not part of the ratio).
    checkpoint(url)
    started_at = timezone.now()
    single_seconds, single_scored, breakdown, _per_program = rescore(args.profile, processes=1)
    check_written(started_at, single_scored)
    log(f"rescore in one process {single_seconds:.1f}s (breakdown)")
    return {
        "benchmark": "score",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": database_label(url),
        "postgresql": server_version(url),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "scale": args.scale,
        "seed": args.seed,
        "usage_per_application": args.usage_per_application,
        "applications": world["applications"],
        "usage_rows": world["usage_rows"],
        "enterprises_with_usage": groups,
        "model_version": version,
        "repeat": args.repeat,
        "warm_up": "one untimed full rescore and the aggregation" if args.warm_rescore else "the aggregation, untimed",
        "profiled": str(args.profile) if args.profile else None,
        "aggregation_sql": AGGREGATION,
        "aggregation": {"seconds": aggregation_seconds, "best": aggregation_best, "warm_up": warm_seconds},
        "rescore": {
            "seconds": rescore_seconds,
            "best": rescore_best,
            "applications": scored,
            "rate": scored / rescore_best,
            "processes": args.processes,
            "programs": per_program,
        },
        "single_process": {"seconds": single_seconds, "breakdown": breakdown},
        "ratio": rescore_best / aggregation_best,
        "max_ratio": args.max_ratio,
    }


def report(figures: dict) -> int:
    rescore_figures = figures["rescore"]
    n, s = rescore_figures["applications"], rescore_figures["best"]
    g = figures["aggregation"]["best"]
    ratio = figures["ratio"]
    failures = []
    if ratio > figures["max_ratio"]:
        failures.append(f"the rescore takes {ratio:.2f} times the aggregation, above {figures['max_ratio']:.2f}")
    figures["ok"] = not failures
    figures["failures"] = failures
    write_json(Path(figures.get("out", OUT / "score.json")), figures)
    single = figures["single_process"]["seconds"]
    parts = figures["single_process"]["breakdown"]["seconds"]

    def line(label: str, seconds: float, indent: int = 2) -> str:
        return f"{' ' * indent}{label:<34}{seconds:8.1f} s {seconds / single:6.1%}"

    print(
        f"{figures['applications']} applications, {figures['usage_rows']} usage rows ({figures['enterprises_with_usage']} "
        f"enterprises with usage), model {figures['model_version']}, {figures['database']} "
        f"(PostgreSQL {figures['postgresql']}), {figures['cpus']} CPUs, warm-up: {figures['warm_up']}"
        + (", rescore profiled (slower)" if figures["profiled"] else "")
    )
    print("programmes: " + ", ".join(f"{p['program']} {p['scored']}" for p in rescore_figures["programs"]))
    print(f"rescore in one process: {single:.1f} s (ratio {single / g:.2f}), where the time goes:")
    print(line("load the model", parts["model_load"]))
    print(line("registry and history (once)", parts["load_context"]))
    print(line("_registry", parts["load_context_registry"], 4))
    print(line("_components", parts["load_context_components"], 4))
    print(line("build_features", parts["build_features"]))
    print(line("usage sums (SQL, weekly table)", parts["build_features_usage"], 4))
    print(line("_summary_similarity", parts["build_features_summary_similarity"], 4))
    print(line("the rest", parts["build_features_rest"], 4))
    print(line("assess (rules, models, reasons)", parts["assess"]))
    print(line("_write_assessments (COPY)", parts["write_assessments"]))
    print(line("_update_application_risk", parts["update_application_risk"]))
    print(line("other (bands, commit, ...)", parts["other"]))
    print(
        f"rescore in {rescore_figures['processes']} processes (one per programme, largest first; the aggregation "
        f"uses PostgreSQL's parallel workers): best of {figures['repeat']}"
    )
    for failure in failures:
        print(f"FAIL: {failure}")
    print(
        f"rescore {n} applications in {s:.1f} s ({n / s:.0f} applications/s), "
        f"GROUP BY enterprise {g:.2f} s, ratio {s / g:.2f}"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run_main("score", argv, parse_args, run, report)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
