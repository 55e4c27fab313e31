from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class Coupon(models.Model):
    """A coupon issued on approval. Its money is the balance of its ledger ``account``; the
    face value is what was moved there from the programme budget when it was issued."""

    class State(models.TextChoices):
        ACTIVE = "active", _("active")
        FROZEN = "frozen", _("frozen")
        EXPIRED = "expired", _("expired")
        REVOKED = "revoked", _("revoked")
        EXHAUSTED = "exhausted", _("exhausted")

    code = models.CharField(_("code"), max_length=30, unique=True)
    application = models.OneToOneField(
        "coupons.Application", verbose_name=_("application"), on_delete=models.PROTECT, related_name="coupon"
    )
    organisation = models.ForeignKey(
        "enterprises.Organisation", verbose_name=_("enterprise"), on_delete=models.PROTECT, related_name="coupons"
    )
    program = models.ForeignKey(
        "coupons.Program", verbose_name=_("programme"), on_delete=models.PROTECT, related_name="coupons"
    )
    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="coupons"
    )
    account = models.OneToOneField("coupons.Account", on_delete=models.PROTECT, related_name="coupon")
    face_value = models.DecimalField(_("face value (yuan)"), max_digits=14, decimal_places=2)
    # What went back to the budget when the coupon was revoked or expired.
    returned_amount = models.DecimalField(_("returned (yuan)"), max_digits=14, decimal_places=2, default=0)
    valid_from = models.DateTimeField(_("valid from"))
    valid_until = models.DateTimeField(_("valid until"), db_index=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.ACTIVE, db_index=True)
    issued_at = models.DateTimeField(_("issued"), auto_now_add=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-issued_at"]
        constraints = [
            models.CheckConstraint(condition=Q(face_value__gt=0), name="coupon_face_value_positive"),
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="coupon_validity_ordered"),
            models.CheckConstraint(
                condition=Q(returned_amount__gte=0, returned_amount__lte=F("face_value")),
                name="coupon_returned_within_face_value",
            ),
        ]

    def __str__(self):
        return self.code
