"""Review: approve (issuing a coupon), reject, return for changes; four-eyes above the
programme's thresholds; nobody reviews an organisation they are linked to."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import NotPermitted, Problem, ValidationFailed
from coupons.models import Account, Application, ApplicationMessage, Review, RiskBand
from coupons.selectors import cap_used, linked_reviewer
from coupons.services.coupons import coupon_issue
from coupons.services.ledger import InsufficientFunds
from coupons.services.programs import grant_ceiling
from coupons.services.workflow import transition

S = Application.Status


@dataclass(frozen=True)
class ApprovalOutcome:
    application: Application
    # True when this approval was the first of two and waits for a second reviewer.
    awaiting_second_review: bool
    coupon: object | None = None


def _lock(application: Application) -> Application:
    return (
        Application.objects.select_for_update(of=("self",))
        .select_related("program", "organisation", "provider__organisation", "accelerator")
        .get(pk=application.pk)
    )


def _check_reviewer(application: Application, reviewer) -> None:
    if not (getattr(reviewer, "is_staff", False) and reviewer.has_perm("coupons.review_application")):
        raise NotPermitted(_("Only reviewers may review applications."))
    if linked_reviewer(reviewer, application.organisation_id):
        raise NotPermitted(
            _("You are linked to %(name)s and may not review its applications.")
            % {"name": application.organisation.name}
        )


def _take_into_review(application: Application, reviewer) -> None:
    if application.status == S.SUBMITTED:
        transition(application, "start_review", actor=reviewer)


def needs_second_review(application: Application, amount: Decimal) -> bool:
    program = application.program
    if amount > program.second_review_amount:
        return True
    return bool(application.risk_band) and RiskBand.rank(application.risk_band) >= RiskBand.rank(
        program.second_review_band
    )


def grant_limit(application: Application) -> tuple[Decimal, list[str]]:
    """The most that may be granted now, and what limits it: claimed × rate, the cap's room,
    the remaining budget."""
    program = application.program
    ceiling = grant_ceiling(application)
    room = program.per_enterprise_cap - cap_used(
        organisation_id=application.organisation_id, program_id=program.pk, exclude_application_id=application.pk
    )
    remaining = Account.objects.get(program=program, kind=Account.Kind.BUDGET).balance
    limit = max(Decimal("0.00"), min(ceiling, room, remaining))
    reasons = []
    if limit == ceiling:
        reasons.append(_("claimed amount × rate"))
    if limit == room:
        reasons.append(_("the per-enterprise cap"))
    if limit == remaining:
        reasons.append(_("the remaining budget"))
    return limit, reasons


@transaction.atomic
def review_approve(
    *, application: Application, reviewer, amount: Decimal | None = None, note: str = ""
) -> ApprovalOutcome:
    """Approve, or sign off a first approval. Issues the coupon in the same transaction when
    the approval is complete."""
    application = _lock(application)
    _check_reviewer(application, reviewer)
    if application.status not in (S.SUBMITTED, S.UNDER_REVIEW):
        transition(application, "approve", actor=reviewer)  # raises the clear refusal
    # Lock the programme budget first: issuing, and so the cap and budget checks, are
    # serialised per programme, and 20 racing approvals cannot overspend it.
    Account.objects.select_for_update().get(program=application.program, kind=Account.Kind.BUDGET)
    first = (
        application.reviews.filter(decision=Review.Decision.APPROVE, superseded=False)
        .select_related("reviewer")
        .first()
    )
    limit, limited_by = grant_limit(application)
    if first is not None:
        if first.reviewer_id == reviewer.pk:
            raise NotPermitted(_("The second approval must come from a different reviewer."))
        amount = first.amount if amount is None else amount
        if amount > first.amount:
            raise ValidationFailed(
                _("The second reviewer may confirm or lower the amount, not raise it (first approval: %(amount)s).")
                % {"amount": first.amount}
            )
    elif amount is None:
        amount = limit
    amount = Decimal(amount).quantize(Decimal("0.01"))
    if amount <= 0:
        raise ValidationFailed(
            _("Nothing can be granted: the limit is %(limit)s yuan (%(by)s).")
            % {"limit": limit, "by": ", ".join(limited_by)},
            details=[Problem(_("must be positive"), column="amount")],
        )
    if amount > limit:
        raise ValidationFailed(
            _("At most %(limit)s yuan can be granted (limited by %(by)s).")
            % {"limit": limit, "by": ", ".join(limited_by)},
            details=[Problem(_("above the limit of %(limit)s") % {"limit": limit}, column="amount")],
        )
    _take_into_review(application, reviewer)
    Review.objects.create(
        application=application, reviewer=reviewer, decision=Review.Decision.APPROVE, amount=amount, reason=note
    )
    if first is None and needs_second_review(application, amount):
        audit_record(
            actor=reviewer,
            obj=application,
            action="application.first_approval",
            from_state=application.status,
            to_state=application.status,
            reason=note,
            data={"amount": str(amount)},
        )
        return ApprovalOutcome(application, awaiting_second_review=True)
    application.granted_amount = amount
    transition(application, "approve", actor=reviewer, reason=note, data={"granted": str(amount)})
    try:
        coupon = coupon_issue(application=application, amount=amount, actor=reviewer)
    except InsufficientFunds as error:  # cannot happen after grant_limit under the lock; kept loud
        raise ValidationFailed(error.message) from error
    ApplicationMessage.objects.create(
        application=application,
        author=reviewer,
        body=_("Approved: %(amount)s yuan granted; coupon %(code)s is valid until %(until)s.")
        % {"amount": amount, "code": coupon.code, "until": f"{coupon.valid_until:%Y-%m-%d}"},
    )
    return ApprovalOutcome(application, awaiting_second_review=False, coupon=coupon)


def _decide_against(application: Application, *, reviewer, action: str, reason: str) -> Application:
    if not (reason or "").strip():
        raise ValidationFailed(_("A reason is required."), details=[Problem(_("required"), column="reason")])
    application = _lock(application)
    _check_reviewer(application, reviewer)
    if application.status not in (S.SUBMITTED, S.UNDER_REVIEW):
        transition(application, action, actor=reviewer)  # raises the clear refusal
    decision = Review.Decision.REJECT if action == "reject" else Review.Decision.RETURN
    Review.objects.create(application=application, reviewer=reviewer, decision=decision, reason=reason)
    transition(application, action, actor=reviewer, reason=reason)
    if action == "return":
        application.reviews.filter(superseded=False).update(superseded=True)
    ApplicationMessage.objects.create(application=application, author=reviewer, body=reason.strip())
    return application


@transaction.atomic
def review_reject(*, application: Application, reviewer, reason: str) -> Application:
    return _decide_against(application, reviewer=reviewer, action="reject", reason=reason)


@transaction.atomic
def review_return(*, application: Application, reviewer, reason: str) -> Application:
    return _decide_against(application, reviewer=reviewer, action="return", reason=reason)
