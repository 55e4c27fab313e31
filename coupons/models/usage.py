"""Metered usage reported by providers: the ground truth coupons are redeemed against."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class UsageBatch(models.Model):
    """One batch a provider sent (API or file). Identified by the SHA-256 of its body, so that a
    replay returns the stored result without touching the records again."""

    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="usage_batches"
    )
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    source = models.CharField(_("source"), max_length=10, default="api")  # api, csv, file
    records = models.PositiveIntegerField(_("records"))
    created = models.PositiveIntegerField(_("created"))
    duplicates = models.PositiveIntegerField(_("already stored"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True)

    class Meta:
        verbose_name = _("usage batch")
        verbose_name_plural = _("usage batches")
        constraints = [models.UniqueConstraint(fields=["provider", "sha256"], name="usage_batch_once_per_provider")]

    def __str__(self):
        return f"{self.provider_id}:{self.sha256[:12]}"

    def result(self) -> dict:
        return {"batch": self.pk, "records": self.records, "created": self.created, "duplicates": self.duplicates}


class UsageRecord(models.Model):
    """One metered job. ``(provider, record_id)`` is unique: a record counts once. The
    provider's own figures are kept as sent (card-hours of its card model, amount billed) next
    to the normalised standard unit (dense FP16 PFLOPS-hours) and the price per card-hour."""

    # No separate indexes on provider, enterprise and redemption: the unique (provider,
    # record_id), the (enterprise, provider, started_at) and the redemption indexes of Meta cover
    # them, and every index slows ingestion.
    provider = models.ForeignKey(
        "enterprises.Provider",
        verbose_name=_("provider"),
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
    )
    record_id = models.CharField(_("record id"), max_length=64)
    enterprise = models.ForeignKey(
        "enterprises.Organisation",
        verbose_name=_("enterprise"),
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
    )
    accelerator = models.ForeignKey(
        "coupons.Accelerator", verbose_name=_("card model"), on_delete=models.PROTECT, related_name="+"
    )
    gpu_count = models.PositiveIntegerField(_("cards"))
    started_at = models.DateTimeField(_("started"))
    ended_at = models.DateTimeField(_("ended"))
    card_hours = models.DecimalField(_("card-hours"), max_digits=14, decimal_places=4)
    amount = models.DecimalField(_("amount billed (yuan)"), max_digits=14, decimal_places=2)
    price_per_card_hour = models.DecimalField(_("price per card-hour"), max_digits=12, decimal_places=4)
    provider_unit = models.CharField(_("provider's unit"), max_length=20, default="card_hour")
    # card_hours × dense FP16 TFLOPS / 1000; null where the card's TFLOPS are unknown.
    standard_units = models.DecimalField(
        _("PFLOPS-hours (FP16 dense)"), max_digits=18, decimal_places=6, null=True, blank=True
    )
    payload_hash = models.CharField(_("payload hash"), max_length=32)
    batch = models.ForeignKey(UsageBatch, on_delete=models.PROTECT, related_name="+")
    received_at = models.DateTimeField(_("received"))
    # The redemption this record backs now (a reversal frees it again).
    redemption = models.ForeignKey(
        "coupons.Redemption",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
    )

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        constraints = [
            models.UniqueConstraint(fields=["provider", "record_id"], name="usage_record_once_per_provider"),
            models.CheckConstraint(condition=Q(ended_at__gt=F("started_at")), name="usage_ends_after_it_starts"),
            models.CheckConstraint(
                condition=Q(amount__gte=0, card_hours__gt=0, gpu_count__gt=0), name="usage_amounts_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["enterprise", "provider", "started_at"], name="usage_enterprise_provider_idx"),
            models.Index(fields=["redemption"], name="usage_redemption_idx"),
        ]

    def __str__(self):
        return f"{self.record_id}"


class UsageWeek(models.Model):
    """Metered usage summed per (enterprise, provider, card model, local week): what the fraud
    features read instead of every record. Maintained by ingestion in the transaction that
    stores the records (``coupons.services.usage``), never edited; ``rebuild_usage_weeks``
    recomputes it from the records and ``usage_weeks_in_step`` checks that the two agree.

    The shape counters are those of the features: card-hours of flat 24-hour records, records
    billing a whole hundred yuan, records starting between midnight and 6 a.m. and at weekends
    (local time, Asia/Shanghai)."""

    enterprise = models.ForeignKey(
        "enterprises.Organisation",
        verbose_name=_("enterprise"),
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # the unique key starts with it
    )
    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="+", db_index=False
    )
    accelerator = models.ForeignKey(
        "coupons.Accelerator", verbose_name=_("card model"), on_delete=models.PROTECT, related_name="+", db_index=False
    )
    week = models.DateField(_("week (Monday)"))
    records = models.PositiveIntegerField(_("records"))
    card_hours = models.DecimalField(_("card-hours"), max_digits=18, decimal_places=4)
    amount = models.DecimalField(_("amount billed (yuan)"), max_digits=18, decimal_places=2)
    flat_card_hours = models.DecimalField(_("card-hours of flat 24-hour records"), max_digits=18, decimal_places=4)
    round_records = models.PositiveIntegerField(_("records of a whole hundred yuan"))
    night_records = models.PositiveIntegerField(_("records starting 0-6 a.m."))
    weekend_records = models.PositiveIntegerField(_("records starting at weekends"))

    class Meta:
        verbose_name = _("weekly usage")
        verbose_name_plural = _("weekly usage")
        constraints = [
            models.UniqueConstraint(fields=["enterprise", "provider", "accelerator", "week"], name="usage_week_once"),
        ]
        indexes = [models.Index(fields=["week"], name="usage_week_idx")]

    def __str__(self):
        return f"{self.enterprise_id}/{self.provider_id}/{self.accelerator_id} {self.week}"
