"""Redemption of coupons against metered usage, and its reversal.

A provider claims, for one coupon and one billing period (within one calendar month), the
subsidy on usage records it metered for the coupon's enterprise. The subsidy is
Σ amount × rate (the programme's domestic-chip rate for domestic cards), capped by the coupon's
balance and the enterprise's annual cap; the rest of the bill is the enterprise's to pay.
Posting moves the subsidy from the coupon's account to the provider's payable account."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from django.db import IntegrityError, transaction
from django.db.models import DecimalField, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.audit import audit_record
from core.errors import ApplicationError, Conflict, NotFound, Problem, ValidationFailed
from coupons.models import Account, Coupon, LedgerTransaction, Redemption, RedemptionLine, Statement, UsageRecord
from coupons.services.coupons import locked_coupon, return_balance
from coupons.services.ledger import ledger_post, ledger_reverse, provider_account
from enterprises.models import Organisation, Provider

CENT = Decimal("0.01")
RELATED_ATTRIBUTES = {
    "legal_representative": gettext_lazy("legal representative"),
    "contact_phone": gettext_lazy("phone"),
    "contact_email": gettext_lazy("e-mail"),
    "registered_address": gettext_lazy("registered address"),
    "bank_account": gettext_lazy("bank account"),
}


class RedemptionRefused(ApplicationError):
    code = "redemption_refused"
    status = 422


def shared_identity(applicant: Organisation, provider: Organisation) -> list[str]:
    """The identity attributes applicant and provider share (related parties, 关联方)."""
    shared = []
    for field in RELATED_ATTRIBUTES:
        mine, theirs = (
            (getattr(applicant, field) or "").strip().lower(),
            (getattr(provider, field) or "").strip().lower(),
        )
        if mine and mine == theirs:
            shared.append(field)
    return shared


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def statement_for(provider: Provider, month: dt.date) -> Statement:
    statement, _created = Statement.objects.get_or_create(provider=provider, month=month_of(month))
    return statement


def locked_statement(provider: Provider, month: dt.date) -> Statement:
    """The provider's statement for the month, locked. Lock order everywhere: the statement,
    then the coupon, then the ledger accounts (claims, payments and reversals alike), so that
    they wait for each other instead of deadlocking, and a claim never posts to a statement
    that was paid while it worked."""
    return Statement.objects.select_for_update().get(pk=statement_for(provider, month).pk)


@dataclass(frozen=True)
class ClaimRequest:
    coupon_code: str
    period_start: dt.date
    period_end: dt.date
    record_ids: list[str] | None  # None: every eligible record of the period

    def fingerprint(self) -> str:
        body = {
            "coupon": self.coupon_code,
            "start": self.period_start.isoformat(),
            "end": self.period_end.isoformat(),
            "records": sorted(self.record_ids) if self.record_ids is not None else None,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def subsidy_cap_room(coupon: Coupon) -> Decimal:
    """What the enterprise may still receive in this programme under its annual cap."""
    redeemed = Redemption.objects.filter(
        coupon__organisation_id=coupon.organisation_id,
        coupon__program_id=coupon.program_id,
        state=Redemption.State.POSTED,
    ).aggregate(total=Coalesce(Sum("subsidy"), Value(Decimal(0), output_field=DecimalField())))["total"]
    return coupon.program.per_enterprise_cap - redeemed


def _eligibility_window(coupon: Coupon, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Usage must start and end inside the billing period, the coupon's validity and the
    programme's period (from its opening to its closing plus the coupon validity)."""
    zone = timezone.get_current_timezone()
    program = coupon.program
    program_start = dt.datetime.combine(program.opens, dt.time.min, tzinfo=zone)
    program_end = dt.datetime.combine(
        program.closes + dt.timedelta(days=program.validity_days + 1), dt.time.min, tzinfo=zone
    )
    lower = max(dt.datetime.combine(start, dt.time.min, tzinfo=zone), coupon.valid_from, program_start)
    upper = min(
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=zone), coupon.valid_until, program_end
    )
    return lower, upper


def _stored_claim(provider: Provider, idempotency_key: str, fingerprint: str) -> Redemption | None:
    """The redemption stored under this key, if any; the key with another request is a 409."""
    earlier = Redemption.objects.filter(provider=provider, idempotency_key=idempotency_key).first()
    if earlier is not None and earlier.request_hash != fingerprint:
        raise Conflict(_("This idempotency key was used for a different claim."))
    return earlier


@transaction.atomic
def redemption_claim(
    *, provider: Provider, request: ClaimRequest, idempotency_key: str, actor=None
) -> tuple[Redemption, bool]:
    """Claim a redemption. Returns (redemption, replayed). The same key with the same request
    returns the stored redemption; with another request it is a 409."""
    if not idempotency_key or len(idempotency_key) > 100:
        raise ValidationFailed(
            _("An Idempotency-Key of 1 to 100 characters is required."),
            details=[Problem(_("required"), column="idempotency_key")],
        )
    fingerprint = request.fingerprint()
    earlier = _stored_claim(provider, idempotency_key, fingerprint)
    if earlier is not None:
        return earlier, True

    problems: list[Problem] = []
    if request.period_end < request.period_start:
        problems.append(Problem(_("ends before it starts"), column="period_end"))
    elif month_of(request.period_start) != month_of(request.period_end):
        problems.append(Problem(_("a billing period lies within one calendar month"), column="period_end"))
    if problems:
        raise ValidationFailed(_("The billing period is not valid."), details=problems)

    statement = locked_statement(provider, request.period_start)
    coupon = locked_coupon(
        Coupon.objects.select_related("organisation", "provider__organisation").filter(
            code=request.coupon_code, provider=provider
        )
    )
    if coupon is None:
        raise NotFound(_("No coupon %(code)s names this provider.") % {"code": request.coupon_code})
    # Checked again under the coupon's lock: a retry racing its first attempt waits here and
    # then finds the stored redemption instead of the records already taken.
    earlier = _stored_claim(provider, idempotency_key, fingerprint)
    if earlier is not None:
        return earlier, True
    provider = Provider.objects.select_related("organisation").get(pk=provider.pk)
    if not provider.whitelisted:
        raise RedemptionRefused(_("%(name)s is not a whitelisted provider.") % {"name": provider.organisation.name})
    shared = shared_identity(coupon.organisation, provider.organisation)
    if shared:
        raise RedemptionRefused(
            _("Applicant and provider are related parties: they share %(what)s.")
            % {"what": ", ".join(str(RELATED_ATTRIBUTES[f]) for f in shared)},
            details=[Problem(_("shared with the provider"), column=field) for field in shared],
        )
    if coupon.state != Coupon.State.ACTIVE:
        raise RedemptionRefused(
            _("Coupon %(code)s is %(state)s.") % {"code": coupon.code, "state": coupon.get_state_display()}
        )

    lower, upper = _eligibility_window(coupon, request.period_start, request.period_end)
    eligible = UsageRecord.objects.filter(
        provider=provider,
        enterprise_id=coupon.organisation_id,
        redemption__isnull=True,
        started_at__gte=lower,
        ended_at__lte=upper,
    )
    if request.record_ids is None:
        records = list(eligible.select_for_update(of=("self",)).select_related("accelerator").order_by("pk"))
    else:
        wanted = list(dict.fromkeys(request.record_ids))
        found = {
            r.record_id: r
            for r in UsageRecord.objects.select_for_update(of=("self",))
            .select_related("accelerator")
            .filter(provider=provider, record_id__in=wanted)
            .order_by("pk")
        }
        for index, record_id in enumerate(wanted):
            record = found.get(record_id)
            if record is None:
                problems.append(
                    Problem(
                        _("no usage record %(id)s from this provider") % {"id": record_id}, line=index, column="records"
                    )
                )
            elif record.enterprise_id != coupon.organisation_id:
                problems.append(
                    Problem(
                        _("record %(id)s is another enterprise's usage") % {"id": record_id},
                        line=index,
                        column="records",
                    )
                )
            elif record.redemption_id is not None:
                problems.append(
                    Problem(
                        _("record %(id)s already backs redemption %(r)s")
                        % {"id": record_id, "r": record.redemption_id},
                        line=index,
                        column="records",
                    )
                )
            elif not (lower <= record.started_at and record.ended_at <= upper):
                problems.append(
                    Problem(
                        _("record %(id)s falls outside the period, the coupon's validity or the programme")
                        % {"id": record_id},
                        line=index,
                        column="records",
                    )
                )
        if problems:
            raise ValidationFailed(_("Some records cannot back this redemption."), details=problems)
        records = [found[record_id] for record_id in wanted]
    if not records:
        raise RedemptionRefused(_("No unredeemed usage of this enterprise falls in the period."))

    program = coupon.program
    lines, metered, computed = [], Decimal(0), Decimal(0)
    for record in records:
        rate = program.rate_for(domestic=record.accelerator.domestic)
        lines.append((record, rate))
        metered += record.amount
        computed += record.amount * rate
    computed = computed.quantize(CENT, rounding=ROUND_DOWN)
    balance = coupon.account.balance
    room = max(Decimal(0), subsidy_cap_room(coupon))
    subsidy = min(computed, balance, room)
    capped_by = [name for name, value in (("coupon balance", balance), ("annual cap", room)) if value < computed]
    if subsidy <= 0:
        raise RedemptionRefused(_("Nothing can be redeemed: the coupon's balance or the annual cap is used up."))

    try:
        with transaction.atomic():
            redemption = Redemption.objects.create(
                provider=provider,
                coupon=coupon,
                period_start=request.period_start,
                period_end=request.period_end,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                records=len(records),
                metered_amount=metered,
                subsidy=subsidy,
                capped_by=", ".join(capped_by),
                state=Redemption.State.PENDING_ADJUSTMENT if statement.is_closed else Redemption.State.POSTED,
            )
    except IntegrityError:
        # The same key was stored meanwhile by a racing request (on another coupon): answer as
        # a replay, or a 409 if that request was a different claim.
        earlier = _stored_claim(provider, idempotency_key, fingerprint)
        if earlier is None:
            raise
        return earlier, True
    RedemptionLine.objects.bulk_create(
        [RedemptionLine(redemption=redemption, usage_record=r, amount=r.amount, rate=rate) for r, rate in lines]
    )
    UsageRecord.objects.filter(pk__in=[r.pk for r in records]).update(redemption=redemption)
    if statement.is_closed:
        audit_record(
            actor=actor or f"provider:{provider.organisation.uscc}",
            obj=redemption,
            action="redemption.claim",
            to_state=redemption.state,
            reason=_("the statement for %(month)s is closed; staff must approve an adjustment")
            % {"month": f"{statement.month:%Y-%m}"},
        )
        return redemption, False
    _post(redemption, coupon=coupon, statement=statement, actor=actor)
    return redemption, False


def _post(redemption: Redemption, *, coupon: Coupon, statement: Statement, actor) -> None:
    payable = provider_account(coupon.program, redemption.provider, Account.Kind.PROVIDER_PAYABLE)
    txn = ledger_post(
        kind=LedgerTransaction.Kind.REDEEM,
        program=coupon.program,
        actor=actor,
        subject=f"redemption:{redemption.pk}",
        memo=f"{coupon.code} {redemption.period_start}..{redemption.period_end}",
        idempotency_key=f"redeem:{redemption.pk}",
        lines=[(coupon.account, -redemption.subsidy), (payable, redemption.subsidy)],
    )
    source = redemption.state
    redemption.transaction, redemption.statement, redemption.state = txn, statement, Redemption.State.POSTED
    redemption.save(update_fields=["transaction", "statement", "state"])
    audit_record(
        actor=actor or f"provider:{redemption.provider.organisation.uscc}",
        obj=redemption,
        action="redemption.post",
        from_state=source if source != Redemption.State.POSTED else "",
        to_state="posted",
        data={"subsidy": str(redemption.subsidy)},
    )
    coupon.account.refresh_from_db(fields=["balance"])
    if coupon.account.balance == 0 and coupon.state == Coupon.State.ACTIVE:
        coupon.state = Coupon.State.EXHAUSTED
        coupon.save(update_fields=["state"])
        audit_record(actor=actor, obj=coupon, action="coupon.exhaust", from_state="active", to_state="exhausted")


@transaction.atomic
def redemption_approve_adjustment(*, redemption: Redemption, actor, reason: str) -> Redemption:
    """Staff let a claim on usage of a closed month through: it posts now, on the provider's
    current open statement."""
    if not (reason or "").strip():
        raise ValidationFailed(_("A reason is required."), details=[Problem(_("required"), column="reason")])
    redemption = (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("provider__organisation")
        .get(pk=redemption.pk)
    )
    if redemption.state != Redemption.State.PENDING_ADJUSTMENT:
        raise Conflict(_("Only a redemption awaiting an adjustment can be approved."))
    statement = locked_statement(redemption.provider, timezone.localdate())
    coupon = locked_coupon(Coupon.objects.filter(pk=redemption.coupon_id))
    if coupon.state != Coupon.State.ACTIVE or coupon.account.balance < redemption.subsidy:
        raise RedemptionRefused(_("The coupon can no longer carry this redemption."))
    if statement.is_closed:
        raise RedemptionRefused(_("This month's statement is closed too."))
    redemption.reason = reason.strip()
    redemption.save(update_fields=["reason"])
    _post(redemption, coupon=coupon, statement=statement, actor=actor)
    return redemption


@transaction.atomic
def redemption_reverse(*, redemption: Redemption, actor, reason: str) -> Redemption:
    """Reverse a posted redemption whose statement is not paid: a reversing transaction (never
    an edit); the usage records are free again. A claim awaiting adjustment is refused instead."""
    if not (reason or "").strip():
        raise ValidationFailed(_("A reason is required."), details=[Problem(_("required"), column="reason")])
    redemption = (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("statement", "transaction")
        .get(pk=redemption.pk)
    )
    if redemption.state == Redemption.State.PENDING_ADJUSTMENT:
        redemption.state = Redemption.State.REFUSED
        redemption.reason = reason.strip()
        redemption.save(update_fields=["state", "reason"])
        UsageRecord.objects.filter(redemption=redemption).update(redemption=None)
        audit_record(
            actor=actor,
            obj=redemption,
            action="redemption.refuse",
            from_state="pending_adjustment",
            to_state="refused",
            reason=reason,
        )
        return redemption
    if redemption.state != Redemption.State.POSTED:
        raise Conflict(_("Only a posted redemption can be reversed."))
    if (
        redemption.statement
        and Statement.objects.select_for_update().get(pk=redemption.statement_id).state == Statement.State.PAID
    ):
        raise Conflict(_("The statement of this redemption is paid; it can no longer be reversed."))
    coupon = locked_coupon(Coupon.objects.filter(pk=redemption.coupon_id))
    reversal = ledger_reverse(original=redemption.transaction, memo=reason[:300], actor=actor)
    redemption.state, redemption.reversal, redemption.reason = Redemption.State.REVERSED, reversal, reason.strip()
    redemption.save(update_fields=["state", "reversal", "reason"])
    UsageRecord.objects.filter(redemption=redemption).update(redemption=None)
    audit_record(
        actor=actor,
        obj=redemption,
        action="redemption.reverse",
        from_state="posted",
        to_state="reversed",
        reason=reason,
    )
    coupon.account.refresh_from_db(fields=["balance"])
    if coupon.state == Coupon.State.EXHAUSTED:
        coupon.state = Coupon.State.ACTIVE
        coupon.save(update_fields=["state"])
        audit_record(
            actor=actor,
            obj=coupon,
            action="coupon.reactivate",
            from_state="exhausted",
            to_state="active",
            reason=reason,
        )
    elif coupon.state in (Coupon.State.EXPIRED, Coupon.State.REVOKED):
        # The coupon already ended: what comes back goes on to the budget.
        kind = LedgerTransaction.Kind.EXPIRE if coupon.state == Coupon.State.EXPIRED else LedgerTransaction.Kind.REVOKE
        return_balance(coupon, kind=kind, actor=actor, reason=_("reversal on an ended coupon"), to_state=coupon.state)
    return redemption
