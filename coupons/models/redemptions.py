"""Redemptions against metered usage, and monthly settlement with providers."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class Statement(models.Model):
    """A provider's monthly settlement statement: the redemptions posted for that month.
    Open → approved by staff → paid (provider payable → provider paid in the ledger). Once
    approved it is closed: late usage for that month needs an adjustment staff approve."""

    class State(models.TextChoices):
        OPEN = "open", _("open")
        APPROVED = "approved", _("approved")
        PAID = "paid", _("paid")

    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="statements"
    )
    month = models.DateField(_("month"), help_text=_("The first day of the month."))
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(_("approved"), null=True, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("settlement statement")
        verbose_name_plural = _("settlement statements")
        ordering = ["-month", "provider_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "month"], name="one_statement_per_provider_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="statement_month_is_first_day"),
        ]

    def __str__(self):
        return f"{self.provider} {self.month:%Y-%m}"

    @property
    def is_closed(self) -> bool:
        return self.state != self.State.OPEN


class Redemption(models.Model):
    """A provider's claim of subsidy for one coupon and one billing period, backed by usage
    records. Posted: coupon → provider payable. Reversed: a reversing transaction, never an
    edit, and the records are free again."""

    class State(models.TextChoices):
        PENDING_ADJUSTMENT = "pending_adjustment", _("awaiting adjustment approval")
        POSTED = "posted", _("posted")
        REVERSED = "reversed", _("reversed")
        REFUSED = "refused", _("refused")

    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="redemptions"
    )
    coupon = models.ForeignKey(
        "coupons.Coupon", verbose_name=_("coupon"), on_delete=models.PROTECT, related_name="redemptions"
    )
    period_start = models.DateField(_("period start"))
    period_end = models.DateField(_("period end"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=100)
    request_hash = models.CharField(_("request hash"), max_length=64)
    records = models.PositiveIntegerField(_("usage records"))
    metered_amount = models.DecimalField(_("metered amount (yuan)"), max_digits=16, decimal_places=2)
    subsidy = models.DecimalField(_("subsidy (yuan)"), max_digits=14, decimal_places=2)
    capped_by = models.CharField(_("capped by"), max_length=100, blank=True)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, db_index=True)
    statement = models.ForeignKey(
        Statement, null=True, blank=True, on_delete=models.PROTECT, related_name="redemptions"
    )
    transaction = models.OneToOneField(
        "coupons.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reversal = models.OneToOneField(
        "coupons.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("redemption")
        verbose_name_plural = _("redemptions")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "idempotency_key"], name="redemption_key_once_per_provider"),
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")), name="redemption_period_ordered"),
            models.CheckConstraint(condition=Q(subsidy__gte=0), name="redemption_subsidy_not_negative"),
        ]

    def __str__(self):
        return f"R{self.pk} {self.coupon_id} {self.period_start:%Y-%m}"


class RedemptionLine(models.Model):
    """Which usage records a redemption covered (kept after a reversal, for the record)."""

    redemption = models.ForeignKey(Redemption, on_delete=models.PROTECT, related_name="lines")
    usage_record = models.ForeignKey("coupons.UsageRecord", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    rate = models.DecimalField(_("rate"), max_digits=4, decimal_places=3)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["redemption", "usage_record"], name="redemption_line_once")]

    def __str__(self):
        return f"{self.redemption_id}:{self.usage_record_id}"


class ReferencePrice(models.Model):
    """A dated market price per card-hour that staff maintain; the fraud module compares billed
    prices with the one in force on the day of use."""

    accelerator = models.ForeignKey(
        "coupons.Accelerator", verbose_name=_("card model"), on_delete=models.CASCADE, related_name="reference_prices"
    )
    valid_from = models.DateField(_("valid from"))
    price_per_card_hour = models.DecimalField(_("price per card-hour (yuan)"), max_digits=12, decimal_places=4)
    source = models.CharField(_("source"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("reference price")
        verbose_name_plural = _("reference prices")
        ordering = ["accelerator", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["accelerator", "valid_from"], name="one_reference_price_per_day")
        ]

    def __str__(self):
        return f"{self.accelerator} {self.price_per_card_hour} from {self.valid_from}"
