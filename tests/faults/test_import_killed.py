"""An import killed with SIGKILL half-way through its write: nothing of it is stored, and
running it again imports every row once.

Imports are no Celery tasks: ``manage.py import_*`` and the admin's **Import CSV** run them in
the process that reads the file (``core.csvimport.CsvImport.run``; usage through
``coupons.services.usage.usage_ingest``), each in one transaction. So the process killed here is
the command's own, at the moment its rows are in the table's pages but not committed (the
table's size on disk has grown). PostgreSQL rolls the transaction back when the connection
drops. Needs PostgreSQL (a second process writes to the test database: ``transaction=True``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from core.models import AuditEntry, ImportRun
from coupons.models import UsageBatch, UsageRecord
from enterprises.models import Organisation, Provider
from fixtures.demo.generator import USAGE_COLUMNS
from tests.faults.workers import ROOT, database_url, wait_for
from tests.faults.world import as_csv, busiest_provider_usage, demo_data, registry_csv

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def manage(*args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": "",
        "FRAUD_RESCORE_ON_USAGE": "false",
        "DEBUG": "false",
    }
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def table_bytes(table: str) -> int:
    """Pages on disk, committed or not: grows while an uncommitted transaction writes rows."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [table])
        return cursor.fetchone()[0]


def kill_mid_write(process: subprocess.Popen, table: str, grown_by: int) -> float:
    """SIGKILL the command's process group once ``table`` has grown by ``grown_by`` bytes
    (its rows are being written); return when that happened, seconds after the start."""
    started = time.monotonic()
    before = table_bytes(table)
    writing = wait_for(lambda: table_bytes(table) - before >= grown_by or process.poll() is not None, seconds=120)
    assert writing and process.poll() is None, f"the command ended before it was killed: {process.communicate()}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    return time.monotonic() - started


def no_backend_left() -> bool:
    """PostgreSQL noticed the dead client and rolled its transaction back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL"
        )
        return cursor.fetchone()[0] == 0


def run_to_the_end(*args: str) -> str:
    process = manage(*args)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    return out


def test_import_registry_killed_mid_write_stores_nothing_and_the_rerun_imports_each_row_once(tmp_path):
    data = demo_data(12000, usage_per_application=1)
    path = tmp_path / "registry.csv"
    path.write_bytes(registry_csv(data))
    rows = len(data.registry)
    audit_before = AuditEntry.objects.count()

    seconds = kill_mid_write(manage("import_registry", str(path)), "enterprises_organisation", grown_by=256 * 1024)
    assert wait_for(no_backend_left, seconds=30)

    print(f"import_registry of {rows} rows killed {seconds:.1f}s in, mid-write")
    assert Organisation.objects.count() == 0
    assert ImportRun.objects.count() == 0
    assert AuditEntry.objects.count() == audit_before

    out = run_to_the_end("import_registry", str(path))

    print(f"rerun: {out.strip()}")
    assert f"{rows} created" in out.replace(",", "")
    assert Organisation.objects.count() == rows
    assert Organisation.objects.values("uscc").distinct().count() == rows
    assert list(ImportRun.objects.values_list("kind", "created")) == [("registry", rows)]


def test_import_usage_killed_mid_copy_stores_nothing_and_the_rerun_counts_each_record_once(tmp_path):
    uscc, records = busiest_provider_usage()
    path = tmp_path / "usage.csv"
    path.write_bytes(as_csv(USAGE_COLUMNS, records))
    provider = Provider.objects.get(organisation__uscc=uscc)

    seconds = kill_mid_write(
        manage("import_usage", "--provider", uscc, str(path)), "coupons_usagerecord", grown_by=512 * 1024
    )
    assert wait_for(no_backend_left, seconds=30)

    print(f"import_usage of {len(records)} records killed {seconds:.1f}s in, mid-COPY")
    assert UsageRecord.objects.count() == 0
    assert UsageBatch.objects.count() == 0

    out = run_to_the_end("import_usage", "--provider", uscc, str(path))

    print(f"rerun: {out.strip()}")
    assert f"{len(records)} records: {len(records)} created, 0 already stored" in out
    assert UsageRecord.objects.filter(provider=provider).count() == len(records)
    assert list(UsageBatch.objects.values_list("records", "created", "duplicates")) == [(len(records), len(records), 0)]
    again = run_to_the_end("import_usage", "--provider", uscc, str(path))
    assert "(replay of an earlier import)" in again
    assert UsageRecord.objects.count() == len(records)
