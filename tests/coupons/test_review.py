"""Review: approve within claimed × rate (and cap, and budget), reject and return with a reason,
four-eyes above the programme's thresholds, and nobody reviews an organisation they are linked
to. Every refusal leaves the database as it was."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from core.audit import audit_trail_for
from core.errors import NotPermitted, ValidationFailed
from coupons.models import Application, ApplicationMessage, Coupon, LedgerTransaction, Program, Review
from coupons.services.applications import application_submit
from coupons.services.review import grant_limit, review_approve, review_reject, review_return
from coupons.services.workflow import TransitionNotAllowed
from enterprises.models import PortalAccount, StaffAffiliation
from enterprises.roles import REVIEWERS
from tests import factories
from tests.coupons.conftest import assert_ledger_ok, budget_account, make_application, make_program, snapshot

S = Application.Status


def refused(error, call) -> Exception:
    before = snapshot()
    with pytest.raises(error) as caught:
        call()
    assert snapshot() == before
    return caught.value


# --- the amount ----------------------------------------------------------------------------


def test_an_approval_within_claimed_times_rate_issues_a_coupon_of_that_amount(application, reviewer, program):
    outcome = review_approve(application=application, reviewer=reviewer, amount=Decimal("15000.00"), note="ok")

    application.refresh_from_db()
    assert (application.status, application.granted_amount) == (S.APPROVED, Decimal("15000.00"))
    assert application.decided_at is not None
    coupon = Coupon.objects.get(application=application)
    assert outcome.coupon == coupon and not outcome.awaiting_second_review
    assert (coupon.face_value, coupon.account.balance) == (Decimal("15000.00"), Decimal("15000.00"))
    assert (coupon.organisation_id, coupon.provider_id, coupon.program_id) == (
        application.organisation_id,
        application.provider_id,
        program.pk,
    )
    assert coupon.valid_until - coupon.valid_from == dt.timedelta(days=program.validity_days)
    assert budget_account(program).balance == Decimal("985000.00")
    issue = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.ISSUE)
    assert issue.idempotency_key == f"issue:application:{application.pk}"
    assert issue.created_by == reviewer
    trail = [(e.action, e.from_state, e.to_state) for e in audit_trail_for(application)]
    assert trail[:2] == [
        ("application.approve", "under_review", "approved"),
        ("application.start_review", "submitted", "under_review"),
    ]
    assert audit_trail_for(coupon).get().action == "coupon.issue"
    assert_ledger_ok()


def test_the_default_amount_is_the_limit(application, reviewer):
    assert grant_limit(application)[0] == Decimal("20000.00")

    outcome = review_approve(application=application, reviewer=reviewer)

    assert outcome.coupon.face_value == Decimal("20000.00")
    assert_ledger_ok()


def test_a_domestic_card_gets_the_domestic_rate(organisation, provider, program, reviewer):
    application = make_application(
        organisation=organisation,
        provider=provider,
        program=program,
        accelerator_name="Huawei Ascend 910B (variant unspecified)",
    )
    assert grant_limit(application) == (Decimal("30000.00"), ["claimed amount × rate"])
    refused(
        ValidationFailed, lambda: review_approve(application=application, reviewer=reviewer, amount=Decimal("30000.01"))
    )

    outcome = review_approve(application=application, reviewer=reviewer, amount=Decimal("30000.00"))

    assert outcome.coupon.face_value == Decimal("30000.00")
    assert_ledger_ok()


def test_the_ceiling_is_rounded_down_to_the_fen(organisation, provider, program, reviewer):
    application = make_application(
        organisation=organisation, provider=provider, program=program, claimed_amount=Decimal("33333.33")
    )

    assert grant_limit(application)[0] == Decimal("6666.66")  # 6,666.666 rounded down


def test_an_amount_above_the_limit_is_refused_with_the_limit_named(application, reviewer):
    error = refused(
        ValidationFailed, lambda: review_approve(application=application, reviewer=reviewer, amount=Decimal("20000.01"))
    )

    assert error.message == "At most 20000.00 yuan can be granted (limited by claimed amount × rate)."
    assert [(p.column, p.reason) for p in error.details] == [("amount", "above the limit of 20000.00")]


def test_the_cap_left_to_the_enterprise_limits_the_grant(organisation, provider, reviewer):
    program = make_program(per_enterprise_cap=Decimal("25000.00"))
    review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program), reviewer=reviewer
    )
    second = make_application(organisation=organisation, provider=factories.make_provider(), program=program)

    limit, limited_by = grant_limit(second)

    assert (limit, limited_by) == (Decimal("5000.00"), ["the per-enterprise cap"])
    refused(ValidationFailed, lambda: review_approve(application=second, reviewer=reviewer, amount=Decimal("5000.01")))
    assert review_approve(application=second, reviewer=reviewer).coupon.face_value == Decimal("5000.00")
    assert_ledger_ok()


def test_the_remaining_budget_limits_the_grant_and_nothing_left_is_refused(provider, reviewer):
    program = make_program(budget=Decimal("30000.00"), per_enterprise_cap=Decimal("30000.00"))
    first = make_application(organisation=factories.make_organisation(), provider=provider, program=program)
    second = make_application(organisation=factories.make_organisation(), provider=provider, program=program)
    third = make_application(organisation=factories.make_organisation(), provider=provider, program=program)
    review_approve(application=first, reviewer=reviewer)

    assert grant_limit(second) == (Decimal("10000.00"), ["the remaining budget"])
    review_approve(application=second, reviewer=reviewer)
    error = refused(ValidationFailed, lambda: review_approve(application=third, reviewer=reviewer))

    assert error.message == "Nothing can be granted: the limit is 0.00 yuan (the remaining budget)."
    assert budget_account(program).balance == Decimal("0.00")
    assert_ledger_ok()


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1.00")])
def test_a_zero_or_negative_amount_is_refused(application, reviewer, amount):
    error = refused(ValidationFailed, lambda: review_approve(application=application, reviewer=reviewer, amount=amount))

    assert [p.column for p in error.details] == ["amount"]


@pytest.mark.parametrize("status", [S.DRAFT, S.RETURNED, S.REJECTED, S.WITHDRAWN])
def test_only_a_submitted_or_reviewed_application_can_be_approved(application, reviewer, status):
    Application.objects.filter(pk=application.pk).update(status=status)

    refused(TransitionNotAllowed, lambda: review_approve(application=application, reviewer=reviewer))


def test_an_approved_application_cannot_be_approved_again(coupon, application, second_reviewer):
    refused(TransitionNotAllowed, lambda: review_approve(application=application, reviewer=second_reviewer))

    assert Coupon.objects.count() == 1
    assert_ledger_ok()


# --- reject and return ----------------------------------------------------------------------


@pytest.mark.parametrize("decide", [review_reject, review_return])
@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_and_return_need_a_reason(application, reviewer, decide, reason):
    error = refused(ValidationFailed, lambda: decide(application=application, reviewer=reviewer, reason=reason))

    assert [(p.column, p.reason) for p in error.details] == [("reason", "required")]


def test_a_rejection_is_final_and_tells_the_enterprise_why(application, reviewer):
    review_reject(application=application, reviewer=reviewer, reason="  The contract is not with this provider. ")

    application.refresh_from_db()
    assert application.status == S.REJECTED
    assert application.decided_at is not None
    assert application.granted_amount is None
    review = Review.objects.get(application=application)
    assert (review.decision, review.reviewer, review.superseded) == ("reject", reviewer, False)
    assert ApplicationMessage.objects.get(application=application).body == "The contract is not with this provider."
    entry = audit_trail_for(application).first()
    assert (entry.action, entry.from_state, entry.to_state, entry.actor) == (
        "application.reject",
        "submitted",
        "rejected",
        reviewer,
    )
    assert not Coupon.objects.exists()
    refused(TransitionNotAllowed, lambda: application_submit(application=application, actor=None))


def test_a_return_tells_the_enterprise_what_to_change(application, reviewer):
    review_return(application=application, reviewer=reviewer, reason="Attach the signed contract.")

    application.refresh_from_db()
    assert application.status == S.RETURNED
    assert application.decided_at is None
    assert ApplicationMessage.objects.get(application=application).body == "Attach the signed contract."
    assert audit_trail_for(application).first().reason == "Attach the signed contract."


# --- four eyes ------------------------------------------------------------------------------


@pytest.fixture
def four_eyes_program(db):
    """Approvals above 10,000 yuan need a second reviewer."""
    return make_program(second_review_amount=Decimal("10000.00"))


@pytest.fixture
def big_application(organisation, provider, four_eyes_program):
    return make_application(organisation=organisation, provider=provider, program=four_eyes_program)


def test_above_the_threshold_the_first_approval_waits_for_a_second_reviewer(big_application, reviewer):
    outcome = review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    big_application.refresh_from_db()
    assert outcome.awaiting_second_review and outcome.coupon is None
    assert big_application.status == S.UNDER_REVIEW
    assert big_application.granted_amount is None
    assert not Coupon.objects.exists()
    assert not LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.ISSUE).exists()
    assert Review.objects.get(application=big_application).amount == Decimal("20000.00")
    entry = audit_trail_for(big_application).first()
    assert (entry.action, entry.actor, entry.data) == ("application.first_approval", reviewer, {"amount": "20000.00"})
    assert_ledger_ok()


def test_at_the_threshold_one_approval_is_enough(big_application, reviewer):
    outcome = review_approve(application=big_application, reviewer=reviewer, amount=Decimal("10000.00"))

    assert outcome.coupon.face_value == Decimal("10000.00")


def test_the_same_reviewer_cannot_sign_off_twice(big_application, reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    error = refused(NotPermitted, lambda: review_approve(application=big_application, reviewer=reviewer))

    assert error.message == "The second approval must come from a different reviewer."
    assert error.status == 403


def test_a_different_reviewer_issues_the_coupon_at_the_first_amount(big_application, reviewer, second_reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    outcome = review_approve(application=big_application, reviewer=second_reviewer)

    big_application.refresh_from_db()
    assert not outcome.awaiting_second_review
    assert big_application.status == S.APPROVED
    assert outcome.coupon.face_value == big_application.granted_amount == Decimal("20000.00")
    assert list(Review.objects.filter(application=big_application).values_list("reviewer__username", flat=True)) == [
        "reviewer",
        "reviewer2",
    ]
    entry = audit_trail_for(big_application).first()
    assert (entry.action, entry.actor) == ("application.approve", second_reviewer)
    assert_ledger_ok()


def test_the_second_reviewer_may_lower_the_amount(big_application, reviewer, second_reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    outcome = review_approve(application=big_application, reviewer=second_reviewer, amount=Decimal("12000.00"))

    assert outcome.coupon.face_value == Decimal("12000.00")
    assert_ledger_ok()


def test_the_second_reviewer_cannot_raise_the_amount(big_application, reviewer, second_reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("15000.00"))

    error = refused(
        ValidationFailed,
        lambda: review_approve(application=big_application, reviewer=second_reviewer, amount=Decimal("15000.01")),
    )

    assert "not raise it (first approval: 15000.00)" in error.message


def test_a_third_reviewer_is_not_needed_when_the_second_lowers_below_the_threshold(
    big_application, reviewer, second_reviewer
):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    outcome = review_approve(application=big_application, reviewer=second_reviewer, amount=Decimal("5000.00"))

    assert outcome.coupon.face_value == Decimal("5000.00")


@pytest.mark.parametrize(
    ("band", "program_band", "waits"),
    [
        ("high", "high", True),
        ("medium", "high", False),
        ("low", "high", False),
        ("", "high", False),
        ("medium", "medium", True),
        ("high", "medium", True),
        ("low", "low", True),
    ],
)
def test_a_risk_band_at_or_above_the_programmes_band_needs_a_second_reviewer(
    organisation, provider, reviewer, band, program_band, waits
):
    program = make_program(second_review_band=program_band)
    application = make_application(organisation=organisation, provider=provider, program=program)
    Application.objects.filter(pk=application.pk).update(risk_band=band, risk_score=90 if band else None)

    outcome = review_approve(application=application, reviewer=reviewer, amount=Decimal("1000.00"))

    assert outcome.awaiting_second_review is waits
    assert Coupon.objects.exists() is not waits


def test_a_return_then_a_resubmission_supersedes_the_old_reviews(big_application, reviewer, second_reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))
    review_return(application=big_application, reviewer=second_reviewer, reason="Clarify the scenario.")
    application_submit(application=big_application, actor=None)
    assert not Review.objects.filter(application=big_application, superseded=False).exists()

    # The first reviewer's old approval no longer counts: their new one is again a first one,
    # so they are not refused as "the same reviewer", and it waits for a second reviewer again.
    outcome = review_approve(application=big_application, reviewer=reviewer, amount=Decimal("18000.00"))
    assert outcome.awaiting_second_review
    refused(NotPermitted, lambda: review_approve(application=big_application, reviewer=reviewer))
    final = review_approve(application=big_application, reviewer=second_reviewer)

    assert final.coupon.face_value == Decimal("18000.00")
    assert Review.objects.filter(application=big_application, superseded=True).count() == 2
    assert_ledger_ok()


# --- who may review -------------------------------------------------------------------------


@pytest.mark.parametrize("decide", ["approve", "reject", "return"])
def test_a_reviewer_with_a_declared_affiliation_is_refused(application, reviewer, organisation, decide):
    StaffAffiliation.objects.create(user=reviewer, organisation=organisation, relation="former employer")
    call = {
        "approve": lambda: review_approve(application=application, reviewer=reviewer),
        "reject": lambda: review_reject(application=application, reviewer=reviewer, reason="x"),
        "return": lambda: review_return(application=application, reviewer=reviewer, reason="x"),
    }[decide]

    error = refused(NotPermitted, call)

    assert error.message == f"You are linked to {organisation.name} and may not review its applications."


def test_an_affiliation_with_another_organisation_does_not_stop_a_reviewer(application, reviewer, other_organisation):
    StaffAffiliation.objects.create(user=reviewer, organisation=other_organisation)

    assert review_approve(application=application, reviewer=reviewer).coupon is not None


def test_a_reviewer_with_a_portal_account_of_the_applicant_is_refused(application, organisation):
    insider = factories.make_user("insider", staff=True, groups=(REVIEWERS,))
    PortalAccount.objects.create(user=insider, organisation=organisation, role=PortalAccount.Role.ENTERPRISE)

    refused(NotPermitted, lambda: review_approve(application=application, reviewer=insider))


@pytest.mark.parametrize("who", ["auditor", "officer", "owner", "provider_user"])
def test_someone_who_is_not_a_reviewer_is_refused(request, application, who):
    user = request.getfixturevalue(who)

    error = refused(NotPermitted, lambda: review_approve(application=application, reviewer=user))
    refused(NotPermitted, lambda: review_reject(application=application, reviewer=user, reason="x"))

    assert error.message == "Only reviewers may review applications."


def test_a_reviewer_group_member_who_is_not_staff_is_refused(application):
    not_staff = factories.make_user("not-staff", staff=False, groups=(REVIEWERS,))

    refused(NotPermitted, lambda: review_approve(application=application, reviewer=not_staff))


# --- messages -------------------------------------------------------------------------------


def test_an_approval_tells_the_enterprise_the_amount_and_the_coupon(application, reviewer):
    coupon = review_approve(application=application, reviewer=reviewer).coupon

    message = ApplicationMessage.objects.get(application=application)
    assert message.author == reviewer
    assert message.body == (
        f"Approved: 20000.00 yuan granted; coupon {coupon.code} is valid until {coupon.valid_until:%Y-%m-%d}."
    )


def test_a_first_approval_sends_no_message_yet(big_application, reviewer):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    assert not ApplicationMessage.objects.exists()


# --- the admin decision form ----------------------------------------------------------------


def decide_url(application):
    return reverse("admin:coupons_application_decide", args=[application.pk])


def test_the_admin_decision_form_approves(client, reviewer, application):
    client.force_login(reviewer)

    response = client.post(decide_url(application), {"decision": "approve", "amount": "12000.00", "reason": "ok"})

    assert response.status_code == 302
    application.refresh_from_db()
    assert (application.status, application.coupon.face_value) == (S.APPROVED, Decimal("12000.00"))
    assert_ledger_ok()


def test_the_admin_decision_form_refuses_a_non_reviewer_and_changes_nothing(client, auditor, application):
    client.force_login(auditor)
    before = snapshot()

    response = client.post(decide_url(application), {"decision": "approve", "reason": "ok"})

    assert response.status_code == 403
    assert snapshot() == before


def test_the_admin_decision_form_shows_a_refusal_and_changes_nothing(client, reviewer, application):
    client.force_login(reviewer)
    before = snapshot()

    response = client.post(decide_url(application), {"decision": "reject", "reason": ""}, follow=True)

    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("A reason is required.")
    assert snapshot() == before


def test_the_review_page_shows_the_limit_to_a_reviewer(client, reviewer, application):
    client.force_login(reviewer)

    response = client.get(reverse("admin:coupons_application_change", args=[application.pk]))

    assert response.status_code == 200
    assert response.context["grant_limit"] == Decimal("20000.00")
    assert response.context["can_review"] is True


def test_programme_thresholds_are_respected_after_an_update(big_application, reviewer, four_eyes_program):
    Program.objects.filter(pk=four_eyes_program.pk).update(second_review_amount=Decimal("50000.00"))

    outcome = review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))

    assert not outcome.awaiting_second_review


def test_a_second_reviewer_linked_to_the_applicant_is_refused(big_application, reviewer, second_reviewer, organisation):
    review_approve(application=big_application, reviewer=reviewer, amount=Decimal("20000.00"))
    StaffAffiliation.objects.create(user=second_reviewer, organisation=organisation, relation="shareholder")

    refused(NotPermitted, lambda: review_approve(application=big_application, reviewer=second_reviewer))

    assert not Coupon.objects.exists()
