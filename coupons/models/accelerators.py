from __future__ import annotations

import re

from django.db import models
from django.utils.translation import gettext_lazy as _


def normalize_model_name(name: str) -> str:
    """How card models are matched: without regard to case, spaces, hyphens or underscores
    ("A100-80G", "a100 80g" and "A10080G" are one name)."""
    return re.sub(r"[\s\-_]+", "", name or "").lower()


class Accelerator(models.Model):
    """An accelerator (GPU/NPU) model with the figures that normalise usage across providers.
    Policy data that staff maintain in the admin."""

    name = models.CharField(_("model"), max_length=100, unique=True)
    aliases = models.CharField(
        _("aliases"), max_length=300, blank=True, help_text=_("Names providers use, separated by |")
    )
    vendor = models.CharField(_("vendor"), max_length=100)
    domestic = models.BooleanField(_("domestic chip"), default=False)
    fp16_dense_tflops = models.DecimalField(
        _("dense FP16 TFLOPS"),
        max_digits=8,
        decimal_places=1,
        null=True,
        blank=True,
        help_text=_("Dense FP16/BF16 without sparsity; blank where no source gives it."),
    )
    memory_gb = models.PositiveIntegerField(_("memory (GB)"), null=True, blank=True)
    form = models.CharField(_("form factor"), max_length=100, blank=True)
    source = models.CharField(_("source"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("accelerator model")
        verbose_name_plural = _("accelerator models")
        ordering = ["vendor", "name"]

    def __str__(self):
        return self.name

    def all_names(self) -> list[str]:
        return [self.name, *[alias.strip() for alias in self.aliases.split("|") if alias.strip()]]
