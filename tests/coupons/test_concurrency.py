"""Invariant 1 under concurrency (PostgreSQL): approvals racing for the last of a programme's
budget, or for the last of an enterprise's cap, never overspend either.

Each thread has its own database connection (Django's connections are per thread) and closes it
when it ends. The tests commit for real (``transaction=True``); ``serialized_rollback`` puts the
reference data (card models, industry codes, staff groups) back for the next test."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from core.errors import ApplicationError
from coupons.models import Account, Application, Coupon
from coupons.services.review import review_approve
from tests import factories
from tests.coupons.conftest import assert_ledger_ok, budget_account, make_application, make_program

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def race(applications, reviewer, amount: Decimal):
    """Approve every application at the same moment, one thread each; return the outcomes and
    the errors, in the order of ``applications``."""
    barrier = threading.Barrier(len(applications))
    outcomes: list = [None] * len(applications)
    errors: list = [None] * len(applications)

    def approve(index: int, application) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes[index] = review_approve(application=application, reviewer=reviewer, amount=amount)
        except Exception as error:  # collected and asserted on below
            errors[index] = error
        finally:
            connection.close()

    reviewer.has_perm("coupons.review_application")  # fill the permission cache before sharing the user
    threads = [threading.Thread(target=approve, args=(i, a)) for i, a in enumerate(applications)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes, errors


def test_twenty_approvals_racing_for_a_budget_that_fits_nine(reviewer):
    """GIVEN a budget of 95,000 and 20 applications of 10,000 each from 20 enterprises
    WHEN 20 reviewers' approvals run at the same moment
    THEN exactly 9 coupons are issued, the other 11 are refused, and the budget never goes negative."""
    program = make_program(budget=Decimal("95000.00"), per_enterprise_cap=Decimal("50000.00"))
    provider = factories.make_provider()
    applications = [
        make_application(
            organisation=factories.make_organisation(),
            provider=provider,
            program=program,
            claimed_amount=Decimal("50000.00"),  # × 0.20 = 10,000
        )
        for _ in range(20)
    ]

    outcomes, errors = race(applications, reviewer, Decimal("10000.00"))

    succeeded = [outcome for outcome in outcomes if outcome is not None]
    assert len(succeeded) == 9, errors
    assert all(isinstance(error, ApplicationError) for error in errors if error is not None), errors
    assert sum(error is not None for error in errors) == 11
    assert {error.code for error in errors if error is not None} == {"validation_failed"}
    assert all(outcome.coupon.face_value == Decimal("10000.00") for outcome in succeeded)
    assert Coupon.objects.filter(program=program).count() == 9
    issued = Coupon.objects.filter(program=program).aggregate(total=Sum("face_value"))["total"]
    assert issued == Decimal("90000.00") <= program.budget
    assert budget_account(program).balance == Decimal("5000.00")
    assert not Account.objects.exclude(kind=Account.Kind.FUNDING).filter(balance__lt=0).exists()
    assert Application.objects.filter(program=program, status=Application.Status.APPROVED).count() == 9
    refused = [a.pk for a, error in zip(applications, errors, strict=True) if error is not None]
    assert not Application.objects.filter(pk__in=refused, status=Application.Status.APPROVED).exists()
    assert_ledger_ok()


def test_two_approvals_racing_for_one_enterprises_cap(reviewer):
    """GIVEN an enterprise with two applications (to two providers) whose grants together exceed
    its cap of 15,000 WHEN both are approved at the same moment THEN only one coupon is issued."""
    program = make_program(per_enterprise_cap=Decimal("15000.00"))
    organisation = factories.make_organisation()
    applications = [
        make_application(organisation=organisation, provider=factories.make_provider(), program=program)
        for _ in range(2)
    ]

    outcomes, errors = race(applications, reviewer, Decimal("10000.00"))

    assert sum(outcome is not None for outcome in outcomes) == 1, errors
    [error] = [error for error in errors if error is not None]
    assert isinstance(error, ApplicationError)
    assert "the per-enterprise cap" in error.message
    held = Coupon.objects.filter(organisation=organisation, program=program).aggregate(total=Sum("face_value"))
    assert held["total"] == Decimal("10000.00") <= program.per_enterprise_cap
    assert_ledger_ok()


def test_the_same_application_approved_twice_at_once_issues_one_coupon(reviewer, second_reviewer):
    program = make_program()
    application = make_application(
        organisation=factories.make_organisation(), provider=factories.make_provider(), program=program
    )
    second_reviewer.has_perm("coupons.review_application")
    barrier = threading.Barrier(2)
    results: list = []

    def approve(user) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(review_approve(application=application, reviewer=user))
        except Exception as error:  # collected and asserted on below
            results.append(error)
        finally:
            connection.close()

    reviewer.has_perm("coupons.review_application")
    threads = [threading.Thread(target=approve, args=(user,)) for user in (reviewer, second_reviewer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert Coupon.objects.filter(application=application).count() == 1
    assert sum(isinstance(result, ApplicationError) for result in results) == 1, results
    assert_ledger_ok()


def test_a_programme_being_changed_does_not_hold_up_an_approval_in_it(reviewer):
    """GIVEN a programme officer's change of a programme, not yet committed
    WHEN a reviewer approves an application of that programme meanwhile
    THEN the approval goes through at once (the change's lock leaves the programme's row to the
    foreign keys of the approval's postings), and the change commits after it."""
    from django.db import transaction

    from coupons.services.programs import program_update

    program = make_program(budget=Decimal("95000.00"), per_enterprise_cap=Decimal("50000.00"))
    application = make_application(
        organisation=factories.make_organisation(),
        provider=factories.make_provider(),
        program=program,
        claimed_amount=Decimal("50000.00"),
    )
    changed, approved = threading.Event(), threading.Event()
    errors: list = []

    def change() -> None:
        try:
            with transaction.atomic():
                program_update(program=program, name="Renamed while approving")
                changed.set()
                approved.wait(timeout=30)  # hold the programme's lock until the approval is done
        except Exception as error:  # asserted on below
            errors.append(error)
        finally:
            changed.set()
            connection.close()

    reviewer.has_perm("coupons.review_application")
    thread = threading.Thread(target=change)
    thread.start()
    try:
        assert changed.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # a wait on the programme's row fails the test
        outcome = review_approve(application=application, reviewer=reviewer, amount=Decimal("10000.00"))
    finally:
        approved.set()
        thread.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")

    assert not errors
    assert outcome.coupon.face_value == Decimal("10000.00")
    program.refresh_from_db()
    assert program.name == "Renamed while approving"
    assert_ledger_ok()
