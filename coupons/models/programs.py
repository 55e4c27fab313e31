from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RiskBand(models.TextChoices):
    LOW = "low", _("low")
    MEDIUM = "medium", _("medium")
    HIGH = "high", _("high")

    @classmethod
    def rank(cls, band: str) -> int:
        return {cls.LOW: 0, cls.MEDIUM: 1, cls.HIGH: 2}.get(band, -1)


RATE_VALIDATORS = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))]


class Program(models.Model):
    """A yearly round of coupons with its budget, rates, cap, window and review thresholds."""

    code = models.CharField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=200)
    budget = models.DecimalField(
        _("budget (yuan)"), max_digits=16, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    rate = models.DecimalField(
        _("base rate"),
        max_digits=4,
        decimal_places=3,
        validators=RATE_VALIDATORS,
        help_text=_("Share of compute spend subsidised, e.g. 0.200"),
    )
    domestic_rate = models.DecimalField(
        _("domestic-chip rate"), max_digits=4, decimal_places=3, validators=RATE_VALIDATORS
    )
    per_enterprise_cap = models.DecimalField(
        _("per-enterprise annual cap (yuan)"),
        max_digits=16,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    opens = models.DateField(_("applications open"))
    closes = models.DateField(_("applications close"))
    validity_days = models.PositiveIntegerField(_("coupon validity (days)"), validators=[MinValueValidator(1)])
    second_review_amount = models.DecimalField(
        _("second review above (yuan)"),
        max_digits=16,
        decimal_places=2,
        default=Decimal("500000.00"),
        help_text=_("An approval granting more than this needs a second, different reviewer."),
    )
    second_review_band = models.CharField(
        _("second review from risk band"),
        max_length=10,
        choices=RiskBand.choices,
        default=RiskBand.HIGH,
        help_text=_("An approval of an application scored in this band or above needs a second reviewer."),
    )
    risk_medium_from = models.PositiveSmallIntegerField(
        _("medium risk from score"), default=40, validators=[MaxValueValidator(100)]
    )
    risk_high_from = models.PositiveSmallIntegerField(
        _("high risk from score"), default=70, validators=[MaxValueValidator(100)]
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("programme")
        verbose_name_plural = _("programmes")
        ordering = ["-opens", "code"]
        constraints = [
            models.CheckConstraint(condition=Q(closes__gte=F("opens")), name="program_window_ordered"),
            models.CheckConstraint(
                condition=Q(rate__gte=0, rate__lte=1, domestic_rate__gte=0, domestic_rate__lte=1),
                name="program_rates_between_0_and_1",
            ),
            models.CheckConstraint(
                condition=Q(budget__gt=0, per_enterprise_cap__gt=0), name="program_budget_and_cap_positive"
            ),
            models.CheckConstraint(
                condition=Q(risk_high_from__gt=F("risk_medium_from")), name="program_risk_bands_ordered"
            ),
        ]

    def __str__(self):
        return f"{self.code} {self.name}"

    def is_open(self, on: dt.date | None = None) -> bool:
        on = on or timezone.localdate()
        return self.opens <= on <= self.closes

    def rate_for(self, *, domestic: bool) -> Decimal:
        return self.domestic_rate if domestic else self.rate

    def band_for(self, score: int | None) -> str:
        if score is None:
            return ""
        return self.bands_for([score])[0]

    def bands_for(self, scores) -> list[str]:
        """The band of each score (a sequence of integers), computed for all at once."""
        import numpy as np

        scores = np.asarray(scores)
        return np.where(
            scores >= self.risk_high_from,
            str(RiskBand.HIGH),
            np.where(scores >= self.risk_medium_from, str(RiskBand.MEDIUM), str(RiskBand.LOW)),
        ).tolist()
