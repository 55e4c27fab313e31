"""Issuing coupons and changing their state: freeze, unfreeze, revoke, expire."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import ApplicationError, ValidationFailed
from coupons.models import Account, Application, Coupon, LedgerTransaction
from coupons.services.ledger import ledger_post, program_account

# Human-readable: no 0/O, 1/I/L, so a code read over the phone is unambiguous.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _new_code(program_code: str) -> str:
    prefix = "".join(ch for ch in program_code.upper() if ch.isalnum())[:8]
    while True:
        body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
        code = f"{prefix}-{body[:4]}-{body[4:]}"
        if not Coupon.objects.filter(code=code).exists():
            return code


class CouponStateError(ApplicationError):
    code = "coupon_state"
    status = 409


def coupon_issue(*, application: Application, amount: Decimal, actor, now: dt.datetime | None = None) -> Coupon:
    """Issue the coupon of an approved application and move its face value from the programme
    budget to the coupon's account. Runs inside the approval's transaction; the budget lock
    taken by the posting serialises issuing within a programme."""
    now = now or timezone.now()
    program = application.program
    account = Account.objects.create(
        kind=Account.Kind.COUPON, program=program, name=f"{_('coupon')} · {application.reference}"
    )
    coupon = Coupon.objects.create(
        code=_new_code(program.code),
        application=application,
        organisation_id=application.organisation_id,
        program=program,
        provider_id=application.provider_id,
        account=account,
        face_value=amount,
        valid_from=now,
        valid_until=now + dt.timedelta(days=program.validity_days),
    )
    account.name = f"{_('coupon')} {coupon.code}"
    account.save(update_fields=["name"])
    ledger_post(
        kind=LedgerTransaction.Kind.ISSUE,
        program=program,
        actor=actor,
        subject=f"coupon:{coupon.code}",
        idempotency_key=f"issue:application:{application.pk}",
        memo=application.reference,
        lines=[(program_account(program, Account.Kind.BUDGET), -amount), (account, amount)],
    )
    audit_record(
        actor=actor, obj=coupon, action="coupon.issue", to_state=coupon.state, data={"face_value": str(amount)}
    )
    return coupon


def locked_coupon(coupons: QuerySet[Coupon]) -> Coupon | None:
    """The one coupon of ``coupons`` (or None), its row locked, with its account read after the
    lock was granted.

    Lock order everywhere (claims, adjustments, reversals, freezes, revocations, expiries; a
    payment takes no coupon): the statement, then the coupon, then the ledger accounts
    (``redemptions.locked_statement``, ``ledger.ledger_post``). Only the coupon's row is locked: after
    waiting for a lock PostgreSQL re-reads the locked row alone, so an account joined in the same
    query would show its balance from before the transaction waited for (a revocation then left
    money on the revoked coupon, a claim failed instead of being capped). Hence the account is
    read in a statement of its own. Every posting to a coupon's account holds the coupon's lock,
    so the balance read here stays true until the caller commits."""
    coupon = coupons.select_for_update(of=("self",)).select_related("program").first()
    if coupon is not None:
        coupon.account = Account.objects.get(pk=coupon.account_id)
    return coupon


def _locked(coupon: Coupon) -> Coupon:
    locked = locked_coupon(Coupon.objects.filter(pk=coupon.pk))
    if locked is None:
        raise Coupon.DoesNotExist(f"coupon {coupon.pk}")
    return locked


def _require_reason(reason: str) -> str:
    if not (reason or "").strip():
        raise ValidationFailed(_("A reason is required."), details=[])
    return reason.strip()


def _switch(coupon: Coupon, *, actor, reason: str, source: str, target: str, action: str, refusal: str) -> Coupon:
    """Move a coupon between active and frozen, with its audit entry."""
    reason = _require_reason(reason)
    coupon = _locked(coupon)
    if coupon.state != source:
        raise CouponStateError(refusal % {"state": coupon.get_state_display()})
    coupon.state = target
    coupon.save(update_fields=["state"])
    audit_record(actor=actor, obj=coupon, action=action, from_state=source, to_state=target, reason=reason)
    return coupon


@transaction.atomic
def coupon_freeze(*, coupon: Coupon, actor, reason: str) -> Coupon:
    return _switch(
        coupon,
        actor=actor,
        reason=reason,
        source=Coupon.State.ACTIVE,
        target=Coupon.State.FROZEN,
        action="coupon.freeze",
        refusal=_("Only an active coupon can be frozen; this one is %(state)s."),
    )


@transaction.atomic
def coupon_unfreeze(*, coupon: Coupon, actor, reason: str) -> Coupon:
    return _switch(
        coupon,
        actor=actor,
        reason=reason,
        source=Coupon.State.FROZEN,
        target=Coupon.State.ACTIVE,
        action="coupon.unfreeze",
        refusal=_("Only a frozen coupon can be unfrozen; this one is %(state)s."),
    )


def return_balance(coupon: Coupon, *, kind: str, actor, reason: str, to_state: str) -> Coupon:
    """Move what is left on the coupon back to the programme budget and end the coupon. The
    caller holds the coupon's lock (``locked_coupon``) and a balance read under it."""
    source = coupon.state
    balance = coupon.account.balance
    if balance > 0:
        ledger_post(
            kind=kind,
            program=coupon.program,
            actor=actor,
            subject=f"coupon:{coupon.code}",
            memo=reason[:300],
            lines=[(coupon.account, -balance), (program_account(coupon.program, Account.Kind.BUDGET), balance)],
        )
    coupon.returned_amount += balance
    coupon.state = to_state
    coupon.save(update_fields=["state", "returned_amount"])
    audit_record(
        actor=actor,
        obj=coupon,
        action=f"coupon.{kind}",
        from_state=source,
        to_state=to_state,
        reason=reason,
        data={"returned": str(balance)},
    )
    return coupon


@transaction.atomic
def coupon_revoke(*, coupon: Coupon, actor, reason: str) -> Coupon:
    """Revoke an active or frozen coupon; its unspent balance returns to the budget."""
    reason = _require_reason(reason)
    coupon = _locked(coupon)
    if coupon.state not in (Coupon.State.ACTIVE, Coupon.State.FROZEN):
        raise CouponStateError(
            _("A coupon that is %(state)s cannot be revoked.") % {"state": coupon.get_state_display()}
        )
    return return_balance(
        coupon, kind=LedgerTransaction.Kind.REVOKE, actor=actor, reason=reason, to_state=Coupon.State.REVOKED
    )


@transaction.atomic
def coupon_expire(*, coupon: Coupon, actor=None, now: dt.datetime | None = None) -> bool:
    """Expire a coupon past its validity; False when there is nothing to do (already ended or
    still valid), so running it twice changes nothing more."""
    now = now or timezone.now()
    coupon = _locked(coupon)
    if coupon.state not in (Coupon.State.ACTIVE, Coupon.State.FROZEN) or coupon.valid_until > now:
        return False
    return_balance(
        coupon,
        kind=LedgerTransaction.Kind.EXPIRE,
        actor=actor,
        reason=_("validity ended"),
        to_state=Coupon.State.EXPIRED,
    )
    return True


def coupons_expire_due(*, now: dt.datetime | None = None) -> int:
    """Expire every active or frozen coupon whose validity has ended; returns how many."""
    now = now or timezone.now()
    due = Coupon.objects.filter(state__in=[Coupon.State.ACTIVE, Coupon.State.FROZEN], valid_until__lte=now).values_list(
        "pk", flat=True
    )
    return sum(1 for pk in list(due) if coupon_expire(coupon=Coupon(pk=pk), now=now))
