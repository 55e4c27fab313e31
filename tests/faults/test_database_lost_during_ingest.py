"""PostgreSQL lost in the middle of a provider's usage batch (``POST /api/v1/usage/``, stored
with ``COPY``): the provider is answered 503 in the one error shape, nothing of the batch is
stored, and its retry stores every record once (and a second retry is a replay).

The connection is ended with ``pg_terminate_backend``, which is what a restart (``pg_ctlcluster
restart``, fast shutdown) or a failover does to each backend ("terminating connection due to
administrator command"); restarting the real server would also end this test suite's own
connections, so that is done once by ``tests/faults/restart_postgres.py`` (README). To end the
ingesting connection in the middle of its COPY and not before or after it, this test holds one
record of the batch in a transaction of its own (the same provider and record id, not yet
committed): the COPY writes the records before it and then waits on the unique index for that
one; it is terminated while waiting, with thousands of rows of its batch written and
uncommitted.

Before the fix the provider got a 500 ``server_error`` ("the server failed"), which says
neither that the database was away nor that a retry is expected: ``core/api.py`` let the
database's ``OperationalError`` through as a server error. The mid-COPY test needs PostgreSQL (a
request thread with a connection of its own: ``transaction=True``); the handler's tests at the
end run everywhere.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, ProgrammingError, connection, connections, transaction
from django.test import Client
from rest_framework.views import APIView

from coupons.models import UsageBatch, UsageRecord
from enterprises.models import Provider
from enterprises.services import provider_key_create
from fixtures.demo.generator import USAGE_COLUMNS
from tests import factories
from tests.faults.workers import wait_for
from tests.faults.world import as_csv, busiest_provider_usage, hold_record

USAGE = "/api/v1/usage/"
BATCH = 10_000  # the API's largest batch
HELD = 6_000  # the record the COPY waits for: the 6,000 before it are written when it is ended


@pytest.fixture
def a_big_batch():
    """The provider with the most usage in a demo world, its API key, and its first 10,000
    usage records as CSV."""
    uscc, records = busiest_provider_usage()
    assert len(records) >= BATCH
    provider = Provider.objects.get(organisation__uscc=uscc)
    key = provider_key_create(provider=provider).raw_key
    return provider, key, records[:BATCH], as_csv(USAGE_COLUMNS, records[:BATCH])


def post_usage(key: str, body: bytes):
    client = Client(raise_request_exception=False)  # a server error is answered, as in production
    return client.post(USAGE, data=body, content_type="text/csv", HTTP_AUTHORIZATION=f"Api-Key {key}")


def waiting_copy() -> int | None:
    """The backend whose COPY into the usage table waits for a lock."""
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL shows the activity it saw first, unless told to look again.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'COPY coupons_usagerecord%%' AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
        return row[0] if row else None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_database_lost_mid_copy_answers_503_stores_nothing_and_the_retry_counts_each_record_once(a_big_batch):
    provider, key, records, body = a_big_batch
    answer = {}

    def provider_request() -> None:
        try:
            answer["response"] = post_usage(key, body)
        finally:
            connections.close_all()

    request = threading.Thread(target=provider_request)
    with transaction.atomic():
        hold_record(provider, records[HELD])
        started = time.monotonic()
        request.start()
        copying = wait_for(lambda: waiting_copy() is not None or not request.is_alive(), seconds=60, interval=0.02)
        assert copying and request.is_alive(), f"the COPY never started: {answer}"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [waiting_copy()])
        request.join(30)
        assert not request.is_alive(), "the request hangs after its database connection was ended"
        transaction.set_rollback(True)  # the held record goes too

    response = answer["response"]
    print(f"connection ended mid-COPY: {response.status_code} {response.content[:200]!r}")
    print(f"answered {time.monotonic() - started:.1f}s after the request was sent")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"] and error["details"] == []
    assert int(response["Retry-After"]) > 0
    assert UsageRecord.objects.count() == 0
    assert UsageBatch.objects.count() == 0

    retry = post_usage(key, body)

    assert retry.status_code in (200, 201), retry.content[:500]
    assert retry.json()["created"] == BATCH
    assert retry.json()["duplicates"] == 0
    assert UsageRecord.objects.filter(provider=provider).count() == BATCH
    assert UsageRecord.objects.values("record_id").distinct().count() == BATCH

    again = post_usage(key, body)

    assert again.status_code in (200, 201)
    assert again.json()["replayed"] is True
    assert UsageRecord.objects.count() == BATCH
    assert UsageBatch.objects.count() == 1


# --- the handler, on any database ---------------------------------------------------------------


def lost_connection() -> OperationalError:
    """What Django raises when the server went away between two queries (no SQLSTATE)."""
    try:
        raise ConnectionResetError("server closed the connection unexpectedly")
    except ConnectionResetError as cause:
        error = OperationalError("server closed the connection unexpectedly")
        error.__cause__ = cause
        return error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (lost_connection(), 503),
        (OperationalError("database is locked"), 503),  # SQLite's busy database
        (ProgrammingError("relation does not exist"), 500),  # a bug stays a server error
    ],
)
def test_a_database_error_in_the_api_is_a_503_to_retry_only_when_the_database_is_away(monkeypatch, error, status):
    key = provider_key_create(provider=factories.make_provider()).raw_key

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(APIView, "initial", fail)
    response = Client(raise_request_exception=False).get(USAGE, HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert response.status_code == status
    if status == 503:
        assert response.json() == {
            "error": {
                "code": "database_unavailable",
                "message": "The database is unavailable; try again shortly.",
                "details": [],
            }
        }
        assert response["Retry-After"] == "10"
