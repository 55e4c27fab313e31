"""The fraud module's records: editable rule thresholds, trained model versions, risk
assessments with their reasons, audit cases and their outcomes (the training labels)."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from core.fields import DocumentField


class Outcome(models.Model):
    """An auditor's verdict on an application: the training label of the supervised model.
    Comes from a closed case, or from the historical import."""

    class Verdict(models.TextChoices):
        FRAUD = "fraud", _("confirmed fraud")
        CLEAN = "clean", _("cleared")

    class Source(models.TextChoices):
        IMPORT = "import", _("historical import")
        CASE = "case", _("audit case")

    application = models.OneToOneField(
        "coupons.Application", verbose_name=_("application"), on_delete=models.PROTECT, related_name="outcome"
    )
    verdict = models.CharField(_("verdict"), max_length=10, choices=Verdict.choices)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("audit outcome")
        verbose_name_plural = _("audit outcomes")

    def __str__(self):
        return f"{self.application} {self.verdict}"


class RiskRule(models.Model):
    """A named red flag's editable part: whether it is on, its weight and its threshold. The
    logic and the sentences live in ``fraud/rules.py``; staff tune the numbers here."""

    code = models.CharField(_("code"), max_length=50, unique=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    weight = models.PositiveSmallIntegerField(_("weight"))
    threshold = models.DecimalField(_("threshold"), max_digits=12, decimal_places=4)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("risk rule")
        verbose_name_plural = _("risk rules")
        ordering = ["code"]

    def __str__(self):
        return self.code


class ModelVersion(models.Model):
    """One trained version of the fraud model, with a fingerprint of its training data and its
    metrics on a held-out split."""

    version = models.CharField(_("version"), max_length=40, unique=True)
    trained_at = models.DateTimeField(_("trained"), auto_now_add=True)
    fingerprint = models.CharField(_("training data fingerprint"), max_length=64)
    samples = models.PositiveIntegerField(_("applications"))
    labelled = models.PositiveIntegerField(_("labelled applications"))
    frauds = models.PositiveIntegerField(_("confirmed frauds"))
    supervised = models.BooleanField(_("has a supervised model"))
    metrics = models.JSONField(_("held-out metrics"), default=dict)
    active = models.BooleanField(_("in use"), default=False)

    class Meta:
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        ordering = ["-trained_at"]

    def __str__(self):
        return self.version


class RiskAssessment(models.Model):
    """A risk score of one application at one moment, with what it rests on."""

    application = models.ForeignKey(
        "coupons.Application",
        verbose_name=_("application"),
        on_delete=models.CASCADE,
        related_name="assessments",
        db_index=False,  # assessment_latest_idx starts with it
    )
    score = models.PositiveSmallIntegerField(_("score"))
    band = models.CharField(_("band"), max_length=10)
    rule_points = models.PositiveSmallIntegerField(_("rule points"))
    anomaly = models.FloatField(_("anomaly (0-1)"), null=True)  # a model output, not money
    probability = models.FloatField(_("fraud probability"), null=True)
    # [{"code", "weight", "en", "zh"}] for rules and [{"feature", "en", "zh", "push"}] for the model
    reasons = DocumentField(_("reasons"), default=list)
    features = DocumentField(_("feature values"), default=dict)
    model_version = models.CharField(_("model version"), max_length=40)
    created_at = models.DateTimeField(_("scored"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("risk assessment")
        verbose_name_plural = _("risk assessments")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["application", "-created_at"], name="assessment_latest_idx")]

    def __str__(self):
        return f"{self.application_id}: {self.score} {self.band}"


class Case(models.Model):
    """An auditor's investigation of an application, opened from an assessment."""

    class State(models.TextChoices):
        OPEN = "open", pgettext_lazy("case state", "open")
        CLOSED = "closed", pgettext_lazy("case state", "closed")

    class Finding(models.TextChoices):
        FRAUD = "fraud", _("confirmed fraud")
        CLEARED = "cleared", _("cleared")
        INCONCLUSIVE = "inconclusive", _("inconclusive")

    application = models.ForeignKey(
        "coupons.Application", verbose_name=_("application"), on_delete=models.PROTECT, related_name="cases"
    )
    assessment = models.ForeignKey(RiskAssessment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    finding = models.CharField(_("finding"), max_length=15, choices=Finding.choices, blank=True)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(_("opened"), auto_now_add=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # Confirmed fraud: what was already redeemed is to be recovered, plus a fine of 10-50 % of it
    # (《财政违法行为处罚处分条例》 Art. 14, domain.md §1).
    receivable = models.DecimalField(_("to recover (yuan)"), max_digits=14, decimal_places=2, default=Decimal("0.00"))
    penalty_min = models.DecimalField(_("fine from (yuan)"), max_digits=14, decimal_places=2, default=Decimal("0.00"))
    penalty_max = models.DecimalField(_("fine up to (yuan)"), max_digits=14, decimal_places=2, default=Decimal("0.00"))

    class Meta:
        verbose_name = _("case")
        verbose_name_plural = _("cases")
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["application"], condition=models.Q(state="open"), name="one_open_case_per_application"
            ),
        ]

    def __str__(self):
        return f"case {self.pk} · {self.application}"


class CaseNote(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField(_("note"))
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("case note")
        verbose_name_plural = _("case notes")
        ordering = ["at"]

    def __str__(self):
        return self.body[:60]


class SummarySignature(models.Model):
    """The MinHash signature of an application's project summary (``fraud.features``), kept so
    that a rescore hashes only the summaries that are new or changed. ``digest`` identifies the
    text it was computed from; a stale row is recomputed and replaced by the next scoring."""

    application = models.OneToOneField(
        "coupons.Application", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    digest = models.CharField(_("text digest"), max_length=32)
    signature = models.BinaryField(_("MinHash signature"))

    class Meta:
        verbose_name = _("summary signature")
        verbose_name_plural = _("summary signatures")

    def __str__(self):
        return f"{self.application_id}:{self.digest[:8]}"
