from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ExportRecord(models.Model):
    """One export: who, when, which list with which filters, how many rows, the SHA-256 of the
    file. Each record carries the hash of the one before it, so that a missing or altered record
    breaks the chain (``manage.py verify_exports``)."""

    kind = models.CharField(_("list"), max_length=40)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(_("by"), max_length=100)
    at = models.DateTimeField(_("at"), db_index=True)
    filters = models.JSONField(_("filters"), default=dict)
    rows = models.PositiveBigIntegerField(_("rows"))
    sha256 = models.CharField(_("file SHA-256"), max_length=64)
    complete = models.BooleanField(_("complete"), default=True, help_text=_("False when the download was cut off."))
    previous_hash = models.CharField(_("previous record's hash"), max_length=64)
    record_hash = models.CharField(_("record hash"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("export record")
        verbose_name_plural = _("export records")
        ordering = ["-id"]
        permissions = [
            ("view_workspace", _("Can use the audit workspace")),
            ("export_data", _("Can export lists as CSV")),
        ]

    def __str__(self):
        return f"{self.kind} {self.at:%Y-%m-%d %H:%M} {self.rows} rows"


class ExportChainHead(models.Model):
    """A single row locked while a record is appended, so that two exports finishing at once
    cannot both chain onto the same predecessor."""

    last_hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("export chain head")

    def __str__(self):
        return self.last_hash
