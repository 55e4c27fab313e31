"""Usage ingestion through the HTTP API against a plain PostgreSQL ``COPY`` of the same rows.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python -m bench.ingest --yes [--records 1000000] [--batch 5000] [--clients 3] [--workers 3]

WARNING: this wipes every usage record and usage batch (``TRUNCATE coupons_usagerecord,
coupons_usagebatch, coupons_usageweek CASCADE``, which also empties ``coupons_redemptionline``
and the weekly sums) of the database
that DATABASE_URL names, several times. Point it at a database of its own (``createdb bench``);
it refuses to run without ``--yes`` or ``BENCH_OK=1``.

What it does, in one run on one database:

1. migrates, loads the demo world (``seed_demo``) if the organisations and providers of the
   demo generator are not all there yet, creates one API key per provider;
2. takes the first ``--records`` usage rows of the demo generator, groups them per provider
   into batches of ``--batch`` and serialises every HTTP body before any timing;
3. starts gunicorn (``config.wsgi``, ``--workers`` sync workers) on 127.0.0.1;
4. first pass: every batch ``POST /api/v1/usage/`` from ``--clients`` keep-alive connections,
   each answer must be 201 with ``created + duplicates == records``: the ingest rate;
5. replay: every batch again, each answer must be 200 ``replayed``: the replay rate;
6. baseline: the rows the first pass stored, exported as COPY text before timing, go back into
   the emptied table (same indexes, constraints, foreign keys; one usage batch per provider)
   with one ``COPY coupons_usagerecord (...) FROM STDIN``: the COPY rate.

The last line gives the three rates and ``ratio`` (ingest / COPY). The exit status is 1 when
the ratio is below ``--min-ratio`` (one third) or the replay is slower than the first pass,
2 when the benchmark could not run. Figures also go to ``bench/out/ingest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from bench.common import (
    OUT,
    AppServer,
    BenchError,
    Request,
    database_label,
    django_setup,
    log,
    manage,
    pg_connect,
    postgres_url,
    require_consent,
    run_main,
    send_all,
    server_version,
    write_json,
)

USAGE_PATH = "/api/v1/usage/"
KEY_NAME = "bench-ingest"
TRUNCATE = "TRUNCATE coupons_usagerecord, coupons_usagebatch, coupons_usageweek CASCADE"
# Work the usage_ingested signal starts (the fraud rescore) is a Celery task. In production it
# goes to the broker and runs elsewhere; without a broker, local settings run it inside the
# request. The server queues it to kombu's in-process memory transport (nothing consumes it,
# no shared broker is touched), so that the benchmark measures ingestion as deployed.
TASKS_QUEUED = {"CELERY_BROKER_URL": "memory://", "CELERY_TASK_ALWAYS_EAGER": "false"}
TASKS_EAGER = {"CELERY_BROKER_URL": "", "CELERY_TASK_ALWAYS_EAGER": "true"}
# Demo applications: about 1.15 million usage rows at 100 per application (about 57 rows per
# application that has usage), enough for the full run; larger --records raise it.
DEFAULT_SCALE = 20_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Benchmark usage ingestion through the HTTP API (gunicorn on 127.0.0.1) against a plain "
            "PostgreSQL COPY of the same rows into the same table, on the database DATABASE_URL names. "
            "WARNING: wipes all usage records and usage batches of that database (TRUNCATE ... CASCADE); "
            "requires --yes or BENCH_OK=1."
        ),
        epilog="Last line: 'ingest N records/s, replay N records/s, COPY N records/s, ratio X.XX'. "
        "Exit 1 if ratio < --min-ratio or replay < ingest; 2 if the benchmark could not run.",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="usage records to send (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=5_000, help="records per HTTP request (default 5,000)")
    parser.add_argument("--clients", type=int, default=3, help="concurrent keep-alive connections (default 3)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (default 3)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each rate this many times, keep the best")
    parser.add_argument("--seed", type=int, default=42, help="demo generator seed")
    parser.add_argument("--scale", type=int, default=0, help="demo applications (default: enough for --records)")
    parser.add_argument("--usage-per-application", type=int, default=100)
    parser.add_argument("--min-ratio", type=float, default=0.33, help="lowest acceptable ingest/COPY ratio")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument(
        "--eager-tasks",
        action="store_true",
        help="run Celery tasks inside the request as local settings do without a broker (default: the server "
        "queues them to an in-memory broker, as production queues them to its broker)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "ingest.json")
    parser.add_argument("--yes", action="store_true", help="agree to wipe the usage of the DATABASE_URL database")
    args = parser.parse_args(argv)
    for name in ("records", "batch", "clients", "workers", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# --- the demo world --------------------------------------------------------------------------


def demo_data(args):
    """The generator's data set at a scale that yields at least ``--records`` usage rows."""
    from fixtures.demo.generator import DemoConfig, generate

    def make(scale: int):
        return generate(
            DemoConfig(applications=scale, seed=args.seed, usage_per_application=args.usage_per_application)
        )

    if args.scale:
        data = make(args.scale)
    else:
        # One demo world for every --records up to the full run, so that a short run and the
        # full one use the same database (seed_demo cannot load a second world of another scale).
        scale = DEFAULT_SCALE
        data = make(scale)
        while data.usage_count_estimate() < args.records and scale < 10_000_000:
            scale = math.ceil(scale * 1.25)
            data = make(scale)
    available = data.usage_count_estimate()
    if available < args.records:
        raise BenchError(
            f"the demo generator yields {available} usage rows at scale {data.config.applications}; "
            "raise --scale or --usage-per-application"
        )
    log(
        f"demo generator: scale {data.config.applications}, {len(data.registry)} organisations, "
        f"{len(data.providers)} providers, {available} usage rows"
    )
    return data


def ensure_demo_world(url: str, data) -> None:
    """Load the demo world with ``seed_demo`` unless every organisation and provider of ``data``
    is already in the database (seed_demo is idempotent, but takes a while)."""
    from enterprises.models import Organisation, Provider

    usccs = {row["uscc"] for row in data.registry}
    provider_usccs = {row["uscc"] for row in data.providers}
    have = Organisation.objects.filter(uscc__in=usccs).count()
    have_providers = Provider.objects.filter(organisation__uscc__in=provider_usccs).count()
    if have == len(usccs) and have_providers == len(provider_usccs):
        log(f"demo world already loaded ({have} organisations, {have_providers} providers)")
        return
    config = data.config
    log(
        f"loading the demo world: {len(usccs) - have} organisations, {len(provider_usccs) - have_providers} providers missing"
    )
    manage(
        url,
        "seed_demo",
        "--scale",
        str(config.applications),
        "--seed",
        str(config.seed),
        "--usage-per-application",
        str(config.usage_per_application),
        "--no-users",
        "--truth",
        str(OUT / "demo-truth.csv"),
        env=TASKS_QUEUED,  # the fraud rescore that ingesting the demo usage starts is not run
        failure=(
            "the database may hold a demo world of another scale, seed or generator version; "
            "give the benchmark a fresh database (dropdb/createdb) or the --scale it was loaded with"
        ),
    )


def api_keys(provider_usccs: list[str]) -> dict[str, str]:
    """A fresh API key per provider (earlier bench keys are revoked): uscc -> raw key."""
    from django.db import transaction
    from django.utils import timezone

    from enterprises.models import Provider, ProviderApiKey
    from enterprises.services import provider_key_create

    providers = {p.organisation.uscc: p for p in Provider.objects.select_related("organisation")}
    missing = [uscc for uscc in provider_usccs if uscc not in providers]
    if missing:
        raise BenchError(f"providers missing from the database: {', '.join(missing)}")
    with transaction.atomic():
        ProviderApiKey.objects.filter(name=KEY_NAME, revoked_at__isnull=True).update(revoked_at=timezone.now())
        return {uscc: provider_key_create(provider=providers[uscc], name=KEY_NAME).raw_key for uscc in provider_usccs}


# --- the requests ----------------------------------------------------------------------------


def build_batches(data, records: int, batch: int) -> list[tuple[str, bytes, int]]:
    """The first ``records`` usage rows, per provider in batches of ``batch``, as
    ``(provider uscc, JSON body, number of records)``."""
    batches: list[tuple[str, bytes, int]] = []
    current: list[dict] = []
    current_provider = None

    def flush() -> None:
        if current:
            batches.append((current_provider, orjson.dumps({"records": current}), len(current)))
            current.clear()

    for provider, row in itertools.islice(data.iter_usage(), records):
        if provider != current_provider or len(current) >= batch:
            flush()
            current_provider = provider
        current.append(row)
    flush()
    sent = sum(n for _, _, n in batches)
    if sent != records:
        raise BenchError(f"the generator gave {sent} usage rows, {records} were asked for")
    return batches


def requests_for(batches, keys: dict[str, str]) -> list[Request]:
    return [
        Request(
            "POST",
            USAGE_PATH,
            body,
            {
                "Authorization": f"Api-Key {keys[provider]}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            records=n,
            tag=provider,
        )
        for provider, body, n in batches
    ]


def check_pass(result, requests: list[Request], *, replay: bool, first: list[dict] | None = None) -> list[dict]:
    """Every answer as expected (201 with every record created or a duplicate; on replay 200
    ``replayed`` with the first pass's batch), else BenchError naming the first bad one."""
    if result.errors:
        raise BenchError(f"{'replay' if replay else 'first pass'}: {result.errors[0]}")
    answers = []
    for index, (request, response) in enumerate(zip(requests, result.responses, strict=True)):
        expected = 200 if replay else 201
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            answer = None
        ok = response.status == expected and isinstance(answer, dict) and answer.get("records") == request.records
        if ok and not replay:
            ok = answer.get("created", 0) + answer.get("duplicates", 0) == request.records and not answer.get(
                "replayed"
            )
        if ok and replay:
            ok = answer.get("replayed") is True and answer.get("batch") == first[index].get("batch")
        if not ok:
            raise BenchError(
                f"{'replay' if replay else 'first pass'}: batch {index} ({request.records} records of "
                f"{request.tag}) answered {response.status}: {response.body[:500].decode(errors='replace')}"
            )
        answers.append(answer)
    return answers


# --- PostgreSQL ------------------------------------------------------------------------------


def truncate(url: str) -> None:
    with pg_connect(url) as conn:
        conn.execute(TRUNCATE)
        conn.execute("CHECKPOINT")  # no checkpoint of earlier writes inside the timed part


def export_rows(url: str, copy_columns: list[str]) -> list[list[str]]:
    """Every stored usage record as its COPY text fields in ``copy_columns`` order, except that
    the ``batch_id`` field holds the provider id (batches are made again for the baseline)."""
    select = ", ".join("provider_id" if name == "batch_id" else name for name in copy_columns)
    chunks = []
    with pg_connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY (SELECT {select} FROM coupons_usagerecord ORDER BY id) TO STDOUT") as copy:  # noqa: S608 - column names from COPY_COLUMNS
            for chunk in copy:
                chunks.append(bytes(chunk))
    text = b"".join(chunks).decode()
    return [line.split("\t") for line in text.splitlines()]


def copy_baseline(url: str, rows: list[list[str]], copy_columns: list[str]) -> float:
    """Empty the table, make one usage batch per provider, then time one COPY of ``rows`` (the
    COPY text is built before timing; the COPY commits on its own, so the time includes the
    deferred foreign-key checks and the commit). Returns seconds."""
    batch_at = copy_columns.index("batch_id")
    provider_at = copy_columns.index("provider_id")
    per_provider = Counter(row[provider_at] for row in rows)
    with pg_connect(url) as conn:
        conn.execute(TRUNCATE)
        batch_of = {}
        for provider_id, count in sorted(per_provider.items()):
            batch_of[provider_id] = conn.execute(
                "INSERT INTO coupons_usagebatch (provider_id, sha256, source, records, created, duplicates, received_at) "
                "VALUES (%s, %s, 'bench', %s, %s, 0, now()) RETURNING id",
                (int(provider_id), f"bench-copy-{provider_id}", count, count),
            ).fetchone()[0]
        lines = []
        for row in rows:
            fields = list(row)
            fields[batch_at] = str(batch_of[row[provider_at]])
            lines.append("\t".join(fields))
        payload = ("\n".join(lines) + "\n").encode()
        del lines
        step = 8 * 1024 * 1024
        pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
        conn.execute("CHECKPOINT")
        statement = f"COPY coupons_usagerecord ({', '.join(copy_columns)}) FROM STDIN"
        with conn.cursor() as cursor:
            started = time.perf_counter()
            with cursor.copy(statement) as copy:
                for piece in pieces:
                    copy.write(piece)
            seconds = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM coupons_usagerecord").fetchone()[0]
        if stored != len(rows):
            raise BenchError(f"COPY stored {stored} rows, {len(rows)} were sent")
    return seconds


def count_usage(url: str) -> int:
    with pg_connect(url) as conn:
        return conn.execute("SELECT count(*) FROM coupons_usagerecord").fetchone()[0]


# --- the run ---------------------------------------------------------------------------------


def run(args) -> dict:
    url = postgres_url()
    require_consent(args.yes, f"wipes every usage record and usage batch of {database_label(url)}")
    manage(url, "migrate", "--noinput", "-v", "0")
    django_setup(url)
    from django.db import connection

    from coupons.services.usage import COPY_COLUMNS

    data = demo_data(args)
    ensure_demo_world(url, data)
    started = time.perf_counter()
    batches = build_batches(data, args.records, args.batch)
    providers = list(dict.fromkeys(provider for provider, _, _ in batches))
    keys = api_keys(providers)
    requests = requests_for(batches, keys)
    body_bytes = sum(len(r.body) for r in requests)
    log(
        f"{len(requests)} requests for {len(providers)} providers, {body_bytes / 1e6:.0f} MB of JSON, "
        f"built in {time.perf_counter() - started:.1f}s"
    )
    connection.close()

    first_seconds, replay_seconds, copy_seconds = [], [], []
    first_answers = []
    server = AppServer(
        database_url=url,
        workers=args.workers,
        port=args.port,
        log_path=OUT / "ingest-gunicorn.log",
        env=TASKS_EAGER if args.eager_tasks else TASKS_QUEUED,
    )
    with server:
        warm_up(server.port, requests[0], args.workers)
        for attempt in range(1, args.repeat + 1):
            truncate(url)
            log(f"[{attempt}/{args.repeat}] first pass: {args.records} records, {args.clients} clients ...")
            result = send_all(server.port, requests, args.clients)
            first_answers = check_pass(result, requests, replay=False)
            stored = count_usage(url)
            if stored != args.records:
                raise BenchError(f"first pass: {stored} usage records stored, {args.records} sent")
            first_seconds.append(result.seconds)
            log(
                f"[{attempt}/{args.repeat}] first pass {result.seconds:.1f}s = {args.records / result.seconds:.0f} records/s "
                f"({result.connections} connections)"
            )
            with pg_connect(url) as conn:
                conn.execute("CHECKPOINT")
            result = send_all(server.port, requests, args.clients)
            check_pass(result, requests, replay=True, first=first_answers)
            if count_usage(url) != args.records:
                raise BenchError("replay changed the number of stored usage records")
            replay_seconds.append(result.seconds)
            log(
                f"[{attempt}/{args.repeat}] replay {result.seconds:.1f}s = {args.records / result.seconds:.0f} records/s"
            )
    created = sum(a["created"] for a in first_answers)
    duplicates = sum(a["duplicates"] for a in first_answers)

    log("exporting the stored rows for the COPY baseline ...")
    rows = export_rows(url, COPY_COLUMNS)
    for attempt in range(1, args.repeat + 1):
        seconds = copy_baseline(url, rows, COPY_COLUMNS)
        copy_seconds.append(seconds)
        log(f"[{attempt}/{args.repeat}] COPY {seconds:.1f}s = {len(rows) / seconds:.0f} records/s")

    ingest_rate = args.records / min(first_seconds)
    replay_rate = args.records / min(replay_seconds)
    copy_rate = len(rows) / min(copy_seconds)
    return {
        "benchmark": "ingest",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": database_label(url),
        "postgresql": server_version(url),
        "python": platform.python_version(),
        "records": args.records,
        "batch": args.batch,
        "requests": len(requests),
        "providers": len(providers),
        "body_bytes": body_bytes,
        "clients": args.clients,
        "workers": args.workers,
        "repeat": args.repeat,
        "celery_tasks": "eager (in the request)" if args.eager_tasks else "queued (memory broker)",
        "created": created,
        "duplicates": duplicates,
        "ingest": {"seconds": first_seconds, "rate": ingest_rate},
        "replay": {"seconds": replay_seconds, "rate": replay_rate},
        "copy": {"seconds": copy_seconds, "rate": copy_rate, "rows": len(rows)},
        "ratio": ingest_rate / copy_rate,
        "replay_ratio": replay_rate / ingest_rate,
        "min_ratio": args.min_ratio,
    }


def warm_up(port: int, request: Request, workers: int) -> None:
    """A few invalid one-record batches (400, nothing stored), so that every worker has its
    imports, database connection and accelerator index before the clock starts."""
    bad = Request("POST", USAGE_PATH, orjson.dumps({"records": [{}]}), request.headers)
    result = send_all(port, [bad] * (4 * workers), workers)
    statuses = {response.status for response in result.responses if response is not None}
    if result.errors or statuses != {400}:
        raise BenchError(f"warm-up answered {statuses or result.errors}")


def report(figures: dict) -> int:
    ingest, replay, copy = figures["ingest"]["rate"], figures["replay"]["rate"], figures["copy"]["rate"]
    ratio = figures["ratio"]
    failures = []
    if ratio < figures["min_ratio"]:
        failures.append(f"ingest is {ratio:.2f} of the COPY rate, below {figures['min_ratio']:.2f}")
    if replay < ingest:
        failures.append(f"replay ({replay:.0f} records/s) is slower than the first pass ({ingest:.0f} records/s)")
    figures["ok"] = not failures
    figures["failures"] = failures
    write_json(Path(figures.get("out", OUT / "ingest.json")), figures)
    print(
        f"{figures['records']} records in {figures['requests']} batches of up to {figures['batch']} "
        f"({figures['providers']} providers, {figures['body_bytes'] / 1e6:.0f} MB JSON), "
        f"{figures['clients']} clients, {figures['workers']} gunicorn workers, Celery tasks {figures['celery_tasks']}, "
        f"{figures['database']} (PostgreSQL {figures['postgresql']})"
    )
    print(f"first pass: {figures['created']} created, {figures['duplicates']} duplicates")
    print(f"replay / ingest: {figures['replay_ratio']:.2f}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print(f"ingest {ingest:.0f} records/s, replay {replay:.0f} records/s, COPY {copy:.0f} records/s, ratio {ratio:.2f}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run_main("ingest", argv, parse_args, run, report)


if __name__ == "__main__":
    sys.exit(main())
