"""Monthly settlement with providers: staff approve a provider's statement (closing the month)
and then mark it paid, which moves each programme's total from provider payable to provider
paid in the ledger."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import Conflict
from coupons.models import Account, LedgerTransaction, Program, Redemption, Statement
from coupons.services.ledger import ledger_post, provider_account


def statement_totals(statement: Statement) -> dict[str, dict]:
    """Totals by programme code: redemptions, metered amount, subsidy (posted ones only)."""
    totals: dict[str, dict] = defaultdict(lambda: {"redemptions": 0, "metered": Decimal(0), "subsidy": Decimal(0)})
    for code, metered, subsidy in statement.redemptions.filter(state=Redemption.State.POSTED).values_list(
        "coupon__program__code", "metered_amount", "subsidy"
    ):
        entry = totals[code]
        entry["redemptions"] += 1
        entry["metered"] += metered
        entry["subsidy"] += subsidy
    return dict(totals)


@transaction.atomic
def statement_approve(*, statement: Statement, actor) -> Statement:
    statement = Statement.objects.select_for_update().get(pk=statement.pk)
    if statement.state != Statement.State.OPEN:
        raise Conflict(
            _("Only an open statement can be approved; this one is %(state)s.")
            % {"state": statement.get_state_display()}
        )
    statement.state, statement.approved_by, statement.approved_at = Statement.State.APPROVED, actor, timezone.now()
    statement.save(update_fields=["state", "approved_by", "approved_at"])
    audit_record(
        actor=actor,
        obj=statement,
        action="statement.approve",
        from_state="open",
        to_state="approved",
        data={k: str(v["subsidy"]) for k, v in statement_totals(statement).items()},
    )
    return statement


@transaction.atomic
def statement_pay(*, statement: Statement, actor) -> Statement:
    """Record the payment: provider payable → provider paid, per programme."""
    statement = (
        Statement.objects.select_for_update(of=("self",)).select_related("provider__organisation").get(pk=statement.pk)
    )
    if statement.state != Statement.State.APPROVED:
        raise Conflict(
            _("Only an approved statement can be marked paid; this one is %(state)s.")
            % {"state": statement.get_state_display()}
        )
    totals = statement_totals(statement)
    for code, entry in sorted(totals.items()):
        if entry["subsidy"] <= 0:
            continue
        program = Program.objects.get(code=code)
        ledger_post(
            kind=LedgerTransaction.Kind.PAY,
            program=program,
            actor=actor,
            subject=f"statement:{statement.pk}",
            memo=f"{statement.provider.organisation.name} {statement.month:%Y-%m}",
            idempotency_key=f"pay:statement:{statement.pk}:{code}",
            lines=[
                (provider_account(program, statement.provider, Account.Kind.PROVIDER_PAYABLE), -entry["subsidy"]),
                (provider_account(program, statement.provider, Account.Kind.PROVIDER_PAID), entry["subsidy"]),
            ],
        )
    statement.state, statement.paid_by, statement.paid_at = Statement.State.PAID, actor, timezone.now()
    statement.save(update_fields=["state", "paid_by", "paid_at"])
    audit_record(actor=actor, obj=statement, action="statement.pay", from_state="approved", to_state="paid")
    return statement


STATEMENT_COLUMNS = [
    "redemption",
    "state",
    "coupon",
    "enterprise_uscc",
    "enterprise",
    "program",
    "period_start",
    "period_end",
    "records",
    "metered_amount",
    "subsidy",
    "posted_at",
]


def statement_csv(statement: Statement) -> str:
    """The statement as CSV: one line per redemption, then a total per programme."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(STATEMENT_COLUMNS)
    zone = timezone.get_current_timezone()
    redemptions = statement.redemptions.select_related("coupon__organisation", "coupon__program").order_by(
        "created_at", "pk"
    )
    for r in redemptions:
        writer.writerow(
            [
                r.pk,
                r.state,
                r.coupon.code,
                r.coupon.organisation.uscc,
                r.coupon.organisation.name,
                r.coupon.program.code,
                r.period_start,
                r.period_end,
                r.records,
                r.metered_amount,
                r.subsidy,
                r.created_at.astimezone(zone).isoformat(),
            ]
        )
    for code, entry in sorted(statement_totals(statement).items()):
        writer.writerow(
            ["total", "", "", "", "", code, "", "", entry["redemptions"], entry["metered"], entry["subsidy"], ""]
        )
    return buffer.getvalue()
