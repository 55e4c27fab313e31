"""The double-entry ledger: what ``ledger_post`` refuses, balances that equal their entries,
no negative balance, budget adjustments, the coupon's state changes that move money, the
append-only trigger (PostgreSQL) and ``check_ledger``."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.audit import audit_trail_for
from core.errors import ValidationFailed
from coupons.ledger_check import check_ledger
from coupons.models import Account, Coupon, LedgerEntry, LedgerTransaction, Program
from coupons.services.coupons import CouponStateError, coupon_expire, coupon_freeze, coupon_revoke, coupon_unfreeze
from coupons.services.ledger import InsufficientFunds, ledger_post, ledger_reverse, program_account
from coupons.services.programs import program_update
from coupons.services.review import review_approve
from tests import factories
from tests.coupons.conftest import assert_ledger_ok, budget_account, make_application, make_program, snapshot

K = Account.Kind
T = LedgerTransaction.Kind


def accounts(program):
    return program_account(program, K.FUNDING), program_account(program, K.BUDGET), program_account(program, K.RETURNED)


def post(program, lines, **kwargs):
    with transaction.atomic():
        return ledger_post(kind=T.ADJUST, program=program, lines=lines, **kwargs)


# --- what a posting must be -----------------------------------------------------------------


def test_ledger_post_refuses_to_run_outside_a_transaction():
    """No database needed: the guard comes before any query."""
    program = Program(code="X")
    lines = [(Account(pk=1), Decimal("-1.00")), (Account(pk=2), Decimal("1.00"))]
    assert not connection.in_atomic_block

    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        ledger_post(kind=T.ADJUST, program=program, lines=lines)


@pytest.mark.parametrize(
    ("amounts", "error", "match"),
    [
        ((Decimal("-10.00"), Decimal("9.99")), ValueError, "unbalanced ledger transaction: entries sum to -0.01"),
        ((-10.0, 10.0), TypeError, "ledger amounts are Decimal"),
        ((Decimal("-10"), 10), TypeError, "ledger amounts are Decimal"),
        ((Decimal("-0.001"), Decimal("0.001")), ValueError, "more than two decimal places"),
        ((Decimal("0.00"), Decimal("0.00")), ValueError, "at least two accounts"),
    ],
)
def test_ledger_post_refuses_a_malformed_transaction(program, amounts, error, match):
    _funding, budget, returned = accounts(program)
    before = snapshot()

    with pytest.raises(error, match=match):
        post(program, [(budget, amounts[0]), (returned, amounts[1])])

    assert snapshot() == before


def test_ledger_post_refuses_a_transaction_on_a_single_account(program):
    _funding, budget, _returned = accounts(program)
    before = snapshot()

    with pytest.raises(ValueError, match="at least two accounts"):
        post(program, [(budget, Decimal("-5.00")), (budget, Decimal("5.00"))])
    with pytest.raises(ValueError, match="at least two accounts"):
        post(program, [(budget, Decimal("5.00"))])

    assert snapshot() == before


def test_lines_on_one_account_are_netted_into_one_entry(program):
    _funding, budget, returned = accounts(program)

    txn = post(program, [(budget, Decimal("-7.00")), (budget, Decimal("-3.00")), (returned, Decimal("10.00"))])

    assert sorted(txn.entries.values_list("account_id", "amount")) == sorted(
        [(budget.pk, Decimal("-10.00")), (returned.pk, Decimal("10.00"))]
    )
    assert_ledger_ok()


def test_no_account_but_funding_may_go_below_zero_and_the_refusal_writes_nothing(program):
    _funding, budget, returned = accounts(program)
    before = snapshot()

    with pytest.raises(InsufficientFunds, match=r"1000000\.01 yuan cannot be taken") as caught:
        post(program, [(budget, Decimal("-1000000.01")), (returned, Decimal("1000000.01"))])

    assert caught.value.status == 409
    assert snapshot() == before
    post(program, [(budget, Decimal("-1000000.00")), (returned, Decimal("1000000.00"))])
    assert budget_account(program).balance == Decimal("0.00")
    assert_ledger_ok()


def test_an_idempotency_key_is_posted_once(program):
    _funding, budget, returned = accounts(program)
    post(program, [(budget, Decimal("-1.00")), (returned, Decimal("1.00"))], idempotency_key="once")
    before = snapshot()

    with pytest.raises(DatabaseError):  # IntegrityError
        post(program, [(budget, Decimal("-1.00")), (returned, Decimal("1.00"))], idempotency_key="once")

    assert snapshot() == before


def test_every_balance_equals_the_sum_of_its_entries(organisation, provider, program, reviewer):
    for _ in range(3):
        application = make_application(organisation=factories.make_organisation(), provider=provider, program=program)
        review_approve(application=application, reviewer=reviewer)
    coupon = Coupon.objects.first()
    coupon_revoke(coupon=coupon, actor=reviewer, reason="fraud confirmed")
    program_update(program=program, budget=Decimal("900000.00"))

    sums = dict(LedgerEntry.objects.values("account").annotate(total=Sum("amount")).values_list("account", "total"))
    for account in Account.objects.all():
        assert account.balance == sums.get(account.pk, Decimal("0")), account.name
    funding, budget, _ = accounts(program)
    assert funding.balance == Decimal("-900000.00")
    assert budget.balance == Decimal("900000.00") - Decimal("40000.00")  # two live coupons of 20,000
    for txn in LedgerTransaction.objects.all():
        assert sum(txn.entries.values_list("amount", flat=True)) == 0
    assert_ledger_ok()


def test_a_reversal_mirrors_the_original_once(program):
    _funding, budget, returned = accounts(program)
    original = post(program, [(budget, Decimal("-100.00")), (returned, Decimal("100.00"))])

    with transaction.atomic():
        reversal = ledger_reverse(original=original)

    assert reversal.reverses == original
    assert budget_account(program).balance == Decimal("1000000.00")
    with pytest.raises(Exception, match="already reversed"), transaction.atomic():
        ledger_reverse(original=original)
    assert_ledger_ok()


# --- programme budgets ----------------------------------------------------------------------


def test_creating_a_programme_funds_its_budget(program):
    funding, budget, returned = accounts(program)

    assert (funding.balance, budget.balance, returned.balance) == (Decimal("-1000000.00"), Decimal("1000000.00"), 0)
    fund = LedgerTransaction.objects.get(program=program)
    assert fund.kind == T.FUND
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("new_budget", "delta"),
    [(Decimal("1250000.00"), Decimal("250000.00")), (Decimal("600000.00"), Decimal("-400000.00"))],
)
def test_a_budget_change_posts_an_adjustment(program, officer, new_budget, delta):
    program_update(program=program, actor=officer, budget=new_budget)

    program.refresh_from_db()
    funding, budget, _ = accounts(program)
    assert program.budget == new_budget
    assert (funding.balance, budget.balance) == (-new_budget, new_budget)
    adjust = LedgerTransaction.objects.get(kind=T.ADJUST)
    assert adjust.created_by == officer
    assert adjust.entries.get(account=budget).amount == delta
    assert audit_trail_for(program).first().action == "program.update"
    assert_ledger_ok()


def test_a_change_that_leaves_the_budget_alone_posts_nothing(program):
    program_update(program=program, name="renamed")

    assert not LedgerTransaction.objects.filter(kind=T.ADJUST).exists()


def test_a_cut_below_what_is_issued_is_refused_and_changes_nothing(organisation, provider, reviewer):
    program = make_program(budget=Decimal("50000.00"))
    review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program),
        reviewer=reviewer,
    )  # 20,000 issued, 30,000 left
    before = snapshot()

    with pytest.raises(InsufficientFunds):
        program_update(program=program, budget=Decimal("19999.99"))

    assert snapshot() == before
    program_update(program=program, budget=Decimal("20000.00"))  # exactly what is issued is fine
    assert budget_account(program).balance == Decimal("0.00")
    assert_ledger_ok()


# --- coupon states --------------------------------------------------------------------------


@pytest.mark.parametrize("change", [coupon_freeze, coupon_unfreeze, coupon_revoke])
@pytest.mark.parametrize("reason", ["", "  "])
def test_a_coupon_state_change_needs_a_reason(coupon, officer, change, reason):
    before = snapshot()

    with pytest.raises(ValidationFailed, match=r"^A reason is required\.$"):
        change(coupon=coupon, actor=officer, reason=reason)

    assert snapshot() == before


def test_freeze_and_unfreeze_are_audited_and_move_no_money(coupon, officer):
    transactions = LedgerTransaction.objects.count()

    coupon_freeze(coupon=coupon, actor=officer, reason="case opened")
    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.FROZEN
    coupon_unfreeze(coupon=coupon, actor=officer, reason="case closed")
    coupon.refresh_from_db()

    assert coupon.state == Coupon.State.ACTIVE
    assert LedgerTransaction.objects.count() == transactions
    trail = [(e.action, e.from_state, e.to_state, e.reason, e.actor) for e in audit_trail_for(coupon)[:2]]
    assert trail == [
        ("coupon.unfreeze", "frozen", "active", "case closed", officer),
        ("coupon.freeze", "active", "frozen", "case opened", officer),
    ]
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("state", "change"),
    [
        (Coupon.State.FROZEN, coupon_freeze),
        (Coupon.State.ACTIVE, coupon_unfreeze),
        (Coupon.State.REVOKED, coupon_freeze),
        (Coupon.State.REVOKED, coupon_revoke),
        (Coupon.State.EXPIRED, coupon_revoke),
        (Coupon.State.EXHAUSTED, coupon_unfreeze),
    ],
)
def test_a_state_change_from_the_wrong_state_is_a_409(coupon, officer, state, change):
    Coupon.objects.filter(pk=coupon.pk).update(state=state)
    before = snapshot()

    with pytest.raises(CouponStateError) as caught:
        change(coupon=coupon, actor=officer, reason="x")

    assert caught.value.status == 409
    assert snapshot() == before


@pytest.mark.parametrize("frozen_first", [False, True])
def test_revoking_returns_the_balance_to_the_budget(coupon, officer, program, frozen_first):
    if frozen_first:
        coupon_freeze(coupon=coupon, actor=officer, reason="case opened")
    assert budget_account(program).balance == Decimal("980000.00")

    coupon_revoke(coupon=coupon, actor=officer, reason="fraud confirmed")

    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.REVOKED
    assert coupon.returned_amount == Decimal("20000.00")
    assert coupon.account.balance == Decimal("0.00")
    assert budget_account(program).balance == Decimal("1000000.00")
    revoke = LedgerTransaction.objects.get(kind=T.REVOKE)
    assert (revoke.memo, revoke.created_by) == ("fraud confirmed", officer)
    entry = audit_trail_for(coupon).first()
    assert (entry.action, entry.to_state, entry.reason, entry.data) == (
        "coupon.revoke",
        "revoked",
        "fraud confirmed",
        {"returned": "20000.00"},
    )
    assert_ledger_ok()


def test_a_revoked_coupon_frees_the_cap_it_held(organisation, provider, reviewer, officer):
    program = make_program(per_enterprise_cap=Decimal("20000.00"))
    coupon = review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program), reviewer=reviewer
    ).coupon
    coupon_revoke(coupon=coupon, actor=officer, reason="withdrawn by the enterprise")

    second = make_application(organisation=organisation, provider=factories.make_provider(), program=program)

    assert review_approve(application=second, reviewer=reviewer).coupon.face_value == Decimal("20000.00")
    assert_ledger_ok()


def test_expiry_returns_the_balance_once(coupon, program):
    later = coupon.valid_until + dt.timedelta(seconds=1)
    assert coupon_expire(coupon=coupon, now=coupon.valid_until - dt.timedelta(seconds=1)) is False
    assert Coupon.objects.get(pk=coupon.pk).state == Coupon.State.ACTIVE

    assert coupon_expire(coupon=coupon, now=later) is True
    after_first = snapshot()
    assert coupon_expire(coupon=coupon, now=later) is False

    assert snapshot() == after_first
    coupon.refresh_from_db()
    assert (coupon.state, coupon.returned_amount) == (Coupon.State.EXPIRED, Decimal("20000.00"))
    assert LedgerTransaction.objects.filter(kind=T.EXPIRE).count() == 1
    assert budget_account(program).balance == Decimal("1000000.00")
    entry = audit_trail_for(coupon).first()
    assert (entry.action, entry.from_state, entry.to_state, entry.actor_label) == (
        "coupon.expire",
        "active",
        "expired",
        "system",
    )
    assert_ledger_ok()


def test_expiry_with_the_clock(coupon):
    with time_machine.travel(coupon.valid_until + dt.timedelta(minutes=1)):
        assert timezone.now() > coupon.valid_until
        assert coupon_expire(coupon=coupon) is True


def test_a_revoked_coupon_does_not_expire(coupon, officer):
    coupon_revoke(coupon=coupon, actor=officer, reason="x")
    before = snapshot()

    assert coupon_expire(coupon=coupon, now=coupon.valid_until + dt.timedelta(days=1)) is False
    assert snapshot() == before


# --- the append-only trigger (PostgreSQL) ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE coupons_ledgerentry SET amount = amount + 1 WHERE id = %s",
        "DELETE FROM coupons_ledgerentry WHERE id = %s",
    ],
)
def test_the_database_refuses_to_edit_or_delete_a_ledger_entry(program, sql):
    entry = LedgerEntry.objects.filter(transaction__program=program).first()
    before = snapshot()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [entry.pk])

    assert snapshot() == before
    assert LedgerEntry.objects.get(pk=entry.pk).amount == entry.amount


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE coupons_ledgertransaction SET memo = 'edited' WHERE id = %s",
        "DELETE FROM coupons_ledgertransaction WHERE id = %s",
    ],
)
def test_the_database_refuses_to_edit_or_delete_a_ledger_transaction(program, sql):
    txn = LedgerTransaction.objects.get(program=program)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [txn.pk])

    assert LedgerTransaction.objects.get(pk=txn.pk).memo == txn.memo


@pytest.mark.postgres
def test_the_orm_cannot_edit_an_entry_either(program):
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(transaction__program=program).update(amount=F("amount") * 2)

    assert_ledger_ok()


# --- check_ledger ---------------------------------------------------------------------------


def test_check_ledger_is_ok_on_a_consistent_ledger_and_says_so(coupon):
    out = io.StringIO()

    call_command("check_ledger", stdout=out, stderr=io.StringIO())

    assert "FAIL" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("ledger ok: accounts 4, transactions 2, entries 4, coupons 1")


def test_check_ledger_finds_a_tampered_balance_and_the_command_fails(coupon, program):
    Account.objects.filter(pk=budget_account(program).pk).update(balance=F("balance") + Decimal("0.01"))

    report = check_ledger()

    assert not report.ok
    assert report.checks["balances equal their entries"] == 1
    name = budget_account(program).name
    [violation] = report.violations
    # SQLite sums decimals to "980000", PostgreSQL to "980000.00".
    assert re.fullmatch(
        rf"\[balances equal their entries\] {re.escape(name)}: balance 980000\.01 but entries sum to 980000(\.00)?",
        violation,
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"^ledger: 1 violation\(s\)"):
        call_command("check_ledger", stdout=out, stderr=err)
    assert "FAIL balances equal their entries (1)" in out.getvalue()
    assert name in err.getvalue()
    assert "980000.01" in err.getvalue()


def test_check_ledger_finds_a_coupon_above_its_grant(coupon):
    Coupon.objects.filter(pk=coupon.pk).update(face_value=Decimal("25000.00"))

    report = check_ledger()

    assert report.checks["coupons agree with their grants"] == 1
    assert f"coupon {coupon.code}: face value differs from the grant" in report.violations[0]


def test_check_ledger_finds_a_budget_that_disagrees_with_its_funding(program):
    Program.objects.filter(pk=program.pk).update(budget=Decimal("2000000.00"))

    report = check_ledger()

    assert report.checks["issued within budget"] == 1


def test_an_account_whose_lines_net_to_zero_is_left_out_of_the_posting(program):
    funding, budget, returned = accounts(program)

    txn = post(
        program,
        [
            (budget, Decimal("-5.00")),
            (returned, Decimal("5.00")),
            (funding, Decimal("-3.00")),
            (funding, Decimal("3.00")),
        ],
    )

    assert set(txn.entries.values_list("account_id", flat=True)) == {budget.pk, returned.pk}
    assert_ledger_ok()


def test_the_accounts_given_to_a_posting_show_their_new_balances(program):
    _funding, budget, returned = accounts(program)

    post(program, [(budget, Decimal("-5.00")), (returned, Decimal("5.00"))])

    assert (budget.balance, returned.balance) == (Decimal("999995.00"), Decimal("5.00"))
