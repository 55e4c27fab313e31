"""A provider key acts for its provider only: another provider's usage records, coupons and
redemptions are invisible to it (404) and cannot be claimed against, and nothing changes."""

from __future__ import annotations

import pytest

from coupons.models import Redemption
from coupons.services.review import review_approve
from tests.coupons.conftest import make_application
from tests.usage.conftest import (
    APPROVED_AT,
    NOW,
    REDEMPTIONS,
    USAGE,
    assert_error,
    claim,
    claim_body,
    db_state,
    ingest,
    record,
)


@pytest.fixture
def rivals_coupon(clock, organisation, rival, program, reviewer):
    """The same enterprise holds a coupon naming the rival provider too."""
    clock.move_to(APPROVED_AT, tick=False)
    application = make_application(organisation=organisation, provider=rival, program=program)
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(NOW, tick=False)
    return coupon


@pytest.fixture
def mine(provider, organisation, coupon):
    """The provider's record and redemption."""
    ingest(provider, [record("mine-1", enterprise=organisation), record("mine-2", enterprise=organisation)])
    return claim(provider, coupon, records=["mine-1"])


def post_claim(client, coupon, key="rival-key", **body):
    return client.post(REDEMPTIONS, claim_body(coupon, **body), format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_another_providers_records_are_not_listed_and_are_a_404(mine, rival_api, provider_api):
    record_pk = mine.usage_records.get().pk

    assert rival_api.get(USAGE).json()["results"] == []
    assert rival_api.get(USAGE, {"provider": mine.provider.organisation.uscc}).json()["results"] == []
    assert_error(rival_api.get(f"{USAGE}{record_pk}/"), 404)
    assert provider_api.get(f"{USAGE}{record_pk}/").status_code == 200


def test_another_providers_redemptions_are_not_listed_and_are_a_404(mine, rival_api, provider_api):
    assert rival_api.get(REDEMPTIONS).json()["results"] == []
    assert_error(rival_api.get(f"{REDEMPTIONS}{mine.pk}/"), 404)
    assert provider_api.get(f"{REDEMPTIONS}{mine.pk}/").json()["id"] == mine.pk


def test_another_providers_coupon_is_a_404(mine, rival_api, provider_api, coupon):
    assert_error(rival_api.get(f"/api/v1/coupons/{coupon.code}/"), 404)
    assert provider_api.get(f"/api/v1/coupons/{coupon.code}/").status_code == 200


@pytest.mark.parametrize("records", [None, ["mine-2"]], ids=["by period", "by record"])
def test_a_provider_cannot_claim_against_another_providers_coupon(
    mine, rival, rival_api, organisation, coupon, records
):
    """The rival even has usage of its own for the enterprise in the period."""
    ingest(rival, [record("rivals-1", enterprise=organisation)])
    before = db_state()

    assert_error(post_claim(rival_api, coupon, records=records), 404, "not_found")
    assert db_state() == before


def test_a_provider_cannot_claim_another_providers_records_on_its_own_coupon(mine, rival, rival_api, rivals_coupon):
    """Record ids are the provider's own namespace: the rival's claim of ``mine-2`` finds no
    such record of its own; the error names the index and the provider's record stays free."""
    before = db_state()

    response = post_claim(rival_api, rivals_coupon, records=["mine-2"])

    error = assert_error(response, 400, "validation_failed")
    assert [(d["index"], d["field"]) for d in error["details"]] == [(0, "records")]
    assert "from this provider" in error["details"][0]["reason"]
    assert db_state() == before


def test_a_claim_by_period_on_its_own_coupon_never_takes_another_providers_records(
    mine, rival, rival_api, organisation, rivals_coupon
):
    ingest(rival, [record("rivals-1", enterprise=organisation, amount="10.00")])

    response = post_claim(rival_api, rivals_coupon)

    assert response.status_code == 201, response.content
    redemption = Redemption.objects.get(pk=response.json()["id"])
    assert list(redemption.usage_records.values_list("record_id", flat=True)) == ["rivals-1"]
    assert redemption.usage_records.get().provider == rival


def test_a_provider_key_cannot_reverse_or_approve_anything(mine, rival_api, provider_api):
    before = db_state()

    for client in (rival_api, provider_api):
        assert_error(client.post(f"{REDEMPTIONS}{mine.pk}/reverse/", {"reason": "x"}, format="json"), 403)
        assert_error(client.post(f"{REDEMPTIONS}{mine.pk}/approve-adjustment/", {"reason": "x"}, format="json"), 403)
    assert db_state() == before
