"""Query-count guards: list pages and list endpoints cost the same number of queries whatever
the number of rows (no query per row)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coupons.models import Application
from coupons.services.review import review_approve
from tests import factories
from tests.coupons.conftest import make_application

PROVIDERS = 3  # the same providers whatever the number of rows (see the provider-filter test)


@pytest.fixture
def grow(organisation, program):
    """``grow(n)``: make the organisation's applications (and other organisations' ones) up to
    ``n`` submitted ones, spread over a fixed set of providers and several card models."""
    providers = [factories.make_provider() for _ in range(PROVIDERS)]
    cards = ["NVIDIA A100 80GB", "NVIDIA H800", "Huawei Ascend 910B (variant unspecified)"]
    made = []

    def grow_to(n: int) -> None:
        while len(made) < n:
            i = len(made)
            owner_org = organisation if i % 2 == 0 else factories.make_organisation()
            draft = make_application(
                organisation=owner_org,
                provider=providers[i % PROVIDERS],
                program=program,
                accelerator_name=cards[i % len(cards)],
                submit=False,
            )
            # Straight to "submitted": the rule against two open applications to one provider
            # is not what this module is about.
            Application.objects.filter(pk=draft.pk).update(
                status=Application.Status.SUBMITTED, submitted_at=timezone.now(), risk_score=i % 100, risk_band="low"
            )
            made.append(draft)

    return grow_to


def count_queries(client, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(context.captured_queries), response


def assert_constant(client, grow, url: str, *, rows_at_3: int, rows_at_30: int, ceiling: int) -> None:
    grow(3)
    few, response = count_queries(client, url)
    assert rows(response) == rows_at_3
    grow(30)
    many, response = count_queries(client, url)
    assert rows(response) == rows_at_30
    assert many == few, f"{few} queries for 3 rows but {many} for 30"
    assert many <= ceiling


def rows(response) -> int:
    if response.get("Content-Type", "").startswith("application/json"):
        return len(response.json()["results"])
    for name in ("cl", "applications", "coupons"):
        if response.context and name in response.context:
            value = response.context[name]
            return len(value.result_list) if name == "cl" else len(value)
    raise AssertionError("no rows in the response")


def test_the_admin_review_queue(client, reviewer, grow):
    client.force_login(reviewer)

    assert_constant(client, grow, "/admin/coupons/application/", rows_at_3=3, rows_at_30=30, ceiling=20)


def test_the_applications_endpoint_for_an_officer(client, officer, grow):
    client.force_login(officer)

    assert_constant(client, grow, "/api/v1/applications/", rows_at_3=3, rows_at_30=30, ceiling=10)


def test_the_applications_endpoint_for_the_owner(client, owner, grow):
    client.force_login(owner)

    assert_constant(client, grow, "/api/v1/applications/", rows_at_3=2, rows_at_30=15, ceiling=10)


def test_the_portal_applications_page(client, owner, grow):
    client.force_login(owner)

    assert_constant(client, grow, "/portal/applications/", rows_at_3=2, rows_at_30=15, ceiling=10)


def approve_all(reviewer) -> None:
    for application in Application.objects.filter(status=Application.Status.SUBMITTED, coupon__isnull=True):
        review_approve(application=application, reviewer=reviewer, amount=application.claimed_amount / 100)


def test_the_coupons_endpoint_and_page(client, owner, officer, reviewer, grow):
    grow(3)
    approve_all(reviewer)
    client.force_login(officer)
    few_api, _ = count_queries(client, "/api/v1/coupons/")
    client.force_login(owner)
    few_page, _ = count_queries(client, "/portal/coupons/")

    grow(30)
    approve_all(reviewer)
    client.force_login(officer)
    many_api, response = count_queries(client, "/api/v1/coupons/")
    assert rows(response) == 30
    client.force_login(owner)
    many_page, response = count_queries(client, "/portal/coupons/")
    assert rows(response) == 15

    assert (many_api, many_page) == (few_api, few_page)


def test_the_admin_review_queue_is_bounded(client, reviewer, grow, django_assert_max_num_queries):
    grow(30)
    client.force_login(reviewer)

    with django_assert_max_num_queries(20):
        assert client.get("/admin/coupons/application/").status_code == 200


def test_the_admin_review_queue_does_not_grow_with_the_number_of_providers(client, reviewer, grow):
    grow(3)
    client.force_login(reviewer)
    few, _ = count_queries(client, "/admin/coupons/application/")

    for _ in range(10):
        factories.make_provider()
    many, _ = count_queries(client, "/admin/coupons/application/")

    assert many == few
