"""Admin pieces every app shares: the CSV upload that runs the same import service as the
command line, and read-only registrations for the audit trail and import runs."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError
from core.models import AuditEntry, ImportRun

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class CsvUploadForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"), help_text=_("UTF-8 (with or without BOM) or GB18030; header row; any column order.")
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 50 MB."))
        if not upload.name.lower().endswith((".csv", ".txt")):
            raise forms.ValidationError(_("Upload a .csv file."))
        return upload


class CsvImportAdminMixin:
    """Adds an "Import CSV" page to a ModelAdmin. Set ``csv_importer`` to the import class."""

    csv_importer = None
    change_list_template = "admin/csv_import_change_list.html"

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name=f"{opts.app_label}_{opts.model_name}_import",
            ),
            *super().get_urls(),
        ]

    def has_import_permission(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context)

    def import_view(self, request):
        if not self.has_import_permission(request):
            raise PermissionDenied
        problems, error_message = [], None
        form = CsvUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            importer = self.csv_importer(actor=request.user)
            try:
                summary = importer.run(upload.read(), file_name=upload.name)
            except ApplicationError as error:
                error_message, problems = error.message, error.details
            else:
                self.message_user(
                    request,
                    _("Imported %(file)s: %(summary)s") % {"file": upload.name, "summary": summary},
                    messages.SUCCESS,
                )
                return redirect(f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Import %(name)s from CSV") % {"name": self.model._meta.verbose_name_plural},
            "form": form,
            "columns": [column.name for column in self.csv_importer.columns],
            "error_message": error_message,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/csv_import.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only records: visible to those with the view permission, never editable."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_label", "action", "object_repr", "from_state", "to_state", "reason"]
    list_filter = ["action", "content_type"]
    search_fields = ["object_repr", "actor_label", "reason", "object_id"]
    date_hierarchy = "at"
    list_select_related = ["content_type"]


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "file_name", "rows", "created", "updated", "unchanged", "sha256"]
    list_filter = ["kind"]
