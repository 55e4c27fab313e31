"""Expiry (frozen time): past its validity an active or frozen coupon expires and its unspent
balance returns to the programme budget (returned amount, an EXPIRE transaction, an audit
entry); running it again changes nothing more; an exhausted coupon is left alone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.audit import audit_trail_for
from coupons.models import Account, Coupon, LedgerTransaction
from coupons.services.coupons import coupon_freeze, coupons_expire_due
from coupons.services.ledger import program_account
from coupons.services.review import review_approve
from coupons.tasks import expire_coupons
from tests.coupons.conftest import make_application
from tests.usage.conftest import assert_ledger_ok, balance, claim, db_state, ingest, record

T = LedgerTransaction.Kind


@pytest.fixture
def spent(provider, organisation, coupon):
    """The coupon after one redemption of 200.00: 19,800.00 left."""
    ingest(provider, [record("job-1", enterprise=organisation, amount="1000.00")])
    claim(provider, coupon)
    return coupon


def expiries(coupon) -> list:
    return list(LedgerTransaction.objects.filter(kind=T.EXPIRE, subject=f"coupon:{coupon.code}"))


def test_a_coupon_is_valid_up_to_its_last_moment(clock, spent):
    clock.move_to(spent.valid_until - dt.timedelta(seconds=1), tick=False)
    before = db_state()

    assert expire_coupons.delay().get() == "expired 0"
    assert db_state() == before


def test_past_its_validity_the_unspent_balance_returns_to_the_budget(clock, spent):
    budget = program_account(spent.program, Account.Kind.BUDGET)
    budget_before = balance(budget)
    clock.move_to(spent.valid_until + dt.timedelta(minutes=1), tick=False)

    assert expire_coupons.delay().get() == "expired 1"

    spent.refresh_from_db()
    assert spent.state == Coupon.State.EXPIRED
    assert spent.returned_amount == Decimal("19800.00")
    assert balance(spent.account) == 0
    assert balance(budget) == budget_before + Decimal("19800.00")
    (txn,) = expiries(spent)
    assert sorted(txn.entries.values_list("account_id", "amount")) == sorted(
        [(spent.account_id, Decimal("-19800.00")), (budget.pk, Decimal("19800.00"))]
    )
    entry = audit_trail_for(spent).first()
    assert (entry.action, entry.from_state, entry.to_state) == ("coupon.expire", "active", "expired")
    assert entry.data == {"returned": "19800.00"}
    assert_ledger_ok()


def test_running_expiry_twice_changes_nothing_more(clock, spent):
    clock.move_to(spent.valid_until + dt.timedelta(days=1), tick=False)
    assert coupons_expire_due() == 1
    after_first = db_state()

    assert coupons_expire_due() == 0
    assert expire_coupons.delay().get() == "expired 0"

    assert db_state() == after_first
    assert len(expiries(spent)) == 1
    assert_ledger_ok()


def test_a_frozen_coupon_expires_too(clock, coupon, officer):
    coupon_freeze(coupon=coupon, actor=officer, reason="under investigation")
    clock.move_to(coupon.valid_until, tick=False)

    assert coupons_expire_due() == 1

    coupon.refresh_from_db()
    assert (coupon.state, coupon.returned_amount) == (Coupon.State.EXPIRED, Decimal("20000.00"))
    assert audit_trail_for(coupon).first().from_state == "frozen"
    assert_ledger_ok()


def test_an_exhausted_coupon_is_untouched(clock, provider, organisation, coupon):
    ingest(provider, [record("job-1", enterprise=organisation, amount="100000.00")])
    claim(provider, coupon)
    assert Coupon.objects.get(pk=coupon.pk).state == Coupon.State.EXHAUSTED
    clock.move_to(coupon.valid_until + dt.timedelta(days=1), tick=False)
    before = db_state()

    assert coupons_expire_due() == 0

    assert db_state() == before
    assert expiries(coupon) == []
    assert_ledger_ok()


def test_expiry_takes_only_the_coupons_that_are_due(clock, spent, provider, other_organisation, reviewer):
    """A coupon approved a day later is still valid when the first one expires."""
    clock.move_to(spent.valid_from + dt.timedelta(days=1), tick=False)
    application = make_application(organisation=other_organisation, provider=provider, program=spent.program)
    younger = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(spent.valid_until + dt.timedelta(hours=1), tick=False)

    assert coupons_expire_due() == 1

    assert Coupon.objects.get(pk=younger.pk).state == Coupon.State.ACTIVE
    assert Coupon.objects.get(pk=spent.pk).state == Coupon.State.EXPIRED
    assert_ledger_ok()
