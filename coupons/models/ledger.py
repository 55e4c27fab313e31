"""The double-entry ledger. Every movement of money is a ``LedgerTransaction`` whose entries sum
to zero; an account's ``balance`` is a cache of the sum of its entries, changed only by
``coupons.services.ledger.ledger_post`` under a row lock. Entries are never edited or deleted
(on PostgreSQL a trigger refuses it): a correction is a reversing transaction."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Account(models.Model):
    class Kind(models.TextChoices):
        # The department's appropriation for a programme: the one account whose balance is
        # negative (it is where the budget comes from).
        FUNDING = "funding", _("programme funding")
        BUDGET = "budget", _("programme budget")
        COUPON = "coupon", _("coupon")
        PROVIDER_PAYABLE = "provider_payable", _("provider payable")
        PROVIDER_PAID = "provider_paid", _("provider paid")
        # Money that left a programme for good (handed back to the treasury).
        RETURNED = "returned", _("returned")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    program = models.ForeignKey(
        "coupons.Program",
        verbose_name=_("programme"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accounts",
    )
    provider = models.ForeignKey(
        "enterprises.Provider",
        verbose_name=_("provider"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accounts",
    )
    name = models.CharField(_("name"), max_length=200)
    balance = models.DecimalField(_("balance"), max_digits=16, decimal_places=2, default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="funding") | Q(balance__gte=0), name="account_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(kind="funding") | Q(balance__lte=0), name="funding_balance_not_positive"
            ),
            models.UniqueConstraint(
                fields=["kind", "program"],
                condition=Q(kind__in=["funding", "budget", "returned"]),
                name="one_programme_account_per_kind",
            ),
            models.UniqueConstraint(
                fields=["kind", "provider", "program"],
                condition=Q(kind__in=["provider_payable", "provider_paid"]),
                name="one_provider_account_per_programme",
            ),
        ]

    def __str__(self):
        return self.name


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        FUND = "fund", _("programme funded")
        ISSUE = "issue", _("coupon issued")
        REDEEM = "redeem", _("redemption")
        REVERSE = "reverse", _("reversal")
        REVOKE = "revoke", _("coupon revoked")
        EXPIRE = "expire", _("coupon expired")
        PAY = "pay", _("provider paid")
        RETURN = "return", _("returned to the treasury")
        ADJUST = "adjust", _("budget adjustment")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, db_index=True)
    program = models.ForeignKey(
        "coupons.Program", verbose_name=_("programme"), on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    memo = models.CharField(_("memo"), max_length=300, blank=True)
    # What it is about, for readers: "coupon:AH26-…", "redemption:123".
    subject = models.CharField(_("subject"), max_length=100, blank=True, db_index=True)
    # A transaction posted at most once per key (issuing for an application, a redemption …).
    idempotency_key = models.CharField(_("idempotency key"), max_length=120, null=True, blank=True, unique=True)
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("posted"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("ledger transaction")
        verbose_name_plural = _("ledger transactions")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"#{self.pk} {self.get_kind_display()} {self.subject}"


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(_("amount"), max_digits=16, decimal_places=2)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero")]

    def __str__(self):
        return f"{self.account}: {self.amount}"
