"""Claims racing on PostgreSQL (invariant 4 under concurrency): threads claim the same usage
records of the same coupon at the same moment; exactly one redemption is posted, every record
backs exactly one redemption and the ledger checks out.

To make the race real rather than likely, the test holds the coupon's row lock while the
threads start (a ``threading.Barrier`` releases them together) and lets go only once every
thread is waiting for that lock in PostgreSQL. ``serialized_rollback`` restores the reference
data (accelerators, staff groups) that the flush after a transactional test removes."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from core.errors import ApplicationError, Conflict
from coupons.models import Coupon, Redemption, RedemptionLine, UsageRecord
from coupons.services.redemptions import ClaimRequest, redemption_claim
from coupons.services.review import review_approve
from tests.coupons.conftest import make_application
from tests.usage.conftest import APPROVED_AT, MARCH, NOW, assert_ledger_ok, balance, ingest, record

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

RECORDS = ["job-1", "job-2", "job-3"]


def waiting_for_a_lock() -> int:
    """Backends of this database waiting for a lock. Statistics are a snapshot per transaction,
    and the caller holds one open: clear it to see the present."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def race(coupons: list[Coupon], n: int, claim_of) -> list[tuple[str, object]]:
    """Run ``claim_of(i)`` in ``n`` threads that all queue on the coupons' row locks; return
    each thread's ("ok", result) or ("error", exception)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = ("ok", claim_of(i))
        except Exception as error:
            results[i] = ("error", error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    try:
        with transaction.atomic():
            list(Coupon.objects.select_for_update().filter(pk__in=[c.pk for c in coupons]))
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while waiting_for_a_lock() < n:
                assert time.monotonic() < deadline, "the threads never queued on the coupon's lock"
                time.sleep(0.01)
    finally:
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def claimer(provider, coupon, *, records=RECORDS, key=None):
    def claim_of(i: int):
        return redemption_claim(
            provider=provider,
            request=ClaimRequest(
                coupon_code=coupon.code, period_start=MARCH[0], period_end=MARCH[1], record_ids=records
            ),
            idempotency_key=key or f"key-{i}",
        )

    return claim_of


@pytest.fixture
def usage(provider, organisation, coupon):
    ingest(provider, [record(record_id, enterprise=organisation, amount="1000.00") for record_id in RECORDS])


def assert_one_redemption_backed_by_every_record(coupon) -> Redemption:
    (redemption,) = Redemption.objects.all()
    assert redemption.state == Redemption.State.POSTED
    assert set(UsageRecord.objects.values_list("redemption_id", flat=True)) == {redemption.pk}
    assert RedemptionLine.objects.count() == len(RECORDS)
    assert redemption.subsidy == Decimal("600.00")
    assert balance(coupon.account) == Decimal("19400.00")
    assert_ledger_ok()
    return redemption


@pytest.mark.usefixtures("usage")
@pytest.mark.parametrize("records", [RECORDS, None], ids=["by record", "by period"])
def test_eight_claims_of_the_same_records_post_exactly_one_redemption(provider, coupon, records):
    results = race([coupon], 8, claimer(provider, coupon, records=records))

    winners = [value for outcome, value in results if outcome == "ok"]
    errors = [value for outcome, value in results if outcome == "error"]
    assert len(winners) == 1, results
    assert all(isinstance(error, ApplicationError) for error in errors), errors
    redemption = assert_one_redemption_backed_by_every_record(coupon)
    assert winners[0] == (redemption, False)


@pytest.mark.usefixtures("usage")
def test_the_same_key_racing_twice_answers_both_callers_with_the_same_redemption(provider, coupon):
    """The retry waits for the coupon's lock and then finds the stored redemption (it once
    found the records taken instead and got a 400)."""
    results = race([coupon], 2, claimer(provider, coupon, key="same-key"))

    assert [outcome for outcome, _value in results] == ["ok", "ok"], results
    (first, first_replayed), (second, second_replayed) = (value for _outcome, value in results)
    assert first.pk == second.pk
    assert sorted([first_replayed, second_replayed]) == [False, True]
    assert_one_redemption_backed_by_every_record(coupon)


@pytest.fixture
def second_coupon(clock, other_organisation, provider, program, reviewer):
    """Another enterprise's coupon naming the same provider, with usage of its own."""
    clock.move_to(APPROVED_AT, tick=False)
    application = make_application(organisation=other_organisation, provider=provider, program=program)
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(NOW, tick=False)
    ingest(provider, [record(f"other-{n}", enterprise=other_organisation) for n in range(2)])
    return coupon


@pytest.mark.usefixtures("usage")
def test_one_key_racing_on_two_coupons_is_a_conflict_for_the_loser(provider, coupon, second_coupon):
    """GIVEN one idempotency key used for claims on two coupons at the same moment WHEN both run
    THEN one is posted and the other is the 409 that the key with another body gets."""
    coupons = [coupon, second_coupon]

    def claim_of(i: int):
        return claimer(provider, coupons[i], records=None, key="same-key")(i)

    results = race(coupons, 2, claim_of)

    assert Redemption.objects.count() == 1
    assert sorted(outcome for outcome, _value in results) == ["error", "ok"], results
    (error,) = (value for outcome, value in results if outcome == "error")
    assert isinstance(error, Conflict), error
    assert_ledger_ok()
