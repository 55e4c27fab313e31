"""Staff admin for the fraud module: rules (editable thresholds), assessments, model versions,
outcomes, and cases that auditors work."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdmin
from core.audit import audit_trail_for
from core.errors import ApplicationError
from fraud.models import Case, CaseNote, ModelVersion, Outcome, RiskAssessment, RiskRule
from fraud.rules import RULES_BY_CODE
from fraud.services import case_add_note, case_close, case_open


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    list_display = ["code", "description", "enabled", "weight", "threshold", "updated_at"]
    list_editable = ["enabled", "weight", "threshold"]
    readonly_fields = ["code"]

    @admin.display(description=_("what it flags"))
    def description(self, obj):
        rule = RULES_BY_CODE.get(obj.code)
        return f"{rule.feature} {rule.operator} threshold: {rule.en}" if rule else "?"

    def has_add_permission(self, request):
        return False  # rules are code; staff tune them

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["version", "trained_at", "active", "samples", "labelled", "frauds", "supervised", "metrics"]


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ["application", "verdict", "source", "recorded_by", "recorded_at"]
    list_filter = ["verdict", "source"]
    search_fields = ["application__reference"]
    list_select_related = ["application", "recorded_by"]


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnlyAdmin):
    list_display = [
        "application",
        "score",
        "band",
        "rule_points",
        "probability",
        "anomaly",
        "model_version",
        "created_at",
    ]
    list_filter = ["band", "model_version"]
    search_fields = ["application__reference", "application__organisation__name"]
    list_select_related = ["application"]
    actions = ["open_cases"]
    show_full_result_count = False

    @admin.action(description=_("Open a case for the selected applications"), permissions=["view"])
    def open_cases(self, request, queryset):
        for assessment in queryset.select_related("application"):
            try:
                case = case_open(application=assessment.application, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, f"{assessment.application}: {error.message}", messages.ERROR)
            else:
                self.message_user(
                    request, _("Case %(pk)s opened for %(ref)s.") % {"pk": case.pk, "ref": assessment.application}
                )


class CaseNoteInline(admin.TabularInline):
    model = CaseNote
    fields = ["at", "author", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["pk", "application", "state", "finding", "opened_by", "opened_at", "closed_at", "receivable"]
    list_filter = ["state", "finding"]
    search_fields = ["application__reference", "application__organisation__name"]
    list_select_related = ["application", "opened_by"]
    inlines = [CaseNoteInline]
    change_form_template = "admin/fraud/case/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Case._meta.fields]

    def has_add_permission(self, request):
        return False  # opened from an assessment

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("<int:pk>/work/", self.admin_site.admin_view(self.work_view), name="fraud_case_work"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        case = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if case is not None:
            context.update(
                {
                    "case": case,
                    "audit_trail": audit_trail_for(case),
                    "findings": Case.Finding.choices,
                    "can_work": request.user.has_perm("fraud.change_case") and case.state == Case.State.OPEN,
                }
            )
        return super().change_view(request, object_id, form_url, context)

    def work_view(self, request, pk):
        if request.method != "POST" or not request.user.has_perm("fraud.change_case"):
            raise PermissionDenied
        case = get_object_or_404(Case, pk=pk)
        try:
            if request.POST.get("action") == "close":
                case_close(
                    case=case,
                    actor=request.user,
                    finding=request.POST.get("finding", ""),
                    reason=request.POST.get("body", ""),
                )
                self.message_user(request, _("Case closed."), messages.SUCCESS)
            else:
                case_add_note(case=case, actor=request.user, body=request.POST.get("body", ""))
                self.message_user(request, _("Note added."), messages.SUCCESS)
        except ApplicationError as error:
            self.message_user(request, " ".join([error.message, *[p.reason for p in error.details]]), messages.ERROR)
        return redirect(reverse("admin:fraud_case_change", args=[pk]))
