"""Submitting an application: each check with the message the enterprise reads, all of them
at once, and nothing written when it is refused."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from core.audit import audit_trail_for
from core.errors import ValidationFailed
from coupons.models import Application, Review
from coupons.services.applications import application_submit, application_update, application_withdraw
from coupons.services.review import review_approve, review_return
from coupons.services.workflow import TransitionNotAllowed
from enterprises.models import Organisation, Provider
from tests import factories
from tests.coupons.conftest import make_application, make_program, snapshot

S = Application.Status


@pytest.fixture
def draft(organisation, provider, program):
    return make_application(organisation=organisation, provider=provider, program=program, submit=False)


def refused(application, **kwargs) -> list[tuple[str | None, str]]:
    """Submit, expect a refusal with nothing written, return (column, reason) of each problem."""
    before = snapshot()
    with pytest.raises(ValidationFailed) as caught:
        application_submit(application=application, actor=None, **kwargs)
    assert caught.value.message == "The application cannot be submitted."
    assert caught.value.status == 400
    assert snapshot() == before
    return [(problem.column, problem.reason) for problem in caught.value.details]


def test_a_valid_draft_is_submitted_with_its_time_and_an_audit_entry(draft, owner):
    application = application_submit(application=draft, actor=owner)

    application.refresh_from_db()
    assert application.status == S.SUBMITTED
    assert application.submitted_at is not None
    entry = audit_trail_for(application).first()
    assert (entry.action, entry.from_state, entry.to_state, entry.actor) == (
        "application.submit",
        "draft",
        "submitted",
        owner,
    )


def test_a_programme_that_has_closed_is_refused(organisation, provider):
    today = timezone.localdate()
    program = make_program(opens=today - dt.timedelta(days=60), closes=today - dt.timedelta(days=1))
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    assert refused(draft) == [
        ("program", f"The programme {program.code} accepts applications from {program.opens} to {program.closes}.")
    ]


def test_a_programme_that_is_not_open_yet_is_refused_until_its_first_day(organisation, provider):
    program = make_program(opens=dt.date(2031, 3, 1), closes=dt.date(2031, 6, 30))
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    with time_machine.travel(dt.datetime(2031, 2, 28, 23, 0, tzinfo=dt.UTC)):  # 07:00 on 1 March in Shanghai
        assert timezone.localdate() == dt.date(2031, 3, 1)
        application_submit(application=draft, actor=None)

    draft.refresh_from_db()
    assert draft.status == S.SUBMITTED


def test_a_programme_not_yet_open_is_named_with_its_window(organisation, provider):
    program = make_program(opens=dt.date(2031, 3, 1), closes=dt.date(2031, 6, 30))
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    with time_machine.travel(dt.datetime(2031, 2, 28, 15, 59, tzinfo=dt.UTC)):  # 23:59 on 28 Feb in Shanghai
        problems = refused(draft)

    assert problems == [
        ("program", f"The programme {program.code} accepts applications from 2031-03-01 to 2031-06-30.")
    ]


@pytest.mark.parametrize(
    ("today", "accepted"),
    [
        (dt.date(2031, 2, 28), False),
        (dt.date(2031, 3, 1), True),
        (dt.date(2031, 6, 30), True),
        (dt.date(2031, 7, 1), False),
    ],
)
def test_the_window_includes_its_first_and_last_day(organisation, provider, today, accepted):
    program = make_program(opens=dt.date(2031, 3, 1), closes=dt.date(2031, 6, 30))
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    if accepted:
        assert application_submit(application=draft, actor=None, today=today).status == S.SUBMITTED
    else:
        assert [column for column, _ in refused(draft, today=today)] == ["program"]


def test_an_inactive_organisation_is_refused(draft, organisation):
    Organisation.objects.filter(pk=organisation.pk).update(is_active=False)

    assert refused(draft) == [("organisation", f"{organisation.name} is not active in the registry.")]


def test_a_provider_that_is_not_whitelisted_is_refused(draft, provider):
    Provider.objects.filter(pk=provider.pk).update(whitelisted=False)

    assert refused(draft) == [("provider", f"{provider.organisation.name} is not a whitelisted provider.")]


def test_an_enterprise_whose_cap_is_used_up_is_refused(organisation, provider, reviewer):
    program = make_program(per_enterprise_cap=Decimal("20000.00"))
    first = make_application(organisation=organisation, provider=provider, program=program)
    review_approve(application=first, reviewer=reviewer)  # 100,000 × 0.20 = the whole cap
    draft = make_application(
        organisation=organisation, provider=factories.make_provider(), program=program, submit=False
    )

    [(column, reason)] = refused(draft)
    assert column == "claimed_amount"
    # SQLite sums decimals to "20000", PostgreSQL to "20000.00".
    assert re.fullmatch(r"The annual cap of 20000\.00 yuan is already used \(20000(\.00)? yuan granted\)\.", reason)


def test_a_cap_partly_used_still_accepts_a_submission(organisation, provider, reviewer):
    program = make_program(per_enterprise_cap=Decimal("20000.01"))
    first = make_application(organisation=organisation, provider=provider, program=program)
    review_approve(application=first, reviewer=reviewer)
    draft = make_application(
        organisation=organisation, provider=factories.make_provider(), program=program, submit=False
    )

    assert application_submit(application=draft, actor=None).status == S.SUBMITTED


@pytest.mark.parametrize("other_status", [S.SUBMITTED, S.UNDER_REVIEW, S.RETURNED])
def test_a_second_open_application_to_the_same_programme_and_provider_is_refused(
    organisation, provider, program, other_status
):
    other = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    Application.objects.filter(pk=other.pk).update(status=other_status, submitted_at=timezone.now())
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    assert refused(draft) == [
        ("provider", f"There is already an open application to {program.code} with {provider.organisation.name}.")
    ]


@pytest.mark.parametrize("other_status", [S.DRAFT, S.REJECTED, S.WITHDRAWN])
def test_a_closed_application_or_a_draft_does_not_block_a_new_one(organisation, provider, program, other_status):
    other = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    Application.objects.filter(pk=other.pk).update(status=other_status)
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)

    assert application_submit(application=draft, actor=None).status == S.SUBMITTED


def test_another_provider_or_programme_does_not_block(organisation, provider, program, application):
    other_provider = make_application(
        organisation=organisation, provider=factories.make_provider(), program=program, submit=False
    )
    other_program = make_application(organisation=organisation, provider=provider, program=make_program(), submit=False)

    assert application_submit(application=other_provider, actor=None).status == S.SUBMITTED
    assert application_submit(application=other_program, actor=None).status == S.SUBMITTED


def test_the_provider_may_not_be_the_applicant_itself(provider, program):
    draft = make_application(organisation=provider.organisation, provider=provider, program=program, submit=False)

    assert refused(draft) == [
        ("provider", "Self-built, self-used compute is not subsidised: the provider is the applicant itself.")
    ]


def test_several_problems_are_all_reported_at_once(organisation, provider):
    program = make_program(opens=dt.date(2020, 1, 1), closes=dt.date(2020, 12, 31))
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    Organisation.objects.filter(pk=organisation.pk).update(is_active=False)
    Provider.objects.filter(pk=provider.pk).update(whitelisted=False)

    assert [column for column, _ in refused(draft)] == ["program", "organisation", "provider"]


def test_a_returned_application_is_resubmitted_and_edits_are_allowed_only_then(application, reviewer, owner):
    with pytest.raises(ValidationFailed, match="Only a draft or an application returned"):
        application_update(application=application, actor=owner, claimed_amount=Decimal("90000.00"))

    review_return(application=application, reviewer=reviewer, reason="Attach the contract.")
    application_update(application=application, actor=owner, claimed_amount=Decimal("90000.00"))
    application = application_submit(application=application, actor=owner)

    application.refresh_from_db()
    assert (application.status, application.claimed_amount) == (S.SUBMITTED, Decimal("90000.00"))
    assert not Review.objects.filter(application=application, superseded=False).exists()


def test_submitting_twice_is_a_transition_error(application):
    before = snapshot()

    with pytest.raises(TransitionNotAllowed, match="cannot be submitted"):
        application_submit(application=application, actor=None)

    assert snapshot() == before


def test_withdrawing_records_the_reason(application, owner):
    application_withdraw(application=application, actor=owner, reason="Plans changed.")

    application.refresh_from_db()
    assert application.status == S.WITHDRAWN
    entry = audit_trail_for(application).first()
    assert (entry.action, entry.from_state, entry.reason) == ("application.withdraw", "submitted", "Plans changed.")
