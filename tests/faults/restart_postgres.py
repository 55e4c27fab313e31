"""PostgreSQL really restarted in the middle of a provider's usage batch: the batch's request
is answered 503 (the one error shape), the provider's retry stores every record once, a second
retry is a replay. The pytest version (``test_database_lost_during_ingest.py``) ends only the
ingesting connection; this one restarts the server, which also ends every other connection on
it (other test runs included), so it is run by hand, as root, on a machine of one's own:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/faults .venv/bin/python -m tests.faults.restart_postgres

What it does: migrates the database DATABASE_URL names (created when missing; its usage,
batches and API keys are wiped) and loads a demo world without usage; starts gunicorn on a free
port (2 workers, production-like persistent connections: ``DB_CONN_MAX_AGE=60``); sends one
provider's 10,000 records as CSV to ``POST /api/v1/usage/``; holds one record of the batch in a
transaction of its own so that the batch's COPY waits mid-stream (6,000 rows written) and
restarts the cluster (``pg_ctlcluster <version> main restart``, fast shutdown) while it waits; then
retries the same batch as a provider would (every second, for up to 90 s) until it is answered
with anything but a 503 or a refused connection; and checks the database. The last line is

    restart: first answer 503 database_unavailable, 3 retries over 4.1 s, stored 10000 of 10000 once, replay ok: PASS

Exit status 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BATCH = 10_000
HELD = 6_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, key: str, body: bytes, timeout: float = 60) -> tuple[int, dict, dict]:
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 of our own server
        url, data=body, method="POST", headers={"Content-Type": "text/csv", "Authorization": f"Api-Key {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        content = error.read()
        try:
            payload = json.loads(content)
        except ValueError:
            payload = {"raw": content[:300].decode(errors="replace")}
        return error.code, payload, dict(error.headers)


def cluster_version() -> str:
    return sorted(os.listdir("/etc/postgresql"), key=float)[-1]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["CELERY_BROKER_URL"] = ""  # tasks in-process; no rescore on usage
    os.environ["FRAUD_RESCORE_ON_USAGE"] = "false"
    os.environ.setdefault("DEBUG", "false")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql://") or url.rsplit("/", 1)[-1] in ("postgres", "template0", "template1"):
        print("set DATABASE_URL=postgresql://…/<a database of its own>", file=sys.stderr)
        return 2
    name = url.rsplit("/", 1)[-1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    exists = subprocess.run(  # noqa: S603
        ["psql", admin, "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S607, S608 - the operator's own URL
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not exists:
        subprocess.run(["psql", admin, "-c", f'CREATE DATABASE "{name}"'], check=True)  # noqa: S603, S607

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from coupons.models import UsageBatch, UsageRecord
    from enterprises.models import Provider, ProviderApiKey
    from enterprises.services import provider_key_create
    from fixtures.demo.generator import USAGE_COLUMNS
    from tests.faults.world import as_csv, busiest_provider_usage

    UsageRecord.objects.all().delete()
    UsageBatch.objects.all().delete()
    ProviderApiKey.objects.all().delete()
    uscc, records = busiest_provider_usage()
    records = records[:BATCH]
    body = as_csv(USAGE_COLUMNS, records)
    provider = Provider.objects.get(organisation__uscc=uscc)
    key = provider_key_create(provider=provider).raw_key

    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "DB_CONN_MAX_AGE": "60", "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"},
    )
    endpoint = f"http://127.0.0.1:{port}/api/v1/usage/"
    try:
        return run(endpoint, port, key, body, provider, records)
    finally:
        server.terminate()
        server.wait(20)


def run(endpoint: str, port: int, key: str, body: bytes, provider, records: list[dict]) -> int:
    from django.db import connection, transaction

    from coupons.models import UsageBatch, UsageRecord
    from tests.faults.world import hold_record

    restarted_at = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        first: dict = {}
        sender = threading.Thread(target=lambda: first.update(answer=post(endpoint, key, body)))
        with transaction.atomic():
            hold_record(provider, records[HELD])
            sender.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_stat_clear_snapshot()")
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE 'COPY coupons_usagerecord%%' AND wait_event_type = 'Lock'"
                    )
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.02)
            else:
                print("the COPY never started", file=sys.stderr)
                return 1
            restarted_at = time.monotonic()
            restart = subprocess.run(  # noqa: S603
                ["pg_ctlcluster", cluster_version(), "main", "restart", "--mode", "fast"],  # noqa: S607
                capture_output=True,
                text=True,
            )
            print(f"pg_ctlcluster restart: exit {restart.returncode} in {time.monotonic() - restarted_at:.1f}s")
            sender.join(60)
            try:
                transaction.set_rollback(True)
            except Exception:  # noqa: S110 - the connection is gone with the restart
                pass
    except Exception as error:  # the script's own connection ends with the restart
        if restarted_at is None:
            raise
        print(f"the script's own connection ended with the restart: {type(error).__name__}")
    try:
        connection.close()
    except Exception:  # noqa: S110
        pass
    if "answer" not in first:
        print("restart: the batch's request was never answered: FAIL")
        return 1
    status, payload, headers = first["answer"]
    print(f"first answer: {status} {payload} Retry-After={headers.get('Retry-After')}")
    retries, answers, retry_status, retry_payload = 0, [], None, {}
    started = time.monotonic()
    while time.monotonic() - started < 90:
        retries += 1
        try:
            retry_status, retry_payload, _ = post(endpoint, key, body)
        except OSError as error:
            answers.append(f"{type(error).__name__}")
            time.sleep(1)
            continue
        answers.append(str(retry_status))
        if retry_status != 503:
            break
        time.sleep(1)
    took = time.monotonic() - started
    print(f"retries: {' '.join(answers)} over {took:.1f}s; last: {retry_status} {retry_payload}")
    again_status, again, _ = post(endpoint, key, body)
    stored = UsageRecord.objects.filter(provider=provider).count()
    distinct = UsageRecord.objects.filter(provider=provider).values("record_id").distinct().count()
    batches = UsageBatch.objects.filter(provider=provider).count()
    ok = (
        status == 503
        and payload.get("error", {}).get("code") == "database_unavailable"
        and retry_status in (200, 201)
        and retry_payload.get("created") == BATCH
        and stored == distinct == BATCH
        and batches == 1
        and again_status in (200, 201)
        and again.get("replayed") is True
    )
    code = payload.get("error", {}).get("code", "")
    print(
        f"restart: first answer {status} {code}, {retries} retries over {took:.1f} s, "
        f"stored {stored} of {BATCH} {'once' if stored == distinct and batches == 1 else 'NOT once'}, "
        f"replay {'ok' if again.get('replayed') else 'not ok'}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
