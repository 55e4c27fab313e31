"""Redemption (design.md invariant 4): the subsidy is Σ amount × rate capped by the coupon's
balance and the annual cap; only the coupon's enterprise's unredeemed usage of this provider,
inside the period and the coupon's validity, may back it; related parties, providers off the
whitelist and coupons that are not active are refused; claims are idempotent; a reversal is a
reversing transaction; a claim on a closed month waits for an adjustment.

The coupon (``conftest.coupon``) holds 20,000 yuan; the programme's rate is 0.20, 0.30 for
domestic cards."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from core.audit import audit_trail_for
from core.errors import ValidationFailed
from coupons.ledger_check import check_ledger
from coupons.models import Account, Coupon, LedgerEntry, LedgerTransaction, Program, Redemption, Statement, UsageRecord
from coupons.services.coupons import coupon_freeze, coupon_revoke
from coupons.services.ledger import provider_account
from coupons.services.programs import program_update
from coupons.services.settlement import statement_approve, statement_pay
from enterprises.models import Organisation, Provider
from tests.usage.conftest import (
    REDEMPTIONS,
    SHANGHAI,
    assert_error,
    assert_ledger_ok,
    balance,
    claim,
    claim_body,
    db_state,
    ingest,
    march,
    record,
    where,
)

K = Account.Kind
T = LedgerTransaction.Kind


def post_claim(client, coupon, *, key="key-1", **body):
    return client.post(REDEMPTIONS, claim_body(coupon, **body), format="json", HTTP_IDEMPOTENCY_KEY=key)


def payable(coupon) -> Account:
    return provider_account(coupon.program, coupon.provider, K.PROVIDER_PAYABLE)


def actions(obj) -> list[str]:
    """The audit trail of ``obj``, oldest first."""
    return list(audit_trail_for(obj).order_by("id").values_list("action", flat=True))


def linked(redemption) -> set[str]:
    return set(UsageRecord.objects.filter(redemption=redemption).values_list("record_id", flat=True))


# --- the subsidy --------------------------------------------------------------------------------


def test_the_subsidy_is_the_amount_times_the_rate_with_the_domestic_rate_for_domestic_cards(
    provider, provider_api, organisation, coupon
):
    """GIVEN an A100 record billed 1,000.03 (rate 0.20) and a 910B record billed 1,000.01
    (domestic, 0.30) WHEN the provider claims them THEN the subsidy is 200.006 + 300.003 =
    500.009, rounded down to 500.00, moved from the coupon to the provider's payable account."""
    ingest(
        provider,
        [
            record("a100", enterprise=organisation, gpu_model="A100-80G", amount="1000.03"),
            record("ascend", enterprise=organisation, gpu_model="910B", amount="1000.01"),
        ],
    )

    response = post_claim(provider_api, coupon, records=["a100", "ascend"])

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["metered_amount"], body["subsidy"], body["capped_by"]) == ("2000.04", "500.00", "")
    assert (body["state"], body["statement_month"], body["records"]) == ("posted", "2026-03-01", 2)
    redemption = Redemption.objects.get()
    assert sorted(redemption.lines.values_list("usage_record__record_id", "rate")) == [
        ("a100", Decimal("0.200")),
        ("ascend", Decimal("0.300")),
    ]
    assert linked(redemption) == {"a100", "ascend"}
    assert balance(coupon.account) == Decimal("19500.00")
    assert balance(payable(coupon)) == Decimal("500.00")
    txn = redemption.transaction
    assert txn.kind == T.REDEEM
    assert sorted(txn.entries.values_list("account_id", "amount")) == sorted(
        [(coupon.account_id, Decimal("-500.00")), (payable(coupon).pk, Decimal("500.00"))]
    )
    assert redemption.statement == Statement.objects.get(provider=provider, month=dt.date(2026, 3, 1))
    assert actions(redemption) == ["redemption.post"]
    assert_ledger_ok()


def test_the_subsidy_is_capped_by_the_coupons_balance_and_the_coupon_is_then_exhausted(
    provider, provider_api, organisation, coupon
):
    ingest(provider, [record("big", enterprise=organisation, amount="150000.00")])  # × 0.20 = 30,000

    response = post_claim(provider_api, coupon, records=["big"])

    assert response.status_code == 201, response.content
    assert response.json()["subsidy"] == "20000.00"
    assert "coupon balance" in response.json()["capped_by"]
    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.EXHAUSTED
    assert balance(coupon.account) == 0
    assert actions(coupon)[-1] == "coupon.exhaust"
    assert_ledger_ok()


def test_a_claim_of_exactly_the_balance_exhausts_the_coupon_and_a_further_claim_is_refused(
    provider, provider_api, organisation, coupon
):
    ingest(
        provider,
        [
            record("all", enterprise=organisation, amount="100000.00"),
            record("more", enterprise=organisation, start=march(6)),
        ],
    )

    first = post_claim(provider_api, coupon, records=["all"])
    assert first.status_code == 201, first.content
    assert (first.json()["subsidy"], first.json()["capped_by"]) == ("20000.00", "")
    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.EXHAUSTED
    assert_ledger_ok()
    before = db_state()

    second = post_claim(provider_api, coupon, records=["more"], key="key-2")

    assert_error(second, 422, "redemption_refused")
    assert db_state() == before


def test_the_cap_cannot_be_lowered_below_what_an_enterprise_holds(coupon, officer):
    with pytest.raises(ValidationFailed, match="cannot go below"):
        program_update(program=coupon.program, actor=officer, per_enterprise_cap=Decimal("5000.00"))
    coupon.program.refresh_from_db()
    assert coupon.program.per_enterprise_cap != Decimal("5000.00")


def test_the_subsidy_is_capped_by_the_annual_cap(provider, provider_api, organisation, coupon, officer):
    """GIVEN the per-enterprise cap stands at 5,000 below the coupon's face value (a cap written
    outside the services: program_update refuses it) WHEN the provider claims 10,000 of subsidy
    THEN 5,000 is posted, capped by the annual cap, and the next claim is refused."""
    Program.objects.filter(pk=coupon.program_id).update(per_enterprise_cap=Decimal("5000.00"))
    coupon.program.refresh_from_db()
    ingest(
        provider,
        [
            record("one", enterprise=organisation, amount="50000.00"),
            record("two", enterprise=organisation, start=march(6)),
        ],
    )

    response = post_claim(provider_api, coupon, records=["one"])

    assert response.status_code == 201, response.content
    assert response.json()["subsidy"] == "5000.00"
    assert response.json()["capped_by"] == "annual cap"
    assert balance(coupon.account) == Decimal("15000.00")
    report = check_ledger()
    # The lowered cap is below the coupon's face value, which the cap check reports by design;
    # everything the redemption touched checks out.
    assert {name for name, found in report.checks.items() if found} == {"per-enterprise cap"}
    before = db_state()

    assert_error(post_claim(provider_api, coupon, records=["two"], key="key-2"), 422, "redemption_refused")
    assert db_state() == before


# --- which records may back a claim --------------------------------------------------------------


@pytest.fixture
def mixed_usage(provider, rival, organisation, other_organisation, coupon):
    """Records of March around the coupon: eligible ones and every kind of ineligible one."""
    ingest(
        provider,
        [
            record("ok-1", enterprise=organisation, start=march(5)),
            record("ok-2", enterprise=organisation, start=march(12), amount="500.00"),
            record("late", enterprise=organisation, start=march(20)),
            record("theirs", enterprise=other_organisation, start=march(6)),
            record("early", enterprise=organisation, start=march(1, 20)),  # before the coupon's validity
            record("redeemed", enterprise=organisation, start=march(7)),
        ],
    )
    ingest(rival, [record("rivals", enterprise=organisation, start=march(8))])
    claim(provider, coupon, records=["redeemed"], key="earlier")


FIRST_HALF = (dt.date(2026, 3, 1), dt.date(2026, 3, 15))


@pytest.mark.usefixtures("mixed_usage")
def test_a_claim_by_period_takes_every_eligible_record_and_nothing_else(provider_api, coupon):
    response = post_claim(provider_api, coupon, period=FIRST_HALF)

    assert response.status_code == 201, response.content
    redemption = Redemption.objects.get(pk=response.json()["id"])
    assert linked(redemption) == {"ok-1", "ok-2"}
    assert (response.json()["metered_amount"], response.json()["subsidy"]) == ("1500.00", "300.00")
    assert_ledger_ok()


@pytest.mark.usefixtures("mixed_usage")
def test_each_ineligible_record_of_a_claim_is_reported_by_its_index_and_nothing_is_written(provider_api, coupon):
    before = db_state()

    response = post_claim(
        provider_api,
        coupon,
        period=FIRST_HALF,
        records=["ok-1", "theirs", "rivals", "late", "early", "redeemed", "nonexistent"],
    )

    error = assert_error(response, 400, "validation_failed")
    assert where(error) == {(i, "records") for i in range(1, 7)}
    reasons = {d["index"]: d["reason"] for d in error["details"]}
    assert "another enterprise" in reasons[1]
    assert "no usage record rivals from this provider" in reasons[2]
    assert "outside the period" in reasons[3]
    assert "coupon's validity" in reasons[4]
    assert "already backs redemption" in reasons[5]
    assert "no usage record nonexistent" in reasons[6]
    assert db_state() == before


def test_a_period_without_eligible_usage_is_refused(provider_api, coupon):
    before = db_state()

    assert_error(post_claim(provider_api, coupon), 422, "redemption_refused")
    assert db_state() == before


@pytest.mark.parametrize(
    "period",
    [
        pytest.param((dt.date(2026, 3, 25), dt.date(2026, 4, 2)), id="two months"),
        pytest.param((dt.date(2026, 3, 15), dt.date(2026, 3, 1)), id="ends before it starts"),
    ],
)
def test_a_billing_period_must_lie_within_one_month(provider, provider_api, organisation, coupon, period):
    ingest(provider, [record("job-1", enterprise=organisation, start=march(24))])
    before = db_state()

    error = assert_error(post_claim(provider_api, coupon, period=period), 400, "validation_failed")

    assert where(error) == {(None, "period_end")}
    assert db_state() == before


# --- refusals: related parties, the whitelist, the coupon's state, another provider's coupon -----


@pytest.mark.parametrize("shared", ["bank_account", "contact_phone", "legal_representative"])
def test_a_claim_between_related_parties_is_refused(provider, provider_api, organisation, coupon, shared):
    """GIVEN the provider's registry record shares one identity attribute with the applicant's
    (written with other spacing and case) WHEN the provider claims THEN 422 names it, nothing is written."""
    ingest(provider, [record("job-1", enterprise=organisation)])
    Organisation.objects.filter(pk=provider.organisation_id).update(
        **{shared: f"  {getattr(organisation, shared).upper()} "}
    )
    before = db_state()

    error = assert_error(post_claim(provider_api, coupon), 422, "redemption_refused")

    assert "related parties" in error["message"]
    assert where(error) == {(None, shared)}
    assert db_state() == before


def test_a_provider_taken_off_the_whitelist_cannot_claim(provider, provider_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation)])
    Provider.objects.filter(pk=provider.pk).update(whitelisted=False)
    before = db_state()

    error = assert_error(post_claim(provider_api, coupon), 422, "redemption_refused")

    assert "whitelisted" in error["message"]
    assert db_state() == before


@pytest.mark.parametrize("change", [coupon_freeze, coupon_revoke], ids=["frozen", "revoked"])
def test_a_coupon_that_is_not_active_cannot_be_redeemed(provider, provider_api, organisation, coupon, officer, change):
    ingest(provider, [record("job-1", enterprise=organisation)])
    change(coupon=coupon, actor=officer, reason="suspected fraud")
    before = db_state()

    error = assert_error(post_claim(provider_api, coupon), 422, "redemption_refused")

    assert Coupon.objects.get(pk=coupon.pk).get_state_display() in error["message"]
    assert db_state() == before


def test_a_provider_not_named_by_the_coupon_gets_a_404(rival, rival_api, organisation, coupon):
    ingest(rival, [record("job-1", enterprise=organisation)])
    before = db_state()

    assert_error(post_claim(rival_api, coupon), 404, "not_found")
    assert db_state() == before


# --- idempotency --------------------------------------------------------------------------------


def test_the_same_key_and_body_return_the_same_redemption(provider, provider_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)])
    first = post_claim(provider_api, coupon, records=["job-1", "job-2"])
    assert first.status_code == 201, first.content
    after_first = db_state()

    again = post_claim(provider_api, coupon, records=["job-2", "job-1"])

    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert db_state() == after_first


@pytest.mark.parametrize(
    "other_body",
    [
        pytest.param({"records": ["job-1"]}, id="other records"),
        pytest.param(
            {"records": ["job-1", "job-2"], "period": (dt.date(2026, 3, 1), dt.date(2026, 3, 30))}, id="period"
        ),
        pytest.param({}, id="by period instead of records"),
    ],
)
def test_the_same_key_with_another_body_is_a_conflict(provider, provider_api, organisation, coupon, other_body):
    ingest(provider, [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)])
    assert post_claim(provider_api, coupon, records=["job-1", "job-2"]).status_code == 201
    before = db_state()

    assert_error(post_claim(provider_api, coupon, **other_body), 409, "conflict")
    assert db_state() == before


def test_a_claim_without_an_idempotency_key_is_refused(provider, provider_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation)])
    before = db_state()

    response = provider_api.post(REDEMPTIONS, claim_body(coupon), format="json")

    error = assert_error(response, 400, "validation_failed")
    assert where(error) == {(None, "idempotency_key")}
    assert db_state() == before


# --- reversal -----------------------------------------------------------------------------------


def test_a_reversal_posts_a_reversing_transaction_frees_the_records_and_reactivates_the_coupon(
    provider, provider_api, settler_api, organisation, coupon
):
    ingest(provider, [record("job-1", enterprise=organisation, amount="100000.00")])
    redemption = Redemption.objects.get(pk=post_claim(provider_api, coupon).json()["id"])
    original = list(
        LedgerEntry.objects.filter(transaction=redemption.transaction).values_list("pk", "account", "amount")
    )
    assert Coupon.objects.get(pk=coupon.pk).state == Coupon.State.EXHAUSTED

    response = settler_api.post(f"{REDEMPTIONS}{redemption.pk}/reverse/", {"reason": "billed twice"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "reversed"
    redemption.refresh_from_db()
    assert redemption.reversal.kind == T.REVERSE
    assert redemption.reversal.reverses_id == redemption.transaction_id
    assert sorted(redemption.reversal.entries.values_list("account", "amount")) == sorted(
        (account, -amount) for _pk, account, amount in original
    )
    # The original entries are untouched.
    assert (
        list(LedgerEntry.objects.filter(transaction=redemption.transaction).values_list("pk", "account", "amount"))
        == original
    )
    assert linked(redemption) == set()
    assert redemption.lines.count() == 1  # kept for the record
    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.ACTIVE
    assert balance(coupon.account) == Decimal("20000.00")
    assert balance(payable(coupon)) == 0
    assert actions(redemption) == ["redemption.post", "redemption.reverse"]
    assert actions(coupon)[-1] == "coupon.reactivate"
    assert_ledger_ok()

    again = post_claim(provider_api, coupon, key="key-2")

    assert again.status_code == 201, again.content
    assert linked(Redemption.objects.get(pk=again.json()["id"])) == {"job-1"}
    assert_ledger_ok()


@pytest.mark.parametrize(("who", "status"), [("provider_api", 403), ("reviewer", 403)])
def test_only_staff_with_the_permission_may_reverse(request, provider, provider_api, organisation, coupon, who, status):
    ingest(provider, [record("job-1", enterprise=organisation)])
    redemption_id = post_claim(provider_api, coupon).json()["id"]
    client = provider_api
    if who != "provider_api":
        client = APIClient()
        client.force_login(request.getfixturevalue(who))
    before = db_state()

    assert_error(client.post(f"{REDEMPTIONS}{redemption_id}/reverse/", {"reason": "x"}, format="json"), status)
    assert db_state() == before


def test_a_reversal_needs_a_reason(provider, provider_api, settler_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation)])
    redemption_id = post_claim(provider_api, coupon).json()["id"]
    before = db_state()

    assert_error(settler_api.post(f"{REDEMPTIONS}{redemption_id}/reverse/", {"reason": ""}, format="json"), 400)
    assert db_state() == before


def test_a_reversal_is_refused_once_the_statement_is_paid(
    provider, provider_api, settler, settler_api, organisation, coupon
):
    ingest(provider, [record("job-1", enterprise=organisation)])
    redemption = Redemption.objects.get(pk=post_claim(provider_api, coupon).json()["id"])
    statement_approve(statement=redemption.statement, actor=settler)
    statement_pay(statement=redemption.statement, actor=settler)
    assert_ledger_ok()
    before = db_state()

    response = settler_api.post(f"{REDEMPTIONS}{redemption.pk}/reverse/", {"reason": "too late"}, format="json")

    assert_error(response, 409, "conflict")
    assert db_state() == before


def test_reversing_twice_is_refused(provider, provider_api, settler_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation)])
    redemption_id = post_claim(provider_api, coupon).json()["id"]
    assert settler_api.post(f"{REDEMPTIONS}{redemption_id}/reverse/", {"reason": "x"}, format="json").status_code == 200
    before = db_state()

    assert_error(settler_api.post(f"{REDEMPTIONS}{redemption_id}/reverse/", {"reason": "x"}, format="json"), 409)
    assert db_state() == before


# --- a claim on a closed month ----------------------------------------------------------------


APRIL = dt.datetime(2026, 4, 3, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def closed_march(provider, organisation, coupon, clock, settler):
    """March was claimed and its statement approved on 3 April; then late March usage arrives."""
    ingest(provider, [record("on-time", enterprise=organisation, start=march(5))])
    claim(provider, coupon, key="on-time")
    clock.move_to(APRIL, tick=False)
    statement_approve(statement=Statement.objects.get(provider=provider, month=dt.date(2026, 3, 1)), actor=settler)
    ingest(provider, [record("late", enterprise=organisation, start=march(28), amount="2000.00")])


@pytest.mark.usefixtures("closed_march")
def test_a_claim_for_a_closed_month_waits_for_an_adjustment_without_touching_the_ledger(
    provider_api, organisation, coupon
):
    before = db_state()

    response = post_claim(provider_api, coupon, key="late")

    assert response.status_code == 201, response.content
    assert (response.json()["state"], response.json()["subsidy"]) == ("pending_adjustment", "400.00")
    assert response.json()["statement_month"] is None
    redemption = Redemption.objects.get(pk=response.json()["id"])
    assert redemption.transaction is None
    assert linked(redemption) == {"late"}
    after = db_state()
    for unchanged in ("transactions", "entries", "accounts", "coupons", "statements"):
        assert after[unchanged] == before[unchanged], unchanged
    assert "closed" in audit_trail_for(redemption)[0].reason
    assert_ledger_ok()


@pytest.mark.usefixtures("closed_march")
def test_an_approved_adjustment_posts_on_the_current_months_open_statement(provider, provider_api, settler_api, coupon):
    redemption_id = post_claim(provider_api, coupon, key="late").json()["id"]

    response = settler_api.post(
        f"{REDEMPTIONS}{redemption_id}/approve-adjustment/", {"reason": "usage reported late"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["statement_month"]) == ("posted", "2026-04-01")
    redemption = Redemption.objects.get(pk=redemption_id)
    assert redemption.transaction.kind == T.REDEEM
    assert Statement.objects.get(provider=provider, month=dt.date(2026, 4, 1)).state == Statement.State.OPEN
    assert balance(coupon.account) == Decimal("20000.00") - Decimal("200.00") - Decimal("400.00")
    assert actions(redemption) == ["redemption.claim", "redemption.post"]
    assert_ledger_ok()
    before = db_state()

    again = settler_api.post(f"{REDEMPTIONS}{redemption_id}/approve-adjustment/", {"reason": "x"}, format="json")

    assert_error(again, 409, "conflict")
    assert db_state() == before


@pytest.mark.usefixtures("closed_march")
def test_a_claim_awaiting_adjustment_can_be_refused_and_its_records_are_free_again(provider_api, settler_api, coupon):
    redemption_id = post_claim(provider_api, coupon, key="late").json()["id"]

    response = settler_api.post(f"{REDEMPTIONS}{redemption_id}/reverse/", {"reason": "not ours"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "refused"
    assert UsageRecord.objects.get(record_id="late").redemption is None
    assert_ledger_ok()


def test_a_provider_cannot_approve_its_own_adjustment(provider, provider_api, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation)])
    redemption_id = post_claim(provider_api, coupon).json()["id"]
    before = db_state()

    response = provider_api.post(f"{REDEMPTIONS}{redemption_id}/approve-adjustment/", {"reason": "x"}, format="json")

    assert_error(response, 403)
    assert db_state() == before
