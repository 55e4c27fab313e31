from __future__ import annotations

from django.conf import settings
from django.core.validators import FileExtensionValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from coupons.models.programs import RiskBand


class Application(models.Model):
    """An enterprise's application for a coupon: the compute it claims it will rent. Its state
    changes only through ``coupons.services.workflow`` (the one state machine)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        SUBMITTED = "submitted", _("submitted")
        UNDER_REVIEW = "under_review", _("under review")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        RETURNED = "returned", _("returned for changes")
        WITHDRAWN = "withdrawn", _("withdrawn")

    OPEN_STATES = (Status.DRAFT, Status.SUBMITTED, Status.UNDER_REVIEW, Status.RETURNED)

    class Scenario(models.TextChoices):
        TRAINING = "training", _("training")
        INFERENCE = "inference", _("inference")

    reference = models.CharField(_("reference"), max_length=40, unique=True)
    organisation = models.ForeignKey(
        "enterprises.Organisation", verbose_name=_("enterprise"), on_delete=models.PROTECT, related_name="applications"
    )
    program = models.ForeignKey(
        "coupons.Program", verbose_name=_("programme"), on_delete=models.PROTECT, related_name="applications"
    )
    provider = models.ForeignKey(
        "enterprises.Provider", verbose_name=_("provider"), on_delete=models.PROTECT, related_name="applications"
    )
    accelerator = models.ForeignKey(
        "coupons.Accelerator", verbose_name=_("card model"), on_delete=models.PROTECT, related_name="+"
    )
    claimed_card_hours = models.DecimalField(
        _("claimed card-hours"), max_digits=14, decimal_places=4, validators=[MinValueValidator(0)]
    )
    claimed_amount = models.DecimalField(
        _("claimed amount (yuan)"), max_digits=14, decimal_places=2, validators=[MinValueValidator(0)]
    )
    scenario = models.CharField(_("scenario"), max_length=20, choices=Scenario.choices)
    project_summary = models.TextField(_("project summary"))
    contract = models.FileField(
        _("contract"),
        upload_to="contracts/%Y/%m/",
        blank=True,
        validators=[FileExtensionValidator(["pdf", "jpg", "jpeg", "png"])],
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True, db_index=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    granted_amount = models.DecimalField(
        _("granted amount (yuan)"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    # Imported history: the grant is recorded, no live coupon exists.
    historical = models.BooleanField(_("historical record"), default=False)
    # Written by the fraud module; kept here so that the review queue orders by risk cheaply.
    risk_score = models.PositiveSmallIntegerField(_("risk score"), null=True, blank=True, db_index=True)
    risk_band = models.CharField(_("risk band"), max_length=10, choices=RiskBand.choices, blank=True)
    # The top reasons of the latest assessment, in English, for lists and exports.
    risk_reasons = models.TextField(_("risk reasons"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("application")
        verbose_name_plural = _("applications")
        ordering = ["-created_at"]
        permissions = [("review_application", _("Can review applications"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(claimed_amount__gte=0, claimed_card_hours__gte=0), name="application_claims_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(granted_amount__isnull=True) | Q(granted_amount__gte=0),
                name="application_grant_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(granted_amount__isnull=False), name="application_approved_has_grant"
            ),
        ]
        indexes = [
            models.Index(fields=["program", "status"]),
            models.Index(fields=["organisation", "program"]),
            # The review queue's order (risk score DESC NULLS LAST, submitted_at, id) has an index
            # too, written in SQL per database: migration 0009_application_review_queue_index.
        ]

    def __str__(self):
        return self.reference

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATES

    @property
    def rate(self):
        return self.program.rate_for(domestic=self.accelerator.domestic)


class Review(models.Model):
    """One reviewer's decision on an application. An approval above the programme's thresholds
    needs two approving reviews by different people; the second one issues the coupon."""

    class Decision(models.TextChoices):
        APPROVE = "approve", _("approve")
        REJECT = "reject", _("reject")
        RETURN = "return", _("return for changes")

    application = models.ForeignKey(
        Application, verbose_name=_("application"), on_delete=models.PROTECT, related_name="reviews"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("reviewer"), on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(_("decision"), max_length=10, choices=Decision.choices)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2, null=True, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    # Reviews of a round that ended (returned for changes and resubmitted) no longer count.
    superseded = models.BooleanField(_("superseded"), default=False)
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        ordering = ["at"]

    def __str__(self):
        return f"{self.application} {self.decision} by {self.reviewer}"


class ApplicationMessage(models.Model):
    """A message meant for the enterprise (why it was returned or rejected, what was granted)."""

    application = models.ForeignKey(
        Application, verbose_name=_("application"), on_delete=models.CASCADE, related_name="messages"
    )
    body = models.TextField(_("message"))
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("message to the enterprise")
        verbose_name_plural = _("messages to the enterprise")
        ordering = ["at"]

    def __str__(self):
        return self.body[:60]
