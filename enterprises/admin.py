from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.admin import CsvImportAdminMixin
from core.errors import ApplicationError
from enterprises.imports import ProviderImport, RegistryImport
from enterprises.models import IndustryClass, Organisation, PortalAccount, Provider, ProviderApiKey, StaffAffiliation
from enterprises.privacy import PERSONAL_FIELDS, can_see_personal_data, mask
from enterprises.services import provider_key_create, provider_key_revoke


class DataQualityFilter(admin.SimpleListFilter):
    title = _("data quality")
    parameter_name = "data_quality"

    def lookups(self, request, model_admin):
        return [("flagged", _("USCC checksum flagged, unresolved")), ("ok", _("no open flag"))]

    def queryset(self, request, queryset):
        flagged = {"uscc_checksum_ok": False, "data_quality_resolved": False}
        if self.value() == "flagged":
            return queryset.filter(**flagged)
        if self.value() == "ok":
            return queryset.exclude(**flagged)
        return queryset


@admin.register(IndustryClass)
class IndustryClassAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "level", "digital_core", "digital_category", "digital_scope"]
    list_filter = ["level", "section", "digital_core", "digital_scope"]
    search_fields = ["code", "name"]
    list_editable = ["digital_core"]
    readonly_fields = ["code", "level", "section", "division", "group"]


@admin.register(Organisation)
class OrganisationAdmin(CsvImportAdminMixin, admin.ModelAdmin):
    csv_importer = RegistryImport
    list_display = [
        "name",
        "uscc",
        "region_code",
        "industry",
        "registration_date",
        "social_insured_employees",
        "is_active",
        "data_quality",
    ]
    list_filter = [DataQualityFilter, "is_active", "region_code", "industry__digital_core"]
    search_fields = [
        "name",
        "uscc",
        "legal_representative",
        "registered_address",
        "contact_phone",
        "contact_email",
        "bank_account",
    ]
    list_select_related = ["industry"]
    autocomplete_fields = ["industry"]
    readonly_fields = ["uscc_checksum_ok", "data_quality_note", "created_at", "updated_at"]

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if can_see_personal_data(request.user):
            return fields
        return [field for field in fields if field not in PERSONAL_FIELDS]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if can_see_personal_data(request.user):
            return fields
        return [f"masked_{field}" if field in PERSONAL_FIELDS else field for field in fields]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not can_see_personal_data(request.user):
            fields += [f"masked_{field}" for field in PERSONAL_FIELDS]
        return fields

    @admin.display(description=_("contact phone"))
    def masked_contact_phone(self, obj):
        return mask("contact_phone", obj.contact_phone)

    @admin.display(description=_("contact email"))
    def masked_contact_email(self, obj):
        return mask("contact_email", obj.contact_email)

    @admin.display(description=_("bank account"))
    def masked_bank_account(self, obj):
        return mask("bank_account", obj.bank_account)

    @admin.display(description=_("data quality"), boolean=False)
    def data_quality(self, obj):
        if obj.has_data_quality_flag:
            return _("⚠ flagged: %(note)s") % {"note": obj.data_quality_note}
        return "✓"


class ProviderApiKeyInline(admin.TabularInline):
    model = ProviderApiKey
    extra = 0
    fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are created by the action, which shows the key once


@admin.register(Provider)
class ProviderAdmin(CsvImportAdminMixin, admin.ModelAdmin):
    csv_importer = ProviderImport
    list_display = ["organisation", "whitelisted", "created_at"]
    list_filter = ["whitelisted"]
    search_fields = ["organisation__name", "organisation__uscc"]
    list_select_related = ["organisation"]
    autocomplete_fields = ["organisation"]
    inlines = [ProviderApiKeyInline]
    actions = ["create_api_key"]

    @admin.action(description=_("Create an API key (shown once)"), permissions=["change"])
    def create_api_key(self, request, queryset):
        for provider in queryset.select_related("organisation"):
            new = provider_key_create(
                provider=provider, name=f"admin {timezone.now():%Y-%m-%d}", created_by=request.user
            )
            self.message_user(
                request,
                _("New API key for %(provider)s, shown only now: %(key)s")
                % {"provider": provider.organisation.name, "key": new.raw_key},
                messages.WARNING,
            )


@admin.register(ProviderApiKey)
class ProviderApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "provider", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "provider__organisation__name"]
    list_select_related = ["provider__organisation"]
    fields = ["prefix", "provider", "name", "created_at", "created_by", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            try:
                provider_key_revoke(prefix=api_key.prefix, revoked_by=request.user, reason="revoked in the admin")
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(request, _("Revoked %(prefix)s") % {"prefix": api_key.prefix})


@admin.register(PortalAccount)
class PortalAccountAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "organisation__name", "organisation__uscc"]
    autocomplete_fields = ["organisation"]
    list_select_related = ["user", "organisation"]


@admin.register(StaffAffiliation)
class StaffAffiliationAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "relation", "declared_at"]
    search_fields = ["user__username", "organisation__name"]
    autocomplete_fields = ["organisation"]
