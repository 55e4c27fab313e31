"""The usage CSV export through the web endpoint against a plain PostgreSQL ``COPY … TO STDOUT
WITH CSV`` of the same rows, in the same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python -m bench.export --yes [--rows 1000000] [--workers 2] [--repeat 1]

It reads the usage rows that ``bench.ingest`` loads (run that first: ``python -m bench.ingest
--yes``) and deletes nothing. It adds a staff user ``bench-export`` in the auditors group, a
session for it, and one export record per download (and per warm-up request) to the export
chain of the database that DATABASE_URL names. It refuses to run without ``--yes`` or
``BENCH_OK=1``, on anything but PostgreSQL and on the ``postgres``/``root``/``test``/``template*``
databases.

What it does, in one run on one database:

1. migrates (which also syncs the staff groups); checks that the usage table holds at least
   ``--rows`` rows and picks the rows to export: the whole table when it holds ``--rows``, else
   the list's own ``date_to`` filter at the first day (Asia/Shanghai) by which ``--rows`` rows
   have started. The export is of the rows that filter selects, however many that is (the
   count is reported). ``VACUUM ANALYZE`` of the tables the export reads (untimed: after a bulk
   load the planner's statistics are stale, as autovacuum would not leave them);
2. the baseline statement is built from the very queryset the endpoint exports
   (``audit.lists.filtered`` and ``ordered`` of ``LISTS["usage"]``, ``values_list`` of the
   list's columns): ``COPY (<its SQL, parameters bound>) TO STDOUT WITH CSV``, the same rows,
   columns, joins and order with the raw values (no SQL formatting, no BOM, no header);
3. starts gunicorn (``config.wsgi``, ``--workers`` sync workers, local settings,
   ``DEBUG=false``) on 127.0.0.1 and warms every worker up with exports of no rows;
4. **baseline**: the COPY read through psycopg's ``cursor.copy()`` in this process, its bytes
   and rows counted and the data discarded. It runs once untimed first (it warms the cache for
   both sides: they read the same tables);
5. **export**: ``GET /audit/usage/export.csv?<filters>`` with the session cookie of the bench
   user, on a fresh connection, the body read in 1 MiB pieces and discarded. Timed from sending
   the request to its first body byte (first byte) and to its last (total). The body must start
   with the UTF-8 BOM and hold the header and as many lines as the baseline has rows, and the
   export record the server wrote must say complete with that many rows. The time to the first
   byte after the header (first row) is reported too, without a limit. Meanwhile the resident
   memory of every gunicorn process is sampled every 50 ms (``VmRSS``); the peak of the worker
   that served also comes from its ``VmHWM`` (reset through ``/proc/<pid>/clear_refs`` before
   the download when allowed);
6. for the breakdown only (no limit): the endpoint's own SQL (``audit.exports.copy_sql``: the
   same COPY with the cells formatted in SQL) read in this process as the baseline is, which
   tells the cost of the formatting from the cost of the web layer.

On a busy machine wall times stretch; the CPU seconds of each process (the PostgreSQL backend
that runs the COPY, the gunicorn worker, this client; read from ``/proc`` when PostgreSQL runs
on this machine) are reported beside them and are steadier.

A ``CHECKPOINT`` runs before each timed part; ``--repeat N`` measures each side N times
(interleaved) and keeps the best rate and first byte, and the highest memory.

The last line is

```
export 77722 rows/s, COPY 139332 rows/s, ratio 0.56, peak memory 77 MB, first byte 0.01 s
```

with ``ratio`` = export rate / COPY rate. Exit status 1 when the ratio is below ``--min-ratio``
(0.5), the serving worker's peak memory reaches ``--max-memory-mb`` (250, in 10^6 bytes) or the
first byte takes ``--max-first-byte`` (1 s) or more; 2 when the benchmark could not run. Figures
go to ``bench/out/export.json``, the gunicorn log to ``bench/out/export-gunicorn.log``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import platform
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.common import (
    OUT,
    ROOT,
    AppServer,
    BenchError,
    Request,
    checkpoint,
    database_label,
    django_setup,
    log,
    manage,
    own_database_url,
    pg_connect,
    require_consent,
    run_main,
    send_all,
    server_version,
    write_json,
)

LIST = "usage"
EXPORT_PATH = f"/audit/{LIST}/export.csv"
USERNAME = "bench-export"
BOM = "\ufeff".encode()
READ_BYTES = 1 << 20  # the client reads the body in pieces of 1 MiB
SAMPLE_SECONDS = 0.05  # the memory of the server's processes is sampled this often
# A filter that selects no row: the warm-up exports go through the whole path, COPY included.
WARM_UP_FILTER = {"enterprise": "bench-export-warm-up"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.export",
        description=(
            "Benchmark the usage CSV export through the web endpoint (gunicorn on 127.0.0.1) against a plain "
            "PostgreSQL COPY ... TO STDOUT WITH CSV of the same rows, on the database DATABASE_URL names. Reads "
            "the usage rows bench.ingest loads; adds a staff user 'bench-export', its session and export "
            "records. Requires --yes or BENCH_OK=1."
        ),
        epilog="Last line: 'export N rows/s, COPY N rows/s, ratio X.XX, peak memory N MB, first byte X.XX s'. "
        "Exit 1 if a limit is missed; 2 if the benchmark could not run.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage rows to export (default 1,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each side this many times, keep the best")
    parser.add_argument("--min-ratio", type=float, default=0.5, help="lowest acceptable export/COPY ratio (0.5)")
    parser.add_argument(
        "--max-memory-mb", type=float, default=250, help="the serving worker's peak memory must stay below (250 MB)"
    )
    parser.add_argument("--max-first-byte", type=float, default=1.0, help="the first body byte must come sooner (1 s)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--out", type=Path, default=OUT / "export.json")
    parser.add_argument("--yes", action="store_true", help="agree to add the bench user and export records")
    args = parser.parse_args(argv)
    for name in ("rows", "workers", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# --- the database ----------------------------------------------------------------------------


def choose_rows(url: str, rows: int) -> tuple[dict[str, str], int]:
    """The list filters that select the rows to export, and the number of usage rows in the
    table: no filter when the table holds ``rows``, else ``date_to`` at the first day (in
    Asia/Shanghai, as the filter reads it) by which ``rows`` rows have started."""
    with pg_connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM coupons_usagerecord").fetchone()[0]
        if total < rows:
            raise BenchError(
                f"the usage table of {database_label(url)} holds {total} rows, {rows} are to be exported; "
                f"load them first: DATABASE_URL=... .venv/bin/python -m bench.ingest --yes --records {rows}"
            )
        if total == rows:
            return {}, total
        days = conn.execute(
            "SELECT day, sum(n) OVER (ORDER BY day) FROM ("
            "  SELECT (started_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS n"
            "  FROM coupons_usagerecord GROUP BY 1) AS per_day ORDER BY day"
        ).fetchall()
    for day, running in days:
        if running >= rows:
            if running == total:
                return {}, total
            return {"date_to": day.isoformat()}, total
    return {}, total


def statements(filters: dict[str, str]) -> tuple[str, str, str]:
    """The baseline COPY, the endpoint's own COPY (``audit.exports.copy_sql``) and the bare SELECT
    both wrap, all from the queryset the endpoint exports with these filters."""
    from django.db import connection
    from django.http import QueryDict

    from audit.exports import copy_sql
    from audit.lists import LISTS, filtered, ordered

    audit_list = LISTS[LIST]
    params = QueryDict(mutable=True)
    params.update(filters)
    queryset, filterset = filtered(audit_list, params)
    if filterset.is_bound and not filterset.is_valid():
        raise BenchError(f"the list rejects the filters {filters}: {filterset.errors.as_json()}")
    queryset = ordered(audit_list, queryset, "")  # as the endpoint without ?sort
    sql, sql_params = queryset.values_list(*audit_list.keys).query.sql_with_params()
    select = connection.ops.compose_sql(sql, sql_params)
    baseline = f"COPY ({select}) TO STDOUT WITH CSV"
    endpoint = copy_sql(audit_list, queryset)
    if select not in endpoint:
        raise BenchError("audit.exports.copy_sql no longer wraps the list's query; the baseline would differ")
    return baseline, endpoint, select


def copy_out(url: str, statement: str) -> dict:
    """Run a ``COPY … TO STDOUT`` and read all of it through psycopg (one row a message), counting
    bytes and rows and discarding the data."""
    with pg_connect(url) as conn, conn.cursor() as cursor:
        backend = conn.info.backend_pid
        size = lines = 0
        backend_cpu, client_cpu = cpu_seconds(backend), time.process_time()
        started = time.perf_counter()
        with cursor.copy(statement) as copy:
            for data in copy:
                size += len(data)
                lines += 1
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        backend_cpu = _delta(cpu_seconds(backend), backend_cpu)
        rowcount = cursor.rowcount
    if rowcount not in (-1, lines):
        raise BenchError(f"COPY reported {rowcount} rows and sent {lines}")
    return {"seconds": seconds, "rows": lines, "bytes": size, "cpu": {"backend": backend_cpu, "client": client_cpu}}


def analyze(url: str) -> None:
    """``VACUUM ANALYZE`` of the tables the export reads (untimed): after bench.ingest's bulk
    load the planner's statistics are stale (it then sorts the whole table before the first row
    instead of walking the primary key backwards); autovacuum keeps them fresh in production."""
    from audit.lists import LISTS

    queryset = LISTS[LIST].queryset()
    model = queryset.model
    tables = [model._meta.db_table]
    for key in LISTS[LIST].keys:
        current = model
        for part in key.split("__")[:-1]:
            current = current._meta.get_field(part).related_model
            tables.append(current._meta.db_table)
    tables = list(dict.fromkeys(tables))
    started = time.perf_counter()
    with pg_connect(url) as conn:
        for table in tables:
            conn.execute(f'VACUUM ANALYZE "{table}"')
    log(f"VACUUM ANALYZE {', '.join(tables)} in {time.perf_counter() - started:.1f}s")


def explain(url: str, select: str) -> list[str]:
    with pg_connect(url) as conn:
        return [row[0] for row in conn.execute(f"EXPLAIN {select}").fetchall()]


# --- the bench user --------------------------------------------------------------------------


def session_cookie() -> str:
    """A staff user in the auditors group (made once) and a fresh session for it, as the
    ``Cookie`` header value: what a browser holds after signing in."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.models import Group

    from enterprises.roles import AUDITORS

    group = Group.objects.filter(name=AUDITORS).first()
    if group is None:
        raise BenchError(f"no {AUDITORS!r} group (manage.py migrate makes it)")
    user, created = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
    user.is_staff = True
    user.is_active = True
    user.save()
    user.groups.add(group)
    user = get_user_model().objects.get(pk=user.pk)  # no cached permissions
    for perm in ("audit.view_workspace", "audit.export_data"):
        if not user.has_perm(perm):
            raise BenchError(f"the {AUDITORS!r} group lacks {perm}; the bench user cannot export")
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = user._meta.pk.value_to_string(user)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def last_export_record() -> dict | None:
    from audit.models import ExportRecord

    record = ExportRecord.objects.filter(actor_label=USERNAME).order_by("-id").first()
    if record is None:
        return None
    return {"id": record.pk, "rows": record.rows, "complete": record.complete, "filters": record.filters}


# --- the server's memory ---------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes ({} when it is gone)."""
    figures = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    key, value = line.split(b":", 1)
                    figures[key.decode()] = int(value.split()[0]) * 1024
    except OSError:
        return {}
    return figures


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of a process (None when it is gone or not on this machine,
    e.g. a PostgreSQL server elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def group_pids(master: int) -> list[int]:
    """The gunicorn master and its workers: every process of its process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == master:  # pgrp
            pids.append(int(entry))
    return sorted(pids)


class MemorySampler(threading.Thread):
    """Samples ``VmRSS`` of the given processes every ``SAMPLE_SECONDS`` and keeps each one's
    peak; ``VmHWM`` is reset first where the kernel lets us (``clear_refs``), so that the
    high-water mark read at the end is the exact peak of the sampled period."""

    def __init__(self, pids: list[int], url: str):
        super().__init__(name="memory-sampler", daemon=True)
        self.pids = pids
        self.url = url
        self.peak = dict.fromkeys(pids, 0)
        self.cpu = {pid: cpu_seconds(pid) for pid in pids}
        self.samples = 0
        self.hwm_reset = True
        self.backend: int | None = None  # the PostgreSQL backend that runs the export's COPY
        self.backend_cpu: float | None = None
        self.done = threading.Event()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                self.hwm_reset = False

    def run(self) -> None:
        with pg_connect(self.url) as conn:
            while True:
                self.sample()
                if self.backend is None:
                    self.find_backend(conn)
                if self.done.wait(SAMPLE_SECONDS):
                    break
        self.sample()

    def find_backend(self, conn) -> None:
        """The backend running the export's COPY, once it shows (its CPU is counted from then)."""
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active' AND query LIKE 'COPY (SELECT %' LIMIT 1"
        ).fetchone()
        if row:
            self.backend, self.backend_cpu = row[0], cpu_seconds(row[0])

    def sample(self) -> None:
        self.samples += 1
        for pid in self.pids:
            rss = _status(pid).get("VmRSS", 0)
            if rss > self.peak[pid]:
                self.peak[pid] = rss

    def stop(self) -> dict[int, dict]:
        self.done.set()
        self.join()
        result = {}
        for pid in self.pids:
            status = _status(pid)
            result[pid] = {
                "rss_peak": self.peak[pid],
                "hwm": status.get("VmHWM", 0) if self.hwm_reset else 0,
                "cpu": _delta(cpu_seconds(pid), self.cpu[pid]),
            }
        if self.backend is not None:
            self.backend_cpu = _delta(cpu_seconds(self.backend), self.backend_cpu)
        return result


# --- the download ----------------------------------------------------------------------------


def download(url: str, port: int, path: str, cookie: str, master: int) -> dict:
    """One export over a fresh connection, read in 1 MiB pieces and discarded, the server's
    memory sampled meanwhile."""
    pids = group_pids(master)
    if len(pids) < 2:
        raise BenchError(f"gunicorn's process group holds {pids}, no worker")
    sampler = MemorySampler(pids, url)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.connect()
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    size = lines = 0
    sampler.start()
    client_cpu = time.process_time()
    try:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookie, "Accept": "text/csv"})
        response = connection.getresponse()
        if response.status != 200:
            body = response.read(2000).decode(errors="replace")
            location = response.getheader("Location", "")
            raise BenchError(f"GET {path} answered {response.status} {location}: {body[:500]}")
        content_type = response.getheader("Content-Type", "")
        if not content_type.startswith("text/csv"):
            raise BenchError(f"GET {path} answered {content_type!r}, not text/csv")
        head = b""
        first_byte = first_row = None
        while first_row is None:  # small reads up to the first byte of the first row
            piece = response.read1(READ_BYTES)
            if not piece:
                break  # no row after the header: the count below tells
            head += piece
            first_byte = first_byte or time.perf_counter() - started
            if len(head) > head.find(b"\n") + 1 > 0:
                first_row = time.perf_counter() - started
        if not head:
            raise BenchError(f"GET {path} answered an empty body")
        size, lines = len(head), head.count(b"\n")
        while True:
            n = response.readinto(view)
            if not n:
                break
            size += n
            lines += buffer.count(b"\n", 0, n)
        seconds = time.perf_counter() - started
        transfer = (
            response.getheader("Transfer-Encoding", "") or f"Content-Length {response.getheader('Content-Length')}"
        )
    finally:
        connection.close()
        client_cpu = time.process_time() - client_cpu
        memory = sampler.stop()
    if not head.startswith(BOM):
        raise BenchError(f"the export does not start with the UTF-8 BOM: {head[:40]!r}")
    workers = {pid: figures for pid, figures in memory.items() if pid != master}
    peak_worker = max(max(figures["rss_peak"], figures["hwm"]) for figures in workers.values())
    return {
        "seconds": seconds,
        "first_byte": first_byte,
        "first_row": first_row,
        "cpu": {
            "backend": sampler.backend_cpu,
            "worker": max((figures["cpu"] or 0) for figures in workers.values()),
            "client": client_cpu,
        },
        "bytes": size,
        "lines": lines,
        "rows": lines - 1,  # the header
        "header": head[len(BOM) : head.find(b"\n")].decode(errors="replace"),
        "transfer": transfer,
        "peak_worker_bytes": peak_worker,
        "master": memory.get(master, {}),
        "workers": {str(pid): figures for pid, figures in workers.items()},
        "samples": sampler.samples,
        "hwm_reset": sampler.hwm_reset,
    }


def warm_up(port: int, cookie: str, workers: int) -> None:
    """Exports of no rows (every worker gets its database connection and runs the export path
    once before the clock starts)."""
    request = Request("GET", f"{EXPORT_PATH}?{urlencode(WARM_UP_FILTER)}", None, {"Cookie": cookie})
    result = send_all(port, [request] * (3 * workers), workers)
    statuses = {response.status for response in result.responses if response is not None}
    if result.errors or statuses != {200}:
        raise BenchError(f"warm-up exports answered {statuses or result.errors} (is the bench user allowed to export?)")


# --- the run ---------------------------------------------------------------------------------


def run(args) -> dict:
    url = own_database_url("bench")
    require_consent(
        args.yes, f"adds a staff user {USERNAME!r}, its session and export records to {database_label(url)}"
    )
    manage(url, "migrate", "--noinput", "-v", "0")
    django_setup(url)
    from django.db import connection

    filters, total = choose_rows(url, args.rows)
    baseline_sql, endpoint_sql, select = statements(filters)
    cookie = session_cookie()
    analyze(url)
    plan = explain(url, select)
    connection.close()
    path = EXPORT_PATH + (f"?{urlencode(filters)}" if filters else "")
    log(f"usage table: {total} rows; exporting {'all of them' if not filters else filters}: GET {path}")

    log("baseline once untimed (warms the cache for both sides) ...")
    warm = copy_out(url, baseline_sql)
    expected = warm["rows"]
    log(f"baseline: {expected} rows, {warm['bytes'] / 1e6:.0f} MB in {warm['seconds']:.2f}s")

    copies, sqls, downloads = [], [], []
    server = AppServer(database_url=url, workers=args.workers, port=args.port, log_path=OUT / "export-gunicorn.log")
    with server:
        warm_up(server.port, cookie, args.workers)
        for attempt in range(1, args.repeat + 1):
            tag = f"[{attempt}/{args.repeat}]"
            checkpoint(url)
            copy = copy_out(url, baseline_sql)
            if copy["rows"] != expected:
                raise BenchError(f"the baseline sent {copy['rows']} rows, {expected} the first time")
            copies.append(copy)
            log(f"{tag} COPY {copy['seconds']:.2f}s = {expected / copy['seconds']:.0f} rows/s")

            checkpoint(url)
            got = download(url, server.port, path, cookie, server.process.pid)
            if got["rows"] != expected:
                raise BenchError(f"the export holds {got['rows']} lines after its header, the baseline {expected} rows")
            record = last_export_record()
            if not record or not record["complete"] or record["rows"] != expected:
                raise BenchError(f"the server's export record says {record}, expected complete with {expected} rows")
            downloads.append(got)
            log(
                f"{tag} export {got['seconds']:.2f}s = {expected / got['seconds']:.0f} rows/s, "
                f"first byte {got['first_byte'] * 1000:.0f} ms, first row {got['first_row'] * 1000:.0f} ms, "
                f"{got['bytes'] / 1e6:.0f} MB, "
                f"worker peak {got['peak_worker_bytes'] / 1e6:.0f} MB"
            )

            checkpoint(url)
            sql = copy_out(url, endpoint_sql)
            if sql["rows"] != expected:
                raise BenchError(f"the endpoint's COPY sent {sql['rows']} rows, the baseline {expected}")
            sqls.append(sql)
            log(f"{tag} the endpoint's SQL alone {sql['seconds']:.2f}s = {expected / sql['seconds']:.0f} rows/s")

    copy_rate = expected / min(c["seconds"] for c in copies)
    export_rate = expected / min(d["seconds"] for d in downloads)
    sql_rate = expected / min(s["seconds"] for s in sqls)
    return {
        "benchmark": "export",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": database_label(url),
        "postgresql": server_version(url),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "table_rows": total,
        "rows_asked": args.rows,
        "rows": expected,
        "filters": filters,
        "path": path,
        "workers": args.workers,
        "repeat": args.repeat,
        "baseline_sql": baseline_sql,
        "endpoint_sql": endpoint_sql,
        "plan": plan,
        "copy": {
            "seconds": [c["seconds"] for c in copies],
            "rate": copy_rate,
            "bytes": copies[0]["bytes"],
            "cpu": [c["cpu"] for c in copies],
        },
        "export": {
            "seconds": [d["seconds"] for d in downloads],
            "rate": export_rate,
            "bytes": downloads[0]["bytes"],
            "first_byte": [d["first_byte"] for d in downloads],
            "first_row": [d["first_row"] for d in downloads],
            "cpu": [d["cpu"] for d in downloads],
            "header": downloads[0]["header"],
            "transfer": downloads[0]["transfer"],
            "downloads": [
                {k: d[k] for k in ("peak_worker_bytes", "master", "workers", "samples", "hwm_reset")} for d in downloads
            ],
        },
        "endpoint_sql_alone": {
            "seconds": [s["seconds"] for s in sqls],
            "rate": sql_rate,
            "bytes": sqls[0]["bytes"],
            "cpu": [s["cpu"] for s in sqls],
        },
        "ratio": export_rate / copy_rate,
        "sql_ratio": sql_rate / copy_rate,
        "peak_memory_bytes": max(d["peak_worker_bytes"] for d in downloads),
        "first_byte": min(d["first_byte"] for d in downloads),
        "first_row": min(d["first_row"] for d in downloads),
        "limits": {
            "min_ratio": args.min_ratio,
            "max_memory_mb": args.max_memory_mb,
            "max_first_byte": args.max_first_byte,
        },
    }


def report(figures: dict) -> int:
    export, copy, ratio = figures["export"]["rate"], figures["copy"]["rate"], figures["ratio"]
    memory_mb = figures["peak_memory_bytes"] / 1e6
    first_byte = figures["first_byte"]
    limits = figures["limits"]
    failures = []
    if ratio < limits["min_ratio"]:
        failures.append(f"the export runs at {ratio:.3f} of the COPY rate, below {limits['min_ratio']:.2f}")
    if memory_mb >= limits["max_memory_mb"]:
        failures.append(
            f"the serving worker peaked at {memory_mb:.0f} MB, the limit is {limits['max_memory_mb']:.0f} MB"
        )
    if first_byte >= limits["max_first_byte"]:
        failures.append(f"the first byte took {first_byte:.2f} s, the limit is {limits['max_first_byte']:.2f} s")
    figures["ok"] = not failures
    figures["failures"] = failures
    write_json(Path(figures.get("out", OUT / "export.json")), figures)
    master = figures["export"]["downloads"][-1]["master"]
    print(
        f"{figures['rows']} usage rows ({'the whole table' if not figures['filters'] else figures['filters']}, "
        f"table {figures['table_rows']}), {figures['workers']} gunicorn workers, {figures['cpus']} CPUs, "
        f"{figures['database']} (PostgreSQL {figures['postgresql']})"
    )
    print(
        f"export: {figures['export']['bytes'] / 1e6:.0f} MB CSV ({figures['export']['transfer']}); "
        f"COPY: {figures['copy']['bytes'] / 1e6:.0f} MB"
    )
    print(
        f"the endpoint's SQL alone (formatting in PostgreSQL, no server): {figures['endpoint_sql_alone']['rate']:.0f} rows/s, "
        f"{figures['sql_ratio']:.2f} of COPY; gunicorn master peak {master.get('rss_peak', 0) / 1e6:.0f} MB"
    )
    print(f"first row after {figures['first_row']:.2f} s; CPU seconds (best-rate runs): {cpu_summary(figures)}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print(
        f"export {export:.0f} rows/s, COPY {copy:.0f} rows/s, ratio {ratio:.2f}, "
        f"peak memory {memory_mb:.0f} MB, first byte {first_byte:.2f} s"
    )
    return 1 if failures else 0


def cpu_summary(figures: dict) -> str:
    """CPU seconds per process of the fastest run of each side: on a busy machine a steadier
    breakdown than wall time."""

    def fastest(side: dict) -> dict:
        return side["cpu"][side["seconds"].index(min(side["seconds"]))]

    def text(cpu: dict) -> str:
        return " + ".join(f"{name} {value:.2f}" for name, value in cpu.items() if value is not None) or "unknown"

    return (
        f"COPY {text(fastest(figures['copy']))}; export {text(fastest(figures['export']))}; "
        f"the endpoint's SQL alone {text(fastest(figures['endpoint_sql_alone']))}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("export", argv, parse_args, run, report)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
