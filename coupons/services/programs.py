"""Programmes and their budget accounts."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from core.audit import audit_record
from core.errors import Problem, ValidationFailed
from coupons.models import Account, LedgerTransaction, Program
from coupons.selectors import cap_used_bulk
from coupons.services.ledger import ledger_post, program_account

PROGRAM_FIELDS = [
    "name",
    "budget",
    "rate",
    "domestic_rate",
    "per_enterprise_cap",
    "opens",
    "closes",
    "validity_days",
    "second_review_amount",
    "second_review_band",
    "risk_medium_from",
    "risk_high_from",
]


@transaction.atomic
def program_create(*, code: str, actor=None, **values) -> Program:
    """Create a programme with its funding, budget and returned accounts, and fund the budget
    from the appropriation in one balanced transaction."""
    program = Program(code=code, **values)
    program.full_clean()
    program.save()
    for kind in (Account.Kind.FUNDING, Account.Kind.BUDGET, Account.Kind.RETURNED):
        Account.objects.create(kind=kind, program=program, name=f"{Account.Kind(kind).label} · {program.code}")
    ledger_post(
        kind=LedgerTransaction.Kind.FUND,
        program=program,
        actor=actor,
        subject=f"program:{program.code}",
        memo="initial budget",
        lines=[
            (program_account(program, Account.Kind.FUNDING), -program.budget),
            (program_account(program, Account.Kind.BUDGET), program.budget),
        ],
    )
    audit_record(
        actor=actor, obj=program, action="program.create", to_state="created", data={"budget": str(program.budget)}
    )
    return program


@transaction.atomic
def program_update(*, program: Program, actor=None, **values) -> Program:
    """Change a programme. A budget change posts an adjustment between funding and budget; a
    cut larger than what is still unissued is refused by the ledger."""
    # FOR NO KEY UPDATE: one change of a programme at a time, without blocking the postings
    # that reference the programme meanwhile (their foreign keys take a KEY SHARE lock; a FOR
    # UPDATE here, taken before the accounts, would wait on postings that hold the accounts and
    # wait on it: a deadlock).
    program = Program.objects.select_for_update(no_key=True).get(pk=program.pk)
    old_budget = program.budget
    for name, value in values.items():
        if name not in PROGRAM_FIELDS:
            raise ValidationFailed(f"{name} cannot be changed")
        setattr(program, name, value)
    program.full_clean()
    if "per_enterprise_cap" in values:
        used = cap_used_bulk(
            organisation_ids=set(program.coupons.values_list("organisation_id", flat=True))
            | set(program.applications.filter(historical=True).values_list("organisation_id", flat=True)),
            program_ids={program.pk},
        )
        highest = max(used.values(), default=Decimal(0))
        if program.per_enterprise_cap < highest:
            raise ValidationFailed(
                f"An enterprise already holds {highest} yuan in this programme; the cap cannot go below it.",
                details=[Problem(f"below {highest}", column="per_enterprise_cap")],
            )
    delta = program.budget - old_budget
    if delta:
        ledger_post(
            kind=LedgerTransaction.Kind.ADJUST,
            program=program,
            actor=actor,
            subject=f"program:{program.code}",
            memo=f"budget {old_budget} → {program.budget}",
            lines=[
                (program_account(program, Account.Kind.FUNDING), -delta),
                (program_account(program, Account.Kind.BUDGET), delta),
            ],
        )
    program.save()
    audit_record(actor=actor, obj=program, action="program.update", data={k: str(v) for k, v in values.items()})
    return program


def grant_ceiling(application) -> Decimal:
    """Claimed amount × the programme's rate for the card (domestic or not), to the fen below."""
    return (application.claimed_amount * application.rate).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
