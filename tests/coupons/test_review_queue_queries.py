"""The review queue (``/admin/coupons/application/``) under its filters and column sorts: the
same number of queries whatever the number of rows, the queue's order, and (on PostgreSQL) that
order read from its index rather than sorted (``application_review_queue_idx``, migration 0009).
The default page's query count is guarded in ``test_queries.py``."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coupons.models import Application
from tests import factories
from tests.coupons import test_queries
from tests.coupons.conftest import make_application, set_status
from tests.coupons.test_queries import count_queries, rows

grow = test_queries.grow  # the fixture: submitted applications over a fixed set of providers

QUEUE = "/admin/coupons/application/"


@pytest.mark.parametrize(
    "query",
    [
        "?queue=all",
        "?band=low",
        "?status__exact=submitted&o=-2",  # the risk column, lowest first
        "?o=5.-9",  # by provider, then newest first
        "?organisation__industry__digital_core__exact=1&queue=all",
    ],
)
def test_a_filtered_or_sorted_queue_costs_the_same_queries_for_3_and_30_rows(client, reviewer, grow, query):
    client.force_login(reviewer)

    grow(3)
    few, response = count_queries(client, QUEUE + query)
    assert rows(response) == 3
    grow(30)
    many, response = count_queries(client, QUEUE + query)
    assert rows(response) == 30

    assert many == few, f"{few} queries for 3 rows but {many} for 30 ({query})"


def test_a_programme_filter_shows_only_its_rows_in_the_same_queries(client, reviewer, grow, program):
    client.force_login(reviewer)
    grow(3)
    few, response = count_queries(client, f"{QUEUE}?program__id__exact={program.pk}")
    assert rows(response) == 3

    grow(30)
    many, response = count_queries(client, f"{QUEUE}?program__id__exact={program.pk}")

    assert rows(response) == 30
    assert many == few


@pytest.fixture
def queue(organisation, provider, program):
    """Four waiting applications: two scored 90 (submitted a day apart), one 10, one not scored
    yet; and a decided one, which is not in the queue."""
    now = timezone.now()

    def waiting(score, band, days_ago):
        application = make_application(
            organisation=factories.make_organisation(), provider=provider, program=program, submit=False
        )
        return set_status(
            application,
            Application.Status.SUBMITTED,
            risk_score=score,
            risk_band=band,
            submitted_at=now - dt.timedelta(days=days_ago),
        )

    made = {
        "unscored": waiting(None, "", 9),
        "low": waiting(10, "low", 8),
        "high_newer": waiting(90, "high", 1),
        "high_older": waiting(90, "high", 2),
    }
    decided = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    made["rejected"] = set_status(decided, Application.Status.REJECTED, risk_score=99, risk_band="high")
    return made


def test_the_queue_lists_the_highest_risk_first_then_the_oldest_and_the_unscored_last(client, reviewer, queue):
    client.force_login(reviewer)

    response = client.get(QUEUE)

    listed = [application.reference for application in response.context["cl"].result_list]
    expected = [queue[name].reference for name in ("high_older", "high_newer", "low", "unscored")]
    assert listed == expected
    page = response.content.decode()
    assert '<b style="color:#b42318">90</b> high' in page  # the risk column: score, coloured band
    assert queue["rejected"].reference not in page


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["", "?queue=all", "?status__exact=approved", "?band=high&queue=all"])
def test_the_queue_order_is_read_from_its_index_not_sorted(client, reviewer, queue, query):
    """GIVEN the planner forbidden to scan the table or to sort (where it has another way)
    WHEN the queue's page query is explained
    THEN it walks application_review_queue_idx and sorts nothing: the index has the queue's
    order, NULLS LAST included (an index that differed in any column would need a Sort)."""
    client.force_login(reviewer)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(QUEUE + query).status_code == 200
    page_query = next(
        q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "coupons_application"."id"')
    )

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {page_query}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "application_review_queue_idx" in plan, plan
    assert "Sort" not in plan, plan
