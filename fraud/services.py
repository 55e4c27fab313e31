"""Audit cases: an auditor opens one from an assessment, adds notes, and closes it as confirmed
fraud, cleared or inconclusive. Confirmed fraud freezes the enterprise's coupons in the
programme, revokes what is unredeemed and records what was redeemed as a receivable with the
fine's range; fraud and cleared outcomes become training labels."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import Conflict, NotPermitted, Problem, ValidationFailed
from coupons.models import Coupon, Redemption
from coupons.services.coupons import coupon_freeze, coupon_revoke
from fraud.models import Case, CaseNote, Outcome

# 《财政违法行为处罚处分条例》 Art. 14: a fine of 10-50 % of the defrauded amount (domain.md §1).
PENALTY_MIN_SHARE = Decimal("0.10")
PENALTY_MAX_SHARE = Decimal("0.50")
CENT = Decimal("0.01")


def _require_auditor(user) -> None:
    if not (getattr(user, "is_staff", False) and user.has_perm("fraud.change_case")):
        raise NotPermitted(_("Only auditors work cases."))


@transaction.atomic
def case_open(*, application, actor, note: str = "") -> Case:
    _require_auditor(actor)
    if Case.objects.filter(application=application, state=Case.State.OPEN).exists():
        raise Conflict(_("This application already has an open case."))
    try:
        with transaction.atomic():  # a racing auditor's case wins the unique constraint
            case = Case.objects.create(
                application=application,
                assessment=application.assessments.order_by("-created_at").first(),
                opened_by=actor,
            )
    except IntegrityError:
        raise Conflict(_("This application already has an open case.")) from None
    if note.strip():
        CaseNote.objects.create(case=case, author=actor, body=note.strip())
    audit_record(actor=actor, obj=case, action="case.open", to_state="open", reason=note)
    return case


@transaction.atomic
def case_add_note(*, case: Case, actor, body: str) -> CaseNote:
    _require_auditor(actor)
    if not body.strip():
        raise ValidationFailed(_("A note cannot be empty."), details=[Problem(_("required"), column="body")])
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.state != Case.State.OPEN:
        raise Conflict(_("The case is closed."))
    return CaseNote.objects.create(case=case, author=actor, body=body.strip())


@transaction.atomic
def case_close(*, case: Case, actor, finding: str, reason: str) -> Case:
    """Close with a finding. Confirmed fraud acts on the money; the outcome becomes a label."""
    _require_auditor(actor)
    if finding not in Case.Finding.values:
        raise ValidationFailed(
            _("Unknown finding."),
            details=[Problem(_("one of %(v)s") % {"v": ", ".join(Case.Finding.values)}, column="finding")],
        )
    if not reason.strip():
        raise ValidationFailed(_("A reason is required."), details=[Problem(_("required"), column="reason")])
    case = Case.objects.select_for_update(of=("self",)).select_related("application").get(pk=case.pk)
    if case.state != Case.State.OPEN:
        raise Conflict(_("The case is already closed."))
    application = case.application
    if finding == Case.Finding.FRAUD:
        coupons = Coupon.objects.filter(organisation_id=application.organisation_id, program_id=application.program_id)
        for coupon in coupons:
            if coupon.state == Coupon.State.ACTIVE:
                coupon = coupon_freeze(
                    coupon=coupon, actor=actor, reason=_("fraud confirmed in case %(pk)s") % {"pk": case.pk}
                )
            if coupon.state == Coupon.State.FROZEN:
                coupon_revoke(coupon=coupon, actor=actor, reason=_("fraud confirmed in case %(pk)s") % {"pk": case.pk})
        redeemed = Redemption.objects.filter(coupon__in=coupons, state=Redemption.State.POSTED).aggregate(
            total=Sum("subsidy")
        )["total"] or Decimal(0)
        case.receivable = Decimal(redeemed).quantize(CENT)
        case.penalty_min = (case.receivable * PENALTY_MIN_SHARE).quantize(CENT, rounding=ROUND_HALF_UP)
        case.penalty_max = (case.receivable * PENALTY_MAX_SHARE).quantize(CENT, rounding=ROUND_HALF_UP)
    case.state, case.finding, case.closed_by, case.closed_at = Case.State.CLOSED, finding, actor, timezone.now()
    case.save()
    CaseNote.objects.create(case=case, author=actor, body=reason.strip())
    if finding in (Case.Finding.FRAUD, Case.Finding.CLEARED):
        verdict = Outcome.Verdict.FRAUD if finding == Case.Finding.FRAUD else Outcome.Verdict.CLEAN
        Outcome.objects.update_or_create(
            application=application,
            # A changed verdict counts as a new outcome for retraining.
            defaults={
                "verdict": verdict,
                "source": Outcome.Source.CASE,
                "recorded_by": actor,
                "recorded_at": timezone.now(),
            },
        )
    audit_record(
        actor=actor,
        obj=case,
        action="case.close",
        from_state="open",
        to_state=f"closed:{finding}",
        reason=reason,
        data={"receivable": str(case.receivable), "penalty": [str(case.penalty_min), str(case.penalty_max)]},
    )
    return case
