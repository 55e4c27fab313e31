"""Posting to the double-entry ledger: the only code that changes an account's balance."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.db import connection

from core.errors import ApplicationError
from coupons.models import Account, LedgerEntry, LedgerTransaction, Program

CENT = Decimal("0.01")


class InsufficientFunds(ApplicationError):
    code = "insufficient_funds"
    status = 409


def program_account(program: Program, kind: str) -> Account:
    return Account.objects.get(program=program, kind=kind)


def provider_account(program: Program, provider, kind: str) -> Account:
    """The provider's payable or paid account for one programme, created on first use."""
    label = Account.Kind(kind).label
    account, _ = Account.objects.get_or_create(
        kind=kind,
        program=program,
        provider=provider,
        defaults={"name": f"{label} · {provider.organisation.name} · {program.code}"},
    )
    return account


def ledger_post(
    *,
    kind: str,
    program: Program,
    lines: list[tuple[Account, Decimal]],
    memo: str = "",
    subject: str = "",
    actor=None,
    idempotency_key: str | None = None,
    reverses: LedgerTransaction | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction. ``lines`` are (account, signed amount): positive adds to
    the account, negative takes from it; they must sum to zero.

    Must run inside the caller's ``transaction.atomic`` so that the posting and the business
    change it belongs to (an approval, a redemption) land together. Accounts are locked in
    primary-key order, so concurrent postings cannot deadlock on each other; a posting that
    would take any account other than a funding account below zero is refused."""
    if not connection.in_atomic_block:
        raise RuntimeError("ledger_post must run inside transaction.atomic")
    per_account: dict[int, Decimal] = defaultdict(Decimal)
    for account, amount in lines:
        if not isinstance(amount, Decimal):
            raise TypeError("ledger amounts are Decimal")
        if amount != amount.quantize(CENT):
            raise ValueError(f"ledger amount {amount} has more than two decimal places")
        per_account[account.pk] += amount
    per_account = {pk: amount for pk, amount in per_account.items() if amount != 0}
    if len(per_account) < 2:
        raise ValueError("a ledger transaction moves money between at least two accounts")
    if sum(per_account.values()) != 0:
        raise ValueError(f"unbalanced ledger transaction: entries sum to {sum(per_account.values())}")

    locked = {
        account.pk: account for account in Account.objects.select_for_update().filter(pk__in=per_account).order_by("pk")
    }
    for pk, amount in per_account.items():
        account = locked[pk]
        new_balance = account.balance + amount
        if account.kind != Account.Kind.FUNDING and new_balance < 0:
            raise InsufficientFunds(
                f"{account.name} holds {account.balance} yuan; {-amount} yuan cannot be taken from it."
            )
        account.balance = new_balance

    txn = LedgerTransaction.objects.create(
        kind=kind,
        program=program,
        memo=memo[:300],
        subject=subject[:100],
        idempotency_key=idempotency_key,
        reverses=reverses,
        created_by=actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None,
    )
    LedgerEntry.objects.bulk_create(
        [LedgerEntry(transaction=txn, account_id=pk, amount=amount) for pk, amount in per_account.items()]
    )
    for pk in per_account:
        Account.objects.filter(pk=pk).update(balance=locked[pk].balance)
    for account, _amount in lines:  # the caller's instances show the new balances too
        if account.pk in locked:
            account.balance = locked[account.pk].balance
    return txn


def ledger_reverse(*, original: LedgerTransaction, memo: str = "", actor=None) -> LedgerTransaction:
    """Post the mirror image of ``original``. A transaction is reversed at most once."""
    if LedgerTransaction.objects.filter(reverses=original).exists():
        raise ApplicationError(f"Ledger transaction #{original.pk} was already reversed.", code="already_reversed")
    lines = [(entry.account, -entry.amount) for entry in original.entries.select_related("account")]
    return ledger_post(
        kind=LedgerTransaction.Kind.REVERSE,
        program=original.program,
        lines=lines,
        memo=memo or f"reverses #{original.pk}",
        subject=original.subject,
        actor=actor,
        reverses=original,
    )
