from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


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
