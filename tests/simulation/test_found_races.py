"""Races the simulation found, each reproduced deterministically with row locks: a request is
made to wait for a lock in PostgreSQL at the point where the race bites, the other request
runs, and only then is the lock let go. Found: two 500s where the design promises a duplicate
count (invariant 3) or a 409 (invariant 6); a claim that posts to a statement that was approved
and paid while it ran (its subsidy then sits in provider payable for good: the statement is
paid and the redemption can no longer be reversed); and deadlocks between that claim and the
payment of the statement, or a reversal on the same coupon (a claim locks the coupon, then the
accounts, then the statement; a payment the statement, then the accounts; a reversal the
statement, then the coupon). And a stale balance: services locked the coupon's row but read its
account's balance through the same query's join, which PostgreSQL does not read again after
waiting for the lock, so the balance was the one from before the transaction they waited for
(a revocation then left money on the revoked coupon; a claim was refused for insufficient
funds instead of being capped at the balance).

Those were strict xfails until the application was fixed (a consistent lock order: statement,
coupon, accounts; and ``coupons.services.coupons.locked_coupon``, which reads the account after
the coupon's lock is granted); now they are regression tests."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import orjson
import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict
from coupons.models import Account, Coupon, LedgerEntry, LedgerTransaction, Program, Redemption, Statement
from coupons.services.coupons import coupon_revoke
from coupons.services.ledger import provider_account
from coupons.services.redemptions import ClaimRequest, redemption_claim, redemption_reverse, statement_for
from coupons.services.review import review_approve
from coupons.services.settlement import statement_approve, statement_pay
from coupons.services.usage import IngestResult, usage_ingest
from fraud.services import case_open
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.simulation.engine import fraud_scoring

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
def no_scoring():
    with fraud_scoring(False):
        yield


def waiting_for_a_lock() -> int:
    """Backends of this database waiting for a lock. Statistics are a snapshot per transaction,
    and the caller may hold one open: clear it to see the present."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def collide(first, second):
    """Run ``first`` in a transaction held open until ``second`` (another thread) waits for a
    lock behind it; return what each returned or raised."""
    results: dict = {}
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                results["first"] = first()
                held.set()
                release.wait(timeout=30)
        except Exception as error:
            results["first"] = error
        finally:
            held.set()
            connection.close()

    def run_second() -> None:
        try:
            results["second"] = second()
        except Exception as error:
            results["second"] = error
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(timeout=30)
    racer = threading.Thread(target=run_second)
    racer.start()
    deadline = time.monotonic() + 15
    while waiting_for_a_lock() < 1:
        assert time.monotonic() < deadline, "the second request never waited for the first"
        time.sleep(0.01)
    release.set()
    holder.join(timeout=30)
    racer.join(timeout=30)
    return results["first"], results["second"]


def usage_record(record_id: str, enterprise) -> dict:
    start = (timezone.now() - dt.timedelta(days=2)).replace(microsecond=0)
    return {
        "record_id": record_id,
        "enterprise_uscc": enterprise.uscc,
        "gpu_model": "A100-80G",
        "gpu_count": 8,
        "started_at": start.isoformat(),
        "ended_at": (start + dt.timedelta(hours=10)).isoformat(),
        "card_hours": "80.0000",
        "amount": "1000.00",
    }


def test_two_batches_with_the_same_record_at_once_count_it_once(organisation, provider):
    record = usage_record("job-1", organisation)

    def send(note: str):
        return lambda: usage_ingest(
            provider=provider, records=[record], body=orjson.dumps({"note": note, "records": [record]})
        )

    first, second = collide(send("first"), send("second"))

    assert isinstance(first, IngestResult) and first.created == 1, first
    assert isinstance(second, IngestResult), f"{type(second).__name__}: {second}"
    assert (second.created, second.duplicates) == (0, 1)


def test_two_auditors_opening_a_case_at_once_get_one_case_and_a_conflict(organisation, provider, auditor):
    program = make_program(budget=Decimal("100000.00"))
    application = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    second_auditor = factories.make_user("auditor2", staff=True, groups=("auditors",))

    first, second = collide(
        lambda: case_open(application=application, actor=auditor),
        lambda: case_open(application=application, actor=second_auditor),
    )

    assert not isinstance(first, Exception), first
    assert isinstance(second, Conflict), f"{type(second).__name__}: {second}"


# --- claims racing the settlement of their statement ------------------------------------------


def in_thread(work) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = work()
        except Exception as error:
            box["result"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def wait_until(condition, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def meter(organisation, provider, reviewer, *, amount: str = "1000.00"):
    """A coupon of 20,000.00 (100,000 claimed × 0.20) with three records of usage of ``amount``
    each, metered since its approval (this month); returns the programme, the coupon and a
    function that claims one record."""
    program = make_program(budget=Decimal("100000.00"))
    application = make_application(organisation=organisation, provider=provider, program=program)
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    start = coupon.valid_from.replace(microsecond=0) + dt.timedelta(seconds=2)
    records = []
    for n in range(3):
        record = usage_record(f"job-{n}", organisation)
        record.update(
            started_at=start.isoformat(),
            ended_at=(start + dt.timedelta(minutes=2)).isoformat(),
            card_hours="0.2667",
            amount=amount,
        )
        records.append(record)
    usage_ingest(provider=provider, records=records, body=orjson.dumps({"records": records}))
    today = timezone.localdate()
    month = (today.replace(day=1), (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1))

    def claim(record_id: str):
        return redemption_claim(
            provider=provider,
            request=ClaimRequest(coupon.code, month[0], month[1], [record_id]),
            idempotency_key=f"key-{record_id}",
        )[0]

    return program, coupon, claim


@pytest.fixture
def metered(organisation, provider, reviewer):
    program, _coupon, claim = meter(organisation, provider, reviewer)
    return program, claim


def settle(statement, actor):
    def work():
        approved = statement_approve(statement=statement, actor=actor)
        return statement_pay(statement=approved, actor=actor)

    return work


def assert_paid_what_was_posted(statement: Statement) -> None:
    statement.refresh_from_db()
    posted = sum(r.subsidy for r in statement.redemptions.filter(state=Redemption.State.POSTED))
    paid = sum(
        LedgerEntry.objects.filter(
            transaction__kind=LedgerTransaction.Kind.PAY,
            transaction__subject=f"statement:{statement.pk}",
            account__kind=Account.Kind.PROVIDER_PAID,
        ).values_list("amount", flat=True)
    )
    assert statement.state != Statement.State.PAID or posted == paid, (
        f"statement paid {paid} but its posted redemptions come to {posted}"
    )


def test_a_claim_racing_the_payment_of_its_statement_is_paid_or_waits_for_adjustment(metered, provider, officer):
    program, claim = metered
    statement = statement_for(provider, timezone.localdate())  # open, nothing posted yet
    payable = provider_account(program, provider, Account.Kind.PROVIDER_PAYABLE)

    with transaction.atomic():
        Account.objects.select_for_update().get(pk=payable.pk)  # the claim stops when it posts
        claimer, claimed = in_thread(lambda: claim("job-0"))
        wait_until(lambda: waiting_for_a_lock() >= 1 or not claimer.is_alive(), "the claim never reached the ledger")
        assert claimer.is_alive(), claimed
        settler, settled = in_thread(settle(statement, officer))
        wait_until(
            lambda: not settler.is_alive() or waiting_for_a_lock() >= 2, "the settlement neither ended nor waited"
        )
    claimer.join(timeout=30)
    settler.join(timeout=30)

    assert not isinstance(claimed["result"], Exception) or isinstance(claimed["result"], ApplicationError), claimed
    assert not isinstance(settled["result"], Exception), settled
    assert_paid_what_was_posted(statement)


def test_a_claim_and_the_payment_of_its_statement_do_not_deadlock(metered, provider, officer):
    program, claim = metered
    claim("job-0")  # the statement has something to pay
    statement = Statement.objects.get(provider=provider)

    with transaction.atomic():
        # The claim stops after it locked the accounts, when its ledger transaction refers to the programme.
        Program.objects.select_for_update().get(pk=program.pk)
        claimer, claimed = in_thread(lambda: claim("job-1"))
        wait_until(lambda: waiting_for_a_lock() >= 1 or not claimer.is_alive(), "the claim never reached the ledger")
        assert claimer.is_alive(), claimed
        settler, settled = in_thread(settle(statement, officer))
        wait_until(
            lambda: not settler.is_alive() or waiting_for_a_lock() >= 2, "the settlement neither ended nor waited"
        )
    claimer.join(timeout=30)
    settler.join(timeout=30)

    for outcome in (claimed["result"], settled["result"]):
        assert not isinstance(outcome, Exception) or isinstance(outcome, ApplicationError), (
            f"{type(outcome).__name__}: {outcome}"
        )
    assert_paid_what_was_posted(statement)


def test_a_claim_and_a_reversal_on_the_same_coupon_do_not_deadlock(metered, provider, officer):
    program, claim = metered
    earlier = claim("job-0")

    with transaction.atomic():
        # The claim stops after it locked the coupon and the accounts, when its ledger transaction refers to the programme.
        Program.objects.select_for_update().get(pk=program.pk)
        claimer, claimed = in_thread(lambda: claim("job-1"))
        wait_until(lambda: waiting_for_a_lock() >= 1 or not claimer.is_alive(), "the claim never reached the ledger")
        assert claimer.is_alive(), claimed
        reverser, reversed_ = in_thread(lambda: redemption_reverse(redemption=earlier, actor=officer, reason="race"))
        wait_until(
            lambda: not reverser.is_alive() or waiting_for_a_lock() >= 2, "the reversal neither ended nor waited"
        )
    claimer.join(timeout=30)
    reverser.join(timeout=30)

    for outcome in (claimed["result"], reversed_["result"]):
        assert not isinstance(outcome, Exception) or isinstance(outcome, ApplicationError), (
            f"{type(outcome).__name__}: {outcome}"
        )


# --- a stale balance after waiting for the coupon's lock --------------------------------------


def hold_programme_then(program, first, second):
    """``first`` runs until it has locked the coupon and its accounts and waits for the programme's
    row (its ledger transaction refers to it); ``second`` then waits for the coupon; then both go."""
    with transaction.atomic():
        Program.objects.select_for_update().get(pk=program.pk)
        one, first_result = in_thread(first)
        wait_until(lambda: waiting_for_a_lock() >= 1 or not one.is_alive(), "the first never reached the ledger")
        assert one.is_alive(), first_result
        two, second_result = in_thread(second)
        wait_until(lambda: not two.is_alive() or waiting_for_a_lock() >= 2, "the second neither ended nor waited")
    one.join(timeout=30)
    two.join(timeout=30)
    return first_result["result"], second_result["result"]


def test_a_revocation_racing_a_reversal_returns_the_whole_balance(organisation, provider, reviewer, officer):
    program, coupon, claim = meter(organisation, provider, reviewer)
    redemption = claim("job-0")  # 200.00 of 20,000.00

    reversed_, revoked = hold_programme_then(
        program,
        lambda: redemption_reverse(redemption=redemption, actor=officer, reason="wrong period"),
        lambda: coupon_revoke(coupon=coupon, actor=officer, reason="fraud"),
    )

    assert not isinstance(reversed_, Exception), reversed_
    assert not isinstance(revoked, Exception), revoked
    coupon = Coupon.objects.select_related("account").get(pk=coupon.pk)
    assert coupon.state == Coupon.State.REVOKED
    assert coupon.account.balance == 0, f"the revoked coupon still holds {coupon.account.balance}"


def test_a_revocation_racing_a_claim_returns_what_is_left(organisation, provider, reviewer, officer):
    program, coupon, claim = meter(organisation, provider, reviewer)

    claimed, revoked = hold_programme_then(
        program, lambda: claim("job-0"), lambda: coupon_revoke(coupon=coupon, actor=officer, reason="fraud")
    )

    assert not isinstance(claimed, Exception) and claimed.subsidy == Decimal("200.00"), claimed
    assert not isinstance(revoked, Exception), f"{type(revoked).__name__}: {revoked}"  # not InsufficientFunds
    coupon = Coupon.objects.select_related("account").get(pk=coupon.pk)
    assert (coupon.state, coupon.account.balance, coupon.returned_amount) == ("revoked", 0, Decimal("19800.00"))


def test_a_claim_waiting_behind_a_reversal_on_another_statement_is_capped_at_the_balance_it_left(
    organisation, provider, reviewer, officer
):
    """GIVEN a coupon of 20,000.00 issued 40 days ago, 19,800.00 of it redeemed in an earlier
    month (statement of that month) and 1,000.00 of subsidy claimable on usage of this month;
    WHEN the earlier redemption is reversed while the claim waits for the coupon's lock (the two
    hold different statements, so the coupon is where they meet);
    THEN the claim sees the 20,000.00 the reversal gave back, not the 200.00 from before it."""
    with time_machine.travel(timezone.now() - dt.timedelta(days=40), tick=True):
        program = make_program(budget=Decimal("100000.00"))
        application = make_application(organisation=organisation, provider=provider, program=program)
        coupon = review_approve(application=application, reviewer=reviewer).coupon
    earlier_start = coupon.valid_from.replace(microsecond=0) + dt.timedelta(days=1)  # 39 days ago: an earlier month
    now_start = max(
        timezone.now().replace(microsecond=0) - dt.timedelta(minutes=10),
        dt.datetime.combine(timezone.localdate(), dt.time.min, tzinfo=timezone.get_current_timezone()),
    )
    records = []
    for record_id, start, amount in [("old", earlier_start, "99000.00"), ("new", now_start, "5000.00")]:
        record = usage_record(record_id, organisation)
        record.update(
            started_at=start.isoformat(),
            ended_at=(start + dt.timedelta(minutes=2)).isoformat(),
            card_hours="0.2667",
            amount=amount,
        )
        records.append(record)
    usage_ingest(provider=provider, records=records, body=orjson.dumps({"records": records}))

    def claim(record_id: str, day: dt.date):
        last = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        return redemption_claim(
            provider=provider,
            request=ClaimRequest(coupon.code, day.replace(day=1), last, [record_id]),
            idempotency_key=f"key-{record_id}",
        )[0]

    earlier = claim("old", timezone.localdate(earlier_start))
    assert earlier.subsidy == Decimal("19800.00")

    reversed_, claimed = hold_programme_then(
        program,
        lambda: redemption_reverse(redemption=earlier, actor=officer, reason="wrong period"),
        lambda: claim("new", timezone.localdate(now_start)),
    )

    assert not isinstance(reversed_, Exception), reversed_
    assert not isinstance(claimed, Exception), f"{type(claimed).__name__}: {claimed}"
    assert (claimed.subsidy, claimed.capped_by) == (Decimal("1000.00"), ""), (claimed.subsidy, claimed.capped_by)
    coupon.account.refresh_from_db()
    assert coupon.account.balance == Decimal("19000.00")
