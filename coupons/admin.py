"""Staff admin for programmes, the review queue, coupons and the ledger. Every change goes
through the services; the admin only parses and renders."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.admin import CsvImportAdminMixin, ReadOnlyAdmin
from core.audit import audit_trail_for
from core.errors import ApplicationError
from coupons.forms import CouponStateForm, DecisionForm
from coupons.imports import ApplicationImport, ProgramImport
from coupons.models import (
    Accelerator,
    Account,
    Application,
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Redemption,
    ReferencePrice,
    RiskBand,
    Statement,
    UsageRecord,
)
from coupons.selectors import budget_panel
from coupons.services.coupons import coupon_freeze, coupon_revoke, coupon_unfreeze
from coupons.services.programs import PROGRAM_FIELDS, program_create, program_update
from coupons.services.redemptions import redemption_approve_adjustment, redemption_reverse
from coupons.services.review import grant_limit, needs_second_review, review_approve, review_reject, review_return
from coupons.services.settlement import statement_approve, statement_csv, statement_pay, statement_totals
from enterprises.models import Provider


@admin.register(Accelerator)
class AcceleratorAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "domestic", "fp16_dense_tflops", "memory_gb", "aliases"]
    list_filter = ["domestic", "vendor"]
    search_fields = ["name", "aliases", "vendor"]


@admin.register(Program)
class ProgramAdmin(CsvImportAdminMixin, admin.ModelAdmin):
    csv_importer = ProgramImport
    list_display = [
        "code",
        "name",
        "budget",
        "remaining",
        "rate",
        "domestic_rate",
        "per_enterprise_cap",
        "opens",
        "closes",
    ]
    search_fields = ["code", "name"]
    change_form_template = "admin/coupons/program/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("accounts")

    @admin.display(description=_("remaining"))
    def remaining(self, obj):
        return next((a.balance for a in obj.accounts.all() if a.kind == Account.Kind.BUDGET), None)

    def get_readonly_fields(self, request, obj=None):
        return ["code"] if obj else []

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in PROGRAM_FIELDS if name in form.cleaned_data}
        if change:
            program_update(program=obj, actor=request.user, **values)
        else:
            saved = program_create(code=form.cleaned_data["code"], actor=request.user, **values)
            obj.pk = saved.pk

    def has_delete_permission(self, request, obj=None):
        return False  # a programme with money on the ledger is never deleted

    def change_view(self, request, object_id, form_url="", extra_context=None):
        program = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "panel": budget_panel(program) if program else None}
        return super().change_view(request, object_id, form_url, extra_context)


class ProviderListFilter(admin.RelatedFieldListFilter):
    """Providers by name in one query (the default filter loads each provider's organisation)."""

    def field_choices(self, field, request, model_admin):
        return list(Provider.objects.order_by("organisation__name").values_list("pk", "organisation__name"))


class RiskBandFilter(admin.SimpleListFilter):
    title = _("risk band")
    parameter_name = "band"

    def lookups(self, request, model_admin):
        return [*Application._meta.get_field("risk_band").choices, ("none", _("not scored yet"))]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(risk_score__isnull=True)
        if self.value():
            return queryset.filter(risk_band=self.value())
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """By default the list is the review queue: what waits for a decision."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("all", _("all applications"))]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("waiting for review"),
        }
        yield {
            "selected": self.value() == "all",
            "query_string": changelist.get_query_string({self.parameter_name: "all"}),
            "display": _("all applications"),
        }

    def queryset(self, request, queryset):
        if self.value() == "all" or request.GET.get("status__exact"):
            return queryset
        return queryset.filter(status__in=[Application.Status.SUBMITTED, Application.Status.UNDER_REVIEW])


class ReviewQueueChangeList(ChangeList):
    """The queue's rows load only what the columns show: an application with its organisation,
    programme and provider is some 80 columns (addresses, capital, contacts, the project summary),
    and the list needs 13. A column added to ``list_display`` needs its fields here, or each row
    loads them in a query of its own (``tests/coupons/test_review_queue_queries.py`` fails)."""

    COLUMNS = (
        "reference",
        "risk_score",
        "risk_band",
        "status",
        "submitted_at",
        "claimed_amount",
        "granted_amount",
        "organisation__name",
        "organisation__uscc",
        "program__code",
        "program__name",
        "provider__organisation__name",
        "provider__organisation__uscc",
    )

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).only(*self.COLUMNS)


RISK_COLOURS = {RiskBand.HIGH: "#b42318", RiskBand.MEDIUM: "#b54708", RiskBand.LOW: "#067647"}
RISK_BAND_LABELS = dict(RiskBand.choices)  # once, not a choices dict built per row


@admin.register(Application)
class ApplicationAdmin(CsvImportAdminMixin, admin.ModelAdmin):
    csv_importer = ApplicationImport
    list_display = [
        "reference",
        "risk",
        "organisation",
        "program",
        "provider",
        "claimed_amount",
        "granted_amount",
        "status",
        "submitted_at",
    ]
    list_filter = [
        QueueFilter,
        "program",
        "status",
        RiskBandFilter,
        "organisation__region_code",
        "organisation__industry__digital_core",
        "organisation__industry__section",
        ("provider", ProviderListFilter),
    ]
    search_fields = ["reference", "organisation__name", "organisation__uscc"]
    list_select_related = ["organisation", "program", "provider__organisation"]
    change_form_template = "admin/coupons/application/change_form.html"
    list_per_page = 50
    show_full_result_count = False  # a COUNT(*) over 100,000+ rows on every page is wasted

    def get_ordering(self, request):
        # Served by the index application_review_queue_idx (migration 0009), filters or not.
        return [F("risk_score").desc(nulls_last=True), "submitted_at", "id"]

    def get_changelist(self, request, **kwargs):
        return ReviewQueueChangeList

    @admin.display(description=_("risk"), ordering="risk_score")
    def risk(self, obj):
        if obj.risk_score is None:
            return "—"
        colour = RISK_COLOURS.get(obj.risk_band, "#444")
        label = RISK_BAND_LABELS.get(obj.risk_band, obj.risk_band)
        return format_html('<b style="color:{}">{}</b> {}', colour, obj.risk_score, label)

    def has_add_permission(self, request):
        return False  # applications come from the portal or the import

    def has_change_permission(self, request, obj=None):
        return False  # decisions go through the review form below, not field edits

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm("coupons.review_application")

    def has_import_permission(self, request):
        return request.user.has_perm("coupons.add_application")

    def get_urls(self):
        return [
            path("<int:pk>/decide/", self.admin_site.admin_view(self.decide_view), name="coupons_application_decide"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        application = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if application is not None:
            context.update(self.review_context(request, application))
        return super().change_view(request, object_id, form_url, context)

    def review_context(self, request, application: Application) -> dict:
        from coupons.review_context import review_panels

        limit, limited_by = (
            grant_limit(application) if application.status in ("submitted", "under_review") else (None, [])
        )
        first = application.reviews.filter(decision="approve", superseded=False).select_related("reviewer").first()
        return {
            "application": application,
            "organisation": application.organisation,
            "audit_trail": audit_trail_for(application)[:100],
            "reviews": application.reviews.select_related("reviewer"),
            "app_messages": application.messages.all(),
            "grant_limit": limit,
            "limited_by": limited_by,
            "first_approval": first,
            "needs_second": needs_second_review(application, first.amount if first else (limit or 0))
            if limit is not None
            else False,
            "decision_form": DecisionForm(initial={"amount": first.amount if first else limit}),
            "can_review": request.user.has_perm("coupons.review_application")
            and application.status in ("submitted", "under_review"),
            "panels": review_panels(application),
        }

    def decide_view(self, request, pk):
        if request.method != "POST" or not request.user.has_perm("coupons.review_application"):
            raise PermissionDenied
        application = get_object_or_404(Application, pk=pk)
        form = DecisionForm(request.POST)
        back = redirect(reverse("admin:coupons_application_change", args=[pk]))
        if not form.is_valid():
            self.message_user(
                request,
                _("The decision form is not valid: %(errors)s") % {"errors": form.errors.as_text()},
                messages.ERROR,
            )
            return back
        decision, reason = form.cleaned_data["decision"], form.cleaned_data["reason"]
        try:
            if decision == "approve":
                outcome = review_approve(
                    application=application, reviewer=request.user, amount=form.cleaned_data["amount"], note=reason
                )
                if outcome.awaiting_second_review:
                    self.message_user(
                        request, _("First approval recorded; a second reviewer must sign off."), messages.WARNING
                    )
                else:
                    self.message_user(
                        request,
                        _("Approved; coupon %(code)s issued.") % {"code": outcome.coupon.code},
                        messages.SUCCESS,
                    )
            elif decision == "reject":
                review_reject(application=application, reviewer=request.user, reason=reason)
                self.message_user(request, _("Rejected."), messages.SUCCESS)
            else:
                review_return(application=application, reviewer=request.user, reason=reason)
                self.message_user(request, _("Returned to the enterprise for changes."), messages.SUCCESS)
        except ApplicationError as error:
            self.message_user(request, " ".join([error.message, *[str(p) for p in error.details]]), messages.ERROR)
        return back


class EntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "kind", "program", "subject", "memo", "created_by"]
    list_filter = ["kind", "program"]
    search_fields = ["subject", "memo", "idempotency_key"]
    list_select_related = ["program", "created_by"]
    inlines = [EntryInline]
    show_full_result_count = False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "program", "balance"]
    list_filter = ["kind", "program"]
    search_fields = ["name"]
    list_select_related = ["program"]


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["code", "organisation", "program", "provider", "face_value", "balance", "state", "valid_until"]
    list_filter = ["state", "program", ("provider", ProviderListFilter)]
    search_fields = ["code", "organisation__name", "organisation__uscc", "application__reference"]
    list_select_related = ["organisation", "program", "provider__organisation", "account"]
    change_form_template = "admin/coupons/coupon/change_form.html"
    show_full_result_count = False

    @admin.display(description=_("balance"), ordering="account__balance")
    def balance(self, obj):
        return obj.account.balance

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Coupon._meta.fields]

    def get_urls(self):
        return [
            path("<int:pk>/state/", self.admin_site.admin_view(self.state_view), name="coupons_coupon_state"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        coupon = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if coupon is not None:
            context.update(
                {
                    "coupon": coupon,
                    "audit_trail": audit_trail_for(coupon)[:100],
                    "state_form": CouponStateForm(),
                    "can_change_state": request.user.has_perm("coupons.change_coupon"),
                }
            )
        return super().change_view(request, object_id, form_url, context)

    def state_view(self, request, pk):
        if request.method != "POST" or not request.user.has_perm("coupons.change_coupon"):
            raise PermissionDenied
        coupon = get_object_or_404(Coupon, pk=pk)
        form = CouponStateForm(request.POST)
        if form.is_valid():
            service = {"freeze": coupon_freeze, "unfreeze": coupon_unfreeze, "revoke": coupon_revoke}[
                form.cleaned_data["action"]
            ]
            try:
                coupon = service(coupon=coupon, actor=request.user, reason=form.cleaned_data["reason"])
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("Coupon %(code)s is now %(state)s.") % {"code": coupon.code, "state": coupon.get_state_display()},
                    messages.SUCCESS,
                )
        else:
            self.message_user(request, _("A reason is required."), messages.ERROR)
        return redirect(reverse("admin:coupons_coupon_change", args=[pk]))


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "record_id",
        "provider",
        "enterprise",
        "accelerator",
        "gpu_count",
        "started_at",
        "ended_at",
        "card_hours",
        "amount",
        "price_per_card_hour",
        "redemption",
    ]
    list_filter = [("provider", ProviderListFilter), "accelerator"]
    search_fields = ["record_id", "enterprise__uscc", "enterprise__name"]
    list_select_related = ["provider__organisation", "enterprise", "accelerator"]
    show_full_result_count = False
    date_hierarchy = "started_at"


@admin.register(ReferencePrice)
class ReferencePriceAdmin(admin.ModelAdmin):
    list_display = ["accelerator", "valid_from", "price_per_card_hour", "source"]
    list_filter = ["accelerator"]
    autocomplete_fields = ["accelerator"]


@admin.register(Redemption)
class RedemptionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "provider",
        "coupon",
        "period_start",
        "period_end",
        "records",
        "metered_amount",
        "subsidy",
        "state",
        "statement",
    ]
    list_filter = ["state", ("provider", ProviderListFilter), "coupon__program"]
    search_fields = ["coupon__code", "coupon__organisation__name", "idempotency_key"]
    list_select_related = ["provider__organisation", "coupon", "statement__provider__organisation"]
    change_form_template = "admin/coupons/redemption/change_form.html"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Redemption._meta.fields]

    def get_urls(self):
        return [
            path("<int:pk>/act/", self.admin_site.admin_view(self.act_view), name="coupons_redemption_act"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        redemption = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if redemption is not None:
            context.update(
                {
                    "redemption": redemption,
                    "audit_trail": audit_trail_for(redemption)[:100],
                    "can_act": request.user.has_perm("coupons.change_redemption"),
                }
            )
        return super().change_view(request, object_id, form_url, context)

    def act_view(self, request, pk):
        if request.method != "POST" or not request.user.has_perm("coupons.change_redemption"):
            raise PermissionDenied
        redemption = get_object_or_404(Redemption, pk=pk)
        reason = request.POST.get("reason", "")
        service = (
            redemption_approve_adjustment if request.POST.get("action") == "approve_adjustment" else redemption_reverse
        )
        try:
            redemption = service(redemption=redemption, actor=request.user, reason=reason)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(
                request,
                _("Redemption %(pk)s is now %(state)s.")
                % {"pk": redemption.pk, "state": redemption.get_state_display()},
                messages.SUCCESS,
            )
        return redirect(reverse("admin:coupons_redemption_change", args=[pk]))


@admin.register(Statement)
class StatementAdmin(admin.ModelAdmin):
    list_display = ["provider", "month", "state", "subsidy_total", "approved_at", "paid_at"]
    list_filter = ["state", "month", ("provider", ProviderListFilter)]
    list_select_related = ["provider__organisation"]
    actions = ["approve", "mark_paid", "export_csv"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Statement._meta.fields]

    @admin.display(description=_("subsidy"))
    def subsidy_total(self, obj):
        return sum((entry["subsidy"] for entry in statement_totals(obj).values()), Decimal(0))

    def _each(self, request, queryset, service, done):
        for statement in queryset:
            try:
                service(statement=statement, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, f"{statement}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, f"{statement}: {done}", messages.SUCCESS)

    @admin.action(description=_("Approve the selected statements"), permissions=["change"])
    def approve(self, request, queryset):
        self._each(request, queryset, statement_approve, _("approved"))

    @admin.action(description=_("Mark the selected statements paid"), permissions=["change"])
    def mark_paid(self, request, queryset):
        self._each(request, queryset, statement_pay, _("paid"))

    @admin.action(description=_("Export the selected statements as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        parts = [statement_csv(statement) for statement in queryset.select_related("provider__organisation")]
        response = HttpResponse("\ufeff" + "".join(parts), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="statements.csv"'
        return response
