"""The review queue and the enterprise portal under load: requests per second and latency
percentiles of two pages, served by gunicorn with the production settings on 127.0.0.1.

    .venv/bin/python -m bench.load --yes [--seconds 30] [--concurrency 16] [--workers 5]

It uses a PostgreSQL database of its own: DATABASE_URL when set, else
``postgresql://postgres@127.0.0.1:5432/loadtest`` (created with ``createdb`` when missing and
named ``loadtest…``). It refuses to run without ``--yes`` or ``BENCH_OK=1``, on anything but
PostgreSQL and on the ``postgres``/``root``/``test``/``template*`` databases. It only reads
pages, but the first run loads the demo world there (the two sessions a run writes are deleted
at its end).

What it does, in one run on one database:

1. migrates; loads the demo world with ``seed_demo --scale 5000`` (with the demo logins)
   unless the database already holds that many applications and the users ``reviewer1`` and
   ``enterprise``; ``VACUUM ANALYZE``; ``collectstatic`` into ``bench/out/load-static`` (the
   production settings serve hashed files from a manifest);
2. signs ``reviewer1`` and ``enterprise`` in by writing a session for each straight into the
   session store (production cookies are ``Secure``, so no browser-like client would send them
   over plain HTTP; the load generator sends ``Cookie: sessionid=…`` itself);
3. starts gunicorn with ``config.settings.production`` (``--workers`` sync workers) on a free
   port of 127.0.0.1 and warms every worker up on both pages;
4. for each page in turn, ``--concurrency`` client threads, each on its own connection
   (keep-alive when the server allows it; gunicorn's sync workers close every connection, so
   each request opens a new one), send ``GET`` for ``--seconds`` or until ``--max-requests``
   answers, recording the latency of every request. Every answer must be 200; anything else,
   and any connection failure, is an error.

The pages are the review queue ``/admin/coupons/application/`` as ``reviewer1`` and the portal's
``/portal/applications/`` as ``enterprise``. The last line is

```
review queue 14 req/s p95 1394 ms; portal 114 req/s p95 236 ms
```

The client threads run on the same machine as the server and take some of its CPU. Exit status
1 when any response was not a 200, 2 when the benchmark could not run. Figures go to
``bench/out/load.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import math
import os
import platform
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    OUT,
    ROOT,
    AppServer,
    BenchError,
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

DATABASE = "loadtest"
DEFAULT_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
SCALE = 5_000
REVIEWER, ENTERPRISE = "reviewer1", "enterprise"
PAGES = (
    ("review queue", "/admin/coupons/application/", REVIEWER),
    ("portal", "/portal/applications/", ENTERPRISE),
)
STATIC_ROOT = OUT / "load-static"
MODEL_PATH = OUT / "load-model.pickle"  # seed_demo trains one; never the project's own
# Work that seed_demo's usage ingestion starts (a debounced rescore) goes to kombu's in-process
# memory broker and is never run; seed_demo scores everything at its end anyway.
TASKS_QUEUED = {"CELERY_BROKER_URL": "memory://", "CELERY_TASK_ALWAYS_EAGER": "false"}
BACKEND = "django.contrib.auth.backends.ModelBackend"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=(
            "Load-test the review queue (/admin/coupons/application/ as reviewer1) and the enterprise portal "
            "(/portal/applications/ as enterprise) on gunicorn with the production settings on 127.0.0.1: "
            "requests per second and p50/p95/p99 latency. Uses the PostgreSQL database DATABASE_URL names "
            f"(default {DEFAULT_URL}, created when missing) and loads the demo world there; requires --yes or "
            "BENCH_OK=1."
        ),
        epilog="Last line: 'review queue N req/s p95 N ms; portal N req/s p95 N ms'. "
        "Exit 1 if any response was not a 200; 2 if the benchmark could not run.",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="load per page, in seconds (default 30)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients per page (default 16)")
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers (default 5)")
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="stop a page after this many answers (default 200,000)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="client socket timeout, seconds (default 60)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--out", type=Path, default=OUT / "load.json")
    parser.add_argument("--yes", action="store_true", help="agree to load the demo world into the database")
    args = parser.parse_args(argv)
    for name in ("concurrency", "workers", "max_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds <= 0 or args.timeout <= 0:
        parser.error("--seconds and --timeout must be positive")
    return args


# --- the database ----------------------------------------------------------------------------


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE``: planner statistics and visibility maps as on a database in service
    (a freshly seeded one has none until autovacuum comes by)."""
    started = time.perf_counter()
    with pg_connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
    log(f"VACUUM ANALYZE {time.perf_counter() - started:.1f}s")


def ensure_world(url: str) -> dict:
    """``seed_demo --scale 5000`` (with the demo logins) unless the applications and both users
    are already there."""
    from django.contrib.auth import get_user_model

    from coupons.models import Application

    def present() -> tuple[int, set[str]]:
        users = set(
            get_user_model().objects.filter(username__in=[REVIEWER, ENTERPRISE]).values_list("username", flat=True)
        )
        return Application.objects.count(), users

    applications, users = present()
    if applications >= SCALE and users == {REVIEWER, ENTERPRISE}:
        log(f"demo world already loaded ({applications} applications, users {', '.join(sorted(users))})")
    else:
        log(f"loading the demo world (scale {SCALE}; {applications} applications there) ...")
        manage(
            url,
            "seed_demo",
            "--scale",
            str(SCALE),
            "--truth",
            str(OUT / "load-truth.csv"),
            env={**TASKS_QUEUED, "FRAUD_MODEL_PATH": str(MODEL_PATH)},
            failure="the database may hold a demo world of another scale or seed; give the benchmark a fresh one",
        )
        applications, users = present()
        if users != {REVIEWER, ENTERPRISE}:
            raise BenchError(f"seed_demo did not create the users {REVIEWER} and {ENTERPRISE}")
    return {"applications": applications}


def sign_in(username: str) -> str:
    """A session for ``username``, written to the session store as ``django.contrib.auth.login``
    would: the session key to send as ``sessionid``. The auth hash is keyed with SECRET_KEY,
    which the server shares with this process."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(username=username)
    if not user.is_active:
        raise BenchError(f"the user {username} is not active")
    session = SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def queries_per_page(cookies: dict[str, str]) -> dict[str, int]:
    """SQL queries one request of each page makes, counted in this process (Django's test client
    with the same session; local settings, the same views and templates)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for label, path, username in PAGES:
        client = Client(HTTP_HOST="127.0.0.1")
        client.cookies["sessionid"] = cookies[username]
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        if status != 200:
            raise BenchError(f"{label}: {path} answered {status} in-process for {username}")
        counts[label] = len(captured)
    connection.close()
    return counts


# --- the load generator ----------------------------------------------------------------------


@dataclass
class Load:
    """What one page under load gave: every latency of a 200, and every error by kind."""

    seconds: float
    latencies: list[float]
    errors: Counter = field(default_factory=Counter)
    connections: int = 0
    body_bytes: int = 0

    @property
    def answers(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


def load(
    port: int, path: str, headers: dict[str, str], *, clients: int, seconds: float, limit: int, timeout: float
) -> Load:
    """``GET path`` from ``clients`` threads for ``seconds`` (or until ``limit`` answers), each
    thread on its own connection, reopened whenever the server closes it or a request fails. A
    request in flight at the deadline is waited for and counted. Returns the time from the start
    to the last answer."""
    lock = threading.Lock()
    state = {"sent": 0, "connections": 0, "bytes": 0}
    latencies: list[float] = []
    errors: Counter = Counter()
    go = threading.Event()
    deadline = [0.0]

    def take() -> bool:
        with lock:
            if state["sent"] >= limit or time.perf_counter() >= deadline[0]:
                return False
            state["sent"] += 1
            return True

    def client() -> None:
        mine: list[float] = []
        my_errors: Counter = Counter()
        connection = None
        opened = received = 0
        go.wait()
        try:
            while take():
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                    opened += 1
                started = time.perf_counter()
                try:
                    connection.request("GET", path, headers=headers)
                    answer = connection.getresponse()
                    body = answer.read()
                except (OSError, http.client.HTTPException) as error:
                    my_errors[type(error).__name__] += 1
                    connection.close()
                    connection = None
                    continue
                elapsed = time.perf_counter() - started
                received += len(body)
                if answer.status == 200:
                    mine.append(elapsed)
                else:
                    my_errors[f"HTTP {answer.status}"] += 1
                if answer.will_close:
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()
            with lock:
                latencies.extend(mine)
                errors.update(my_errors)
                state["connections"] += opened
                state["bytes"] += received

    threads = [threading.Thread(target=client, name=f"client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return Load(elapsed, latencies, errors, state["connections"], state["bytes"])


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarise(result: Load) -> dict:
    ordered = sorted(result.latencies)
    ms = [1000 * value for value in ordered]
    return {
        "seconds": result.seconds,
        "answers": result.answers,
        "ok": len(ordered),
        "errors": sum(result.errors.values()),
        "error_kinds": dict(result.errors),
        "rps": result.answers / result.seconds,
        "ok_rps": len(ordered) / result.seconds,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "max_ms": ms[-1] if ms else math.nan,
        "connections": result.connections,
        "mean_body_bytes": result.body_bytes / result.answers if result.answers else 0,
    }


def warm_up(port: int, path: str, headers: dict[str, str], workers: int, label: str) -> None:
    """A few requests per worker, untimed, so that every worker has its imports, templates and
    database connection; each must be a 200 (a redirect to the login page means the session
    was not accepted)."""
    result = load(port, path, headers, clients=workers, seconds=3600, limit=4 * workers, timeout=120)
    if result.errors:
        raise BenchError(f"warm-up of the {label} ({path}) answered {dict(result.errors)}")


# --- the run ---------------------------------------------------------------------------------


def measure(port: int, cookies: dict[str, str], queries: dict[str, int], args, pages: dict) -> None:
    """Warm every worker up on both pages, then load each page in turn; figures into ``pages``."""
    headers = {
        username: {"Cookie": f"sessionid={key}", "Accept": "text/html", "Accept-Language": "zh-hans"}
        for username, key in cookies.items()
    }
    for label, path, username in PAGES:
        warm_up(port, path, headers[username], args.workers, label)
    for label, path, username in PAGES:
        log(f"{label}: GET {path} as {username}, {args.concurrency} clients for {args.seconds:g}s ...")
        result = load(
            port,
            path,
            headers[username],
            clients=args.concurrency,
            seconds=args.seconds,
            limit=args.max_requests,
            timeout=args.timeout,
        )
        figures = summarise(result)
        log(
            f"{label}: {figures['answers']} answers in {figures['seconds']:.1f}s = {figures['rps']:.0f} req/s, "
            f"p95 {figures['p95_ms']:.0f} ms, {figures['errors']} errors"
        )
        pages[label] = {"path": path, "user": username, "queries": queries[label], **figures}


def end_sessions(keys) -> None:
    """Delete the sessions this run wrote."""
    from django.contrib.sessions.models import Session
    from django.db import connection

    Session.objects.filter(session_key__in=list(keys)).delete()
    connection.close()


def production_env(url: str, secret_key: str) -> dict[str, str]:
    """The application server's environment on top of ``server_env``: production settings."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secret_key,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_ROOT": str(STATIC_ROOT),
        "FRAUD_MODEL_PATH": str(MODEL_PATH),
    }


def run(args) -> dict:
    url = own_database_url(DATABASE, default=DEFAULT_URL)
    require_consent(args.yes, f"loads the demo world into {database_label(url)}")
    # One secret for the server and this process: the sessions written here must verify there.
    secret_key = secrets.token_urlsafe(50)
    os.environ.update(SECRET_KEY=secret_key, FRAUD_MODEL_PATH=str(MODEL_PATH), **TASKS_QUEUED)
    ensure_database(url, DATABASE)
    manage(url, "migrate", "--noinput", "-v", "0")
    production = production_env(url, secret_key)
    manage(url, "collectstatic", "--noinput", "-v", "0", env=production, failure="with the production settings")
    django_setup(url)
    from django.db import connection

    world = ensure_world(url)
    connection.close()
    vacuum(url)
    pages, cookies = {}, {}
    server = AppServer(
        database_url=url, workers=args.workers, port=args.port, log_path=OUT / "load-gunicorn.log", env=production
    )
    try:
        for username in (REVIEWER, ENTERPRISE):
            cookies[username] = sign_in(username)
        queries = queries_per_page(cookies)
        idle_load = os.getloadavg()[0]  # the machine's other work, before the server starts
        with server:
            measure(server.port, cookies, queries, args, pages)
    finally:
        end_sessions(cookies.values())
    return {
        "benchmark": "load",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": database_label(url),
        "postgresql": server_version(url),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "settings": "config.settings.production",
        "applications": world["applications"],
        "workers": args.workers,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "max_requests": args.max_requests,
        "loadavg_before": idle_load,
        "pages": pages,
    }


def report(figures: dict) -> int:
    failures = [
        f"{label}: {page['errors']} of {page['answers']} answers were not 200 ({page['error_kinds']})"
        for label, page in figures["pages"].items()
        if page["errors"]
    ]
    figures["ok"] = not failures
    figures["failures"] = failures
    write_json(Path(figures.get("out", OUT / "load.json")), figures)
    print(
        f"{figures['applications']} applications, {figures['workers']} gunicorn sync workers "
        f"({figures['settings']}), {figures['concurrency']} clients for {figures['seconds']:g}s per page, "
        f"{figures['cpus']} CPUs, {figures['database']} (PostgreSQL {figures['postgresql']})"
    )
    print(
        f"{'page':<14}{'answers':>9}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>8}  SQL"
    )
    for label, page in figures["pages"].items():
        print(
            f"{label:<14}{page['answers']:>9}{page['rps']:>8.1f}{page['p50_ms']:>8.0f}{page['p95_ms']:>8.0f}"
            f"{page['p99_ms']:>8.0f}{page['max_ms']:>8.0f}{page['errors']:>8}  {page['queries']} queries, "
            f"{page['mean_body_bytes'] / 1024:.0f} KiB  {page['path']} as {page['user']}"
        )
    if figures["loadavg_before"] > figures["cpus"] / 2:
        print(
            f"note: the machine was busy before the server started (1-minute load average "
            f"{figures['loadavg_before']:.1f} on {figures['cpus']} CPUs): the figures are lower than on an idle machine"
        )
    for failure in failures:
        print(f"FAIL: {failure}")
    queue, portal = figures["pages"]["review queue"], figures["pages"]["portal"]
    print(
        f"review queue {queue['rps']:.0f} req/s p95 {queue['p95_ms']:.0f} ms; "
        f"portal {portal['rps']:.0f} req/s p95 {portal['p95_ms']:.0f} ms"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run_main("load", argv, parse_args, run, report)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
