"""Audit cases (fraud/services.py, fraud/admin.py): an auditor opens one from an assessment, adds
notes and closes it. Confirmed fraud revokes the enterprise's coupons in the programme and
records the redeemed subsidy as a receivable with a fine of 10-50 %; fraud and cleared findings
become training labels; nobody but an auditor works a case, and a refusal changes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from core.audit import audit_trail_for
from core.errors import Conflict, NotPermitted, ValidationFailed
from coupons.models import Account, Coupon, Redemption
from coupons.services.review import review_approve
from fraud.models import Case, CaseNote, ModelVersion, Outcome
from fraud.scoring import score_program
from fraud.services import case_add_note, case_close, case_open
from fraud.training import RETRAIN_AFTER_NEW_OUTCOMES, retrain_due, train_fraud_model, training_data
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.fraud.conftest import CLOSES, NOW, OPENS, TODAY
from tests.usage.conftest import claim, ingest, record

JUNE = (dt.date(2026, 6, 1), dt.date(2026, 6, 30))


@pytest.fixture
def application(program, organisation, provider):
    application = make_application(organisation=organisation, provider=provider, program=program)
    score_program(program, today=TODAY)
    return application


@pytest.fixture
def case(application, auditor):
    return case_open(application=application, actor=auditor, note="与服务商共用银行账户，需核查")


def budget(program) -> Decimal:
    return Account.objects.get(program=program, kind=Account.Kind.BUDGET).balance


def state() -> dict:
    """Everything a refused case action must leave as it was."""
    return {
        "cases": list(Case.objects.order_by("pk").values_list("pk", "state", "finding", "receivable")),
        "notes": CaseNote.objects.count(),
        "outcomes": list(Outcome.objects.order_by("pk").values_list("pk", "verdict")),
        "coupons": list(Coupon.objects.order_by("pk").values_list("pk", "state", "returned_amount")),
        "accounts": list(Account.objects.order_by("pk").values_list("pk", "balance")),
    }


def actions(obj) -> list[str]:
    return list(audit_trail_for(obj).order_by("id").values_list("action", flat=True))


# --- opening and notes -----------------------------------------------------------------------


def test_an_auditor_opens_a_case_from_the_latest_assessment(case, application, auditor):
    assert case.state == Case.State.OPEN
    assert case.assessment == application.assessments.order_by("-created_at", "-id").first()
    assert case.opened_by == auditor
    assert list(case.notes.values_list("body", flat=True)) == ["与服务商共用银行账户，需核查"]
    assert actions(case) == ["case.open"]


def test_a_second_open_case_on_the_same_application_is_refused(case, application, auditor):
    before = state()

    with pytest.raises(Conflict):
        case_open(application=application, actor=auditor)

    assert state() == before


def test_after_a_case_is_closed_a_new_one_may_be_opened(case, application, auditor):
    case_close(case=case, actor=auditor, finding=Case.Finding.INCONCLUSIVE, reason="证据不足")

    again = case_open(application=application, actor=auditor)

    assert again.pk != case.pk
    assert Case.objects.filter(application=application).count() == 2


def test_notes_are_added_to_an_open_case_and_an_empty_one_is_refused(case, auditor):
    case_add_note(case=case, actor=auditor, body="  已调取银行流水  ")
    before = state()

    with pytest.raises(ValidationFailed):
        case_add_note(case=case, actor=auditor, body="   ")

    assert state() == before
    assert list(case.notes.order_by("at", "id").values_list("body", flat=True))[-1] == "已调取银行流水"


def test_a_closed_case_takes_no_more_notes_and_cannot_be_closed_again(case, auditor):
    closed = case_close(case=case, actor=auditor, finding=Case.Finding.CLEARED, reason="核查无异常")
    before = state()

    with pytest.raises(Conflict):
        case_add_note(case=closed, actor=auditor, body="补充")
    with pytest.raises(Conflict):
        case_close(case=case, actor=auditor, finding=Case.Finding.FRAUD, reason="改判")  # an old copy

    assert state() == before


def test_a_stale_copy_of_a_closed_case_takes_no_more_notes(case, auditor):
    case_close(case=case, actor=auditor, finding=Case.Finding.CLEARED, reason="核查无异常")
    before = state()

    with pytest.raises(Conflict):
        case_add_note(case=case, actor=auditor, body="补充")  # ``case`` was loaded while it was open

    assert state() == before


@pytest.mark.parametrize(("finding", "reason"), [("guilty", "理由"), (Case.Finding.FRAUD, "  ")])
def test_a_close_needs_a_known_finding_and_a_reason(case, auditor, finding, reason):
    before = state()

    with pytest.raises(ValidationFailed):
        case_close(case=case, actor=auditor, finding=finding, reason=reason)

    assert state() == before


# --- who may work a case ---------------------------------------------------------------------


def test_a_reviewer_may_not_open_a_case(application, reviewer):
    before = state()

    with pytest.raises(NotPermitted):
        case_open(application=application, actor=reviewer)

    assert state() == before


def test_a_reviewer_may_not_add_notes_or_close_a_case(case, reviewer):
    before = state()

    with pytest.raises(NotPermitted):
        case_add_note(case=case, actor=reviewer, body="我看过了")
    with pytest.raises(NotPermitted):
        case_close(case=case, actor=reviewer, finding=Case.Finding.CLEARED, reason="没问题")

    assert state() == before


def work_url(case) -> str:
    return reverse("admin:fraud_case_work", args=[case.pk])


def test_an_auditor_works_a_case_in_the_admin(client, case, auditor):
    client.force_login(auditor)

    page = client.get(reverse("admin:fraud_case_change", args=[case.pk]))
    noted = client.post(work_url(case), {"action": "note", "body": "电话核实"})
    closed = client.post(work_url(case), {"action": "close", "finding": "cleared", "body": "核查无异常"})

    assert page.status_code == 200 and work_url(case) in page.content.decode()
    assert noted.status_code == closed.status_code == 302
    case.refresh_from_db()
    assert (case.state, case.finding, case.closed_by) == (Case.State.CLOSED, Case.Finding.CLEARED, auditor)
    assert list(case.notes.order_by("at", "id").values_list("body", flat=True))[1:] == ["电话核实", "核查无异常"]


def test_a_reviewer_is_refused_the_admin_work_view_and_nothing_changes(client, case, reviewer):
    client.force_login(reviewer)
    before = state()

    response = client.post(work_url(case), {"action": "close", "finding": "fraud", "body": "骗补"})

    assert response.status_code == 403
    assert state() == before


def test_a_reviewer_cannot_open_cases_from_the_assessment_list(client, application, reviewer):
    client.force_login(reviewer)
    assessment = application.assessments.get()
    before = state()

    client.post(
        reverse("admin:fraud_riskassessment_changelist"),
        {"action": "open_cases", "_selected_action": [assessment.pk]},
    )

    assert state() == before


def test_an_auditor_opens_cases_from_the_assessment_list(client, application, auditor):
    client.force_login(auditor)
    assessment = application.assessments.get()

    response = client.post(
        reverse("admin:fraud_riskassessment_changelist"),
        {"action": "open_cases", "_selected_action": [assessment.pk]},
    )

    assert response.status_code == 302
    assert Case.objects.get().assessment == assessment


# --- closing -----------------------------------------------------------------------------------


def redeem(clock, provider, application, reviewer, amounts: list[str]) -> Coupon:
    """Approve ``application`` (a coupon of 20,000 yuan), then meter June usage billed
    ``amounts`` and redeem it at the programme's 20 %."""
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(NOW + dt.timedelta(days=5), tick=False)
    start = NOW + dt.timedelta(days=1)
    ingest(
        provider,
        [
            record(f"j-{i}", enterprise=application.organisation, start=start + dt.timedelta(hours=11 * i), amount=a)
            for i, a in enumerate(amounts)
        ],
    )
    redemption = claim(provider, coupon, period=JUNE)
    assert redemption.state == Redemption.State.POSTED
    return coupon


@pytest.fixture
def redeemed(clock, provider, application, reviewer):
    """2,500 yuan of usage redeemed: a posted subsidy of 500 yuan, 19,500 left on the coupon."""
    coupon = redeem(clock, provider, application, reviewer, ["1000.00", "1500.00"])
    assert Redemption.objects.get().subsidy == Decimal("500.00")
    return coupon


def test_confirmed_fraud_revokes_the_coupons_in_the_programme_and_records_what_to_recover(
    redeemed, program, organisation, application, reviewer, auditor
):
    second = make_application(organisation=organisation, provider=factories.make_provider(), program=program)
    unused = review_approve(application=second, reviewer=reviewer).coupon
    other_program = make_program(code="FR-ELSEWHERE", opens=OPENS, closes=CLOSES)
    elsewhere = review_approve(
        application=make_application(
            organisation=organisation, provider=factories.make_provider(), program=other_program
        ),
        reviewer=reviewer,
    ).coupon
    assert budget(program) == Decimal("960000.00")  # two coupons of 20,000 issued
    case = case_open(application=application, actor=auditor)

    closed = case_close(case=case, actor=auditor, finding=Case.Finding.FRAUD, reason="关联方虚假交易")

    assert (closed.state, closed.finding, closed.closed_by) == (Case.State.CLOSED, Case.Finding.FRAUD, auditor)
    assert (closed.receivable, closed.penalty_min, closed.penalty_max) == (
        Decimal("500.00"),
        Decimal("50.00"),
        Decimal("250.00"),
    )
    coupons = {c.pk: (c.state, c.returned_amount) for c in Coupon.objects.all()}
    assert coupons[redeemed.pk] == (Coupon.State.REVOKED, Decimal("19500.00"))
    assert coupons[unused.pk] == (Coupon.State.REVOKED, Decimal("20000.00"))
    assert coupons[elsewhere.pk] == (Coupon.State.ACTIVE, Decimal("0.00"))
    assert budget(program) == Decimal("999500.00")  # all but the redeemed 500 is back
    assert Redemption.objects.get().state == Redemption.State.POSTED  # recovered by receivable, not reversed
    outcome = Outcome.objects.get()
    assert (outcome.application, outcome.verdict, outcome.source, outcome.recorded_by) == (
        application,
        Outcome.Verdict.FRAUD,
        Outcome.Source.CASE,
        auditor,
    )
    assert actions(case) == ["case.open", "case.close"]
    assert "coupon.revoke" in actions(redeemed)


def test_the_fine_range_is_rounded_half_up_to_the_cent(clock, provider, application, reviewer, auditor):
    redeem(clock, provider, application, reviewer, ["1666.65"])  # a subsidy of 333.33
    case = case_open(application=application, actor=auditor)

    closed = case_close(case=case, actor=auditor, finding=Case.Finding.FRAUD, reason="虚报用量")

    assert (closed.receivable, closed.penalty_min, closed.penalty_max) == (
        Decimal("333.33"),
        Decimal("33.33"),  # 33.333
        Decimal("166.67"),  # 166.665, half up
    )


def test_a_cleared_case_records_a_clean_outcome_and_leaves_the_coupons(redeemed, application, auditor, program):
    case = case_open(application=application, actor=auditor)
    before = budget(program)

    closed = case_close(case=case, actor=auditor, finding=Case.Finding.CLEARED, reason="核查无异常")

    assert closed.receivable == closed.penalty_min == closed.penalty_max == Decimal("0.00")
    assert Coupon.objects.get(pk=redeemed.pk).state == Coupon.State.ACTIVE
    assert budget(program) == before
    outcome = Outcome.objects.get()
    assert (outcome.verdict, outcome.source, outcome.recorded_by) == (Outcome.Verdict.CLEAN, "case", auditor)


def test_an_inconclusive_case_records_no_outcome(redeemed, application, auditor):
    case = case_open(application=application, actor=auditor)

    case_close(case=case, actor=auditor, finding=Case.Finding.INCONCLUSIVE, reason="证据不足")

    assert not Outcome.objects.exists()
    assert Coupon.objects.get(pk=redeemed.pk).state == Coupon.State.ACTIVE


def test_fraud_on_an_application_without_coupons_recovers_nothing(case, auditor):
    closed = case_close(case=case, actor=auditor, finding=Case.Finding.FRAUD, reason="空壳公司")

    assert (closed.receivable, closed.penalty_min, closed.penalty_max) == (Decimal("0"),) * 3
    assert Outcome.objects.get().verdict == Outcome.Verdict.FRAUD


# --- outcomes feed training ------------------------------------------------------------------


def _close_cases(program, provider, auditor, findings) -> list:
    applications = []
    for finding in findings:
        application = make_application(
            organisation=factories.make_organisation(), provider=provider, program=program, project_summary=finding
        )
        case_close(
            case=case_open(application=application, actor=auditor), actor=auditor, finding=finding, reason="结论"
        )
        applications.append(application)
    return applications


def test_case_outcomes_are_the_labels_of_the_next_training(program, provider, auditor):
    fraud, cleared, inconclusive = _close_cases(program, provider, auditor, ["fraud", "cleared", "inconclusive"])
    make_application(organisation=factories.make_organisation(), provider=provider, program=program)

    features, labels = training_data()
    result = train_fraud_model()

    assert len(features) == 4
    assert inconclusive.pk in features.index  # scored and learnt from, but without a label
    assert labels.to_dict() == {fraud.pk: 1, cleared.pk: 0}
    assert result.trained and (result.samples, result.labelled, result.frauds) == (4, 2, 1)
    assert ModelVersion.objects.get(active=True).labelled == 2


def test_retraining_is_due_after_enough_new_case_outcomes(clock, program, provider, auditor):
    _close_cases(program, provider, auditor, ["fraud", "cleared"])
    assert retrain_due()  # outcomes and no model yet
    train_fraud_model()
    assert not retrain_due()

    clock.shift(dt.timedelta(minutes=1))
    _close_cases(program, provider, auditor, ["cleared"] * (RETRAIN_AFTER_NEW_OUTCOMES - 1))
    assert not retrain_due()
    _close_cases(program, provider, auditor, ["fraud"])

    assert retrain_due()
    assert train_fraud_model().labelled == 2 + RETRAIN_AFTER_NEW_OUTCOMES
