from django.contrib import admin

from audit.models import ExportRecord
from core.admin import ReadOnlyAdmin


@admin.register(ExportRecord)
class ExportRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "at", "actor_label", "kind", "rows", "complete", "sha256", "record_hash"]
    list_filter = ["kind", "complete"]
    search_fields = ["actor_label", "sha256", "record_hash"]
