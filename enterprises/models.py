"""The organisation registry: enterprises and providers share one registry record; a
``Provider`` adds whitelist status and API keys. Portal users belong to one organisation."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from enterprises.validators import validate_uscc_format

region_code_validator = RegexValidator(r"^[0-9]{6}$", _("A region code is six digits (GB/T 2260)."))


class IndustryClass(models.Model):
    """A GB/T 4754-2017 entry (section, division, group or class) with its place in the
    digital-economy core (NBS Order No. 33, 2021). Policy data: staff may edit the core flag."""

    class Scope(models.TextChoices):
        NONE = "", _("outside the core")
        FULL = "full", _("fully in the core")
        PART = "part", _("partly in the core")

    code = models.CharField(_("code"), max_length=5, primary_key=True)
    level = models.PositiveSmallIntegerField(_("level"))  # 1 section … 4 class
    section = models.CharField(_("section"), max_length=1)
    division = models.CharField(_("division"), max_length=2, blank=True)
    group = models.CharField(_("group"), max_length=3, blank=True)
    name = models.CharField(_("name"), max_length=200)
    remark = models.TextField(_("remark"), blank=True)
    digital_core = models.BooleanField(_("digital-economy core"), default=False, db_index=True)
    digital_category = models.CharField(_("digital-economy category"), max_length=4, blank=True)
    digital_category_name = models.CharField(_("digital-economy category name"), max_length=100, blank=True)
    digital_scope = models.CharField(_("core scope"), max_length=4, choices=Scope.choices, blank=True)

    class Meta:
        verbose_name = _("industry class (GB/T 4754-2017)")
        verbose_name_plural = _("industry classes (GB/T 4754-2017)")
        ordering = ["code"]

    def __str__(self):
        return f"{self.code} {self.name}"


class Organisation(models.Model):
    """One record of the registry extract (design.md, registry import format)."""

    uscc = models.CharField(_("USCC"), max_length=18, unique=True, validators=[validate_uscc_format])
    name = models.CharField(_("name"), max_length=200)
    legal_representative = models.CharField(_("legal representative"), max_length=100)
    registered_address = models.CharField(_("registered address"), max_length=300)
    region_code = models.CharField(_("region code"), max_length=6, validators=[region_code_validator], db_index=True)
    registration_date = models.DateField(_("registration date"))
    registered_capital = models.DecimalField(_("registered capital (yuan)"), max_digits=16, decimal_places=2)
    paid_in_capital = models.DecimalField(_("paid-in capital (yuan)"), max_digits=16, decimal_places=2)
    industry = models.ForeignKey(IndustryClass, verbose_name=_("industry"), on_delete=models.PROTECT, related_name="+")
    main_business = models.TextField(_("main business"), blank=True)
    social_insured_employees = models.PositiveIntegerField(_("social-insured employees"))
    rd_staff = models.PositiveIntegerField(_("R&D staff"))
    core_team_city = models.CharField(_("core team city"), max_length=100, blank=True)
    contact_phone = models.CharField(_("contact phone"), max_length=30, blank=True)
    contact_email = models.EmailField(_("contact email"), blank=True)
    bank_account = models.CharField(_("bank account"), max_length=40, blank=True)

    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("Inactive organisations (deregistered, blacklisted) cannot apply.")
    )
    # Data quality: a well-formed code whose check characters fail is kept and flagged.
    uscc_checksum_ok = models.BooleanField(_("USCC checksum OK"), default=True, db_index=True)
    data_quality_note = models.CharField(_("data-quality note"), max_length=300, blank=True)
    data_quality_resolved = models.BooleanField(
        _("data quality resolved"),
        default=False,
        help_text=_("Staff confirmed the record against the official registry."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        ordering = ["name"]
        permissions = [("view_personal_data", _("Can see phones, e-mails and bank accounts unmasked"))]
        constraints = [
            models.CheckConstraint(condition=Q(rd_staff__gte=0), name="org_rd_staff_not_negative"),
            models.CheckConstraint(condition=Q(paid_in_capital__gte=0), name="org_paid_in_not_negative"),
        ]

    def __str__(self):
        return f"{self.name} ({self.uscc})"

    @property
    def has_data_quality_flag(self) -> bool:
        return not self.uscc_checksum_ok and not self.data_quality_resolved


class Provider(models.Model):
    """A compute provider: a registry organisation that may be whitelisted by the department."""

    organisation = models.OneToOneField(
        Organisation, verbose_name=_("organisation"), on_delete=models.PROTECT, related_name="provider"
    )
    whitelisted = models.BooleanField(_("whitelisted"), default=False, db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["organisation__name"]

    def __str__(self):
        return str(self.organisation)


class ProviderApiKey(models.Model):
    """An API key of a provider. Only a SHA-256 digest is stored; the key itself is shown once
    when created. Keys are 256-bit random tokens, so a fast digest is safe here (a slow
    password hash would only slow every API call)."""

    provider = models.ForeignKey(
        Provider, verbose_name=_("provider"), on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    prefix = models.CharField(_("prefix"), max_length=12, unique=True)
    digest = models.CharField(_("SHA-256 digest"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider API key")
        verbose_name_plural = _("provider API keys")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.provider.organisation.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PortalAccount(models.Model):
    """Links a portal user to the one organisation they act for, and in which role."""

    class Role(models.TextChoices):
        ENTERPRISE = "enterprise", _("enterprise user")
        PROVIDER = "provider", _("provider user")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="portal_account"
    )
    organisation = models.ForeignKey(
        Organisation, verbose_name=_("organisation"), on_delete=models.PROTECT, related_name="portal_accounts"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("portal account")
        verbose_name_plural = _("portal accounts")

    def __str__(self):
        return f"{self.user} → {self.organisation.name} ({self.get_role_display()})"


class StaffAffiliation(models.Model):
    """A declared link between a staff member and an organisation (a former employer, a
    relative's company, a shareholding). Review refuses an application from an organisation
    its reviewer is linked to."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("staff member"), on_delete=models.CASCADE, related_name="affiliations"
    )
    organisation = models.ForeignKey(
        Organisation, verbose_name=_("organisation"), on_delete=models.CASCADE, related_name="staff_affiliations"
    )
    relation = models.CharField(_("relation"), max_length=200, blank=True)
    declared_at = models.DateTimeField(_("declared"), auto_now_add=True)

    class Meta:
        verbose_name = _("staff affiliation")
        verbose_name_plural = _("staff affiliations")
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="unique_staff_affiliation")]

    def __str__(self):
        return f"{self.user} ~ {self.organisation.name}"
