"""The lists of the audit workspace, each declared once: its queryset, its filters, its columns.
The web page, the CSV download and ``manage.py export`` all read these, so a column or a
filter is added in one place.

How to add a list (or a column): add an ``AuditList`` to ``LISTS`` with the ORM paths of its
columns and the filters it takes (``filterset``); the page, the export, the command and the
permission checks follow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_filters import rest_framework as filters

from core.models import AuditEntry
from coupons.models import Application, Coupon, LedgerEntry, Redemption, RiskBand, Statement, UsageRecord
from fraud.models import Case, RiskAssessment

TEXT, MONEY, NUMBER, INTEGER, DATETIME, DATE, BOOLEAN = (
    "text",
    "money",
    "number",
    "integer",
    "datetime",
    "date",
    "boolean",
)


@dataclass(frozen=True)
class Column:
    key: str  # an ORM path for values_list, or an annotation of the list's queryset
    label: str
    kind: str = TEXT
    sortable: bool = True


@dataclass(frozen=True)
class AuditList:
    kind: str
    title: str
    queryset: Callable[[], QuerySet]
    filterset: type
    columns: list[Column]
    ordering: str = "-id"
    # Besides audit.export_data, exporting this list needs this permission too.
    export_permission: str = ""

    @property
    def keys(self) -> list[str]:
        return [column.key for column in self.columns]


# --- filters ---------------------------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


def audit_filterset(
    model,
    *,
    program=None,
    date=None,
    state=None,
    state_choices=None,
    risk_band=None,
    region=None,
    industry=None,
    provider=None,
    enterprise=None,
    amount=None,
    date_is_datetime=True,
):
    """A FilterSet with the workspace's common filters, each pointed at this model's path:
    programme, date range (days in Asia/Shanghai), state, risk band, region, industry, provider,
    enterprise and amount range."""
    attrs: dict = {}
    if program:
        attrs["program"] = filters.CharFilter(field_name=program, label=_("programme code"))
    if date:
        if date_is_datetime:
            attrs["date_from"] = filters.DateFilter(
                label=_("from (date)"), method=lambda qs, name, value: qs.filter(**{f"{date}__gte": _day_start(value)})
            )
            attrs["date_to"] = filters.DateFilter(
                label=_("to (date)"),
                method=lambda qs, name, value: qs.filter(**{f"{date}__lt": _day_start(value + dt.timedelta(days=1))}),
            )
        else:
            attrs["date_from"] = filters.DateFilter(field_name=date, lookup_expr="gte", label=_("from (date)"))
            attrs["date_to"] = filters.DateFilter(field_name=date, lookup_expr="lte", label=_("to (date)"))
    if state:
        attrs["state"] = (
            filters.ChoiceFilter(field_name=state, choices=state_choices, label=_("state"))
            if state_choices
            else filters.CharFilter(field_name=state, label=_("state"))
        )
    if risk_band:
        attrs["risk_band"] = filters.ChoiceFilter(field_name=risk_band, choices=RiskBand.choices, label=_("risk band"))
    if region:
        attrs["region"] = filters.CharFilter(field_name=region, label=_("region code"))
    if industry:
        attrs["industry"] = filters.CharFilter(field_name=industry, label=_("industry code"))
    if provider:
        attrs["provider"] = filters.CharFilter(field_name=provider, label=_("provider USCC"))
    if enterprise:
        attrs["enterprise"] = filters.CharFilter(field_name=enterprise, label=_("enterprise USCC"))
    if amount:
        attrs["amount_min"] = filters.NumberFilter(field_name=amount, lookup_expr="gte", label=_("amount from"))
        attrs["amount_max"] = filters.NumberFilter(field_name=amount, lookup_expr="lte", label=_("amount to"))
    attrs["Meta"] = type("Meta", (), {"model": model, "fields": []})
    return type(f"{model.__name__}AuditFilterSet", (filters.FilterSet,), attrs)


# --- the lists -------------------------------------------------------------------------------

ZERO = Value(Decimal("0.00"), output_field=DecimalField(max_digits=16, decimal_places=2))

LISTS: dict[str, AuditList] = {}


def register(audit_list: AuditList) -> AuditList:
    LISTS[audit_list.kind] = audit_list
    return audit_list


register(
    AuditList(
        kind="applications",
        title=_("Applications"),
        queryset=lambda: Application.objects.all(),
        filterset=audit_filterset(
            Application,
            program="program__code",
            date="submitted_at",
            state="status",
            state_choices=Application.Status.choices,
            risk_band="risk_band",
            region="organisation__region_code",
            industry="organisation__industry_id",
            provider="provider__organisation__uscc",
            enterprise="organisation__uscc",
            amount="claimed_amount",
        ),
        columns=[
            Column("reference", _("reference")),
            Column("organisation__uscc", _("enterprise USCC")),
            Column("organisation__name", _("enterprise")),
            Column("organisation__region_code", _("region")),
            Column("organisation__industry_id", _("industry")),
            Column("program__code", _("programme")),
            Column("provider__organisation__name", _("provider")),
            Column("accelerator__name", _("card model")),
            Column("claimed_card_hours", _("claimed card-hours"), NUMBER),
            Column("claimed_amount", _("claimed (yuan)"), MONEY),
            Column("granted_amount", _("granted (yuan)"), MONEY),
            Column("status", _("status")),
            Column("submitted_at", _("submitted"), DATETIME),
            Column("risk_score", _("risk score"), INTEGER),
            Column("risk_band", _("risk band")),
            Column("risk_reasons", _("top reasons"), sortable=False),
        ],
    )
)

register(
    AuditList(
        kind="coupons",
        title=_("Coupons"),
        queryset=lambda: Coupon.objects.all(),
        filterset=audit_filterset(
            Coupon,
            program="program__code",
            date="issued_at",
            state="state",
            state_choices=Coupon.State.choices,
            region="organisation__region_code",
            industry="organisation__industry_id",
            provider="provider__organisation__uscc",
            enterprise="organisation__uscc",
            amount="face_value",
        ),
        columns=[
            Column("code", _("code")),
            Column("application__reference", _("application")),
            Column("organisation__uscc", _("enterprise USCC")),
            Column("organisation__name", _("enterprise")),
            Column("program__code", _("programme")),
            Column("provider__organisation__name", _("provider")),
            Column("face_value", _("face value (yuan)"), MONEY),
            Column("account__balance", _("balance (yuan)"), MONEY),
            Column("returned_amount", _("returned (yuan)"), MONEY),
            Column("state", _("state")),
            Column("valid_from", _("valid from"), DATETIME),
            Column("valid_until", _("valid until"), DATETIME),
        ],
    )
)

register(
    AuditList(
        kind="ledger",
        title=_("Ledger entries"),
        queryset=lambda: LedgerEntry.objects.all(),
        filterset=audit_filterset(
            LedgerEntry,
            program="transaction__program__code",
            date="transaction__created_at",
            state="transaction__kind",
            amount="amount",
        ),
        columns=[
            Column("transaction_id", _("transaction"), INTEGER),
            Column("transaction__created_at", _("posted"), DATETIME),
            Column("transaction__kind", _("kind")),
            Column("transaction__program__code", _("programme")),
            Column("transaction__subject", _("subject")),
            Column("account__name", _("account")),
            Column("account__kind", _("account kind")),
            Column("amount", _("amount (yuan)"), MONEY),
            Column("transaction__memo", _("memo"), sortable=False),
        ],
    )
)

register(
    AuditList(
        kind="usage",
        title=_("Metered usage"),
        queryset=lambda: UsageRecord.objects.all(),
        filterset=audit_filterset(
            UsageRecord,
            date="started_at",
            region="enterprise__region_code",
            industry="enterprise__industry_id",
            provider="provider__organisation__uscc",
            enterprise="enterprise__uscc",
            amount="amount",
        ),
        columns=[
            Column("record_id", _("record id")),
            Column("provider__organisation__uscc", _("provider USCC")),
            Column("enterprise__uscc", _("enterprise USCC")),
            Column("enterprise__name", _("enterprise")),
            Column("accelerator__name", _("card model")),
            Column("gpu_count", _("cards"), INTEGER),
            Column("started_at", _("started"), DATETIME),
            Column("ended_at", _("ended"), DATETIME),
            Column("card_hours", _("card-hours"), NUMBER),
            Column("amount", _("amount (yuan)"), MONEY),
            Column("price_per_card_hour", _("price per card-hour"), NUMBER),
            Column("standard_units", _("PFLOPS-hours"), NUMBER),
            Column("redemption_id", _("redemption"), INTEGER),
        ],
    )
)

register(
    AuditList(
        kind="redemptions",
        title=_("Redemptions"),
        queryset=lambda: Redemption.objects.all(),
        filterset=audit_filterset(
            Redemption,
            program="coupon__program__code",
            date="created_at",
            state="state",
            state_choices=Redemption.State.choices,
            region="coupon__organisation__region_code",
            industry="coupon__organisation__industry_id",
            provider="provider__organisation__uscc",
            enterprise="coupon__organisation__uscc",
            amount="subsidy",
        ),
        columns=[
            Column("id", _("redemption"), INTEGER),
            Column("created_at", _("claimed"), DATETIME),
            Column("coupon__code", _("coupon")),
            Column("coupon__organisation__uscc", _("enterprise USCC")),
            Column("coupon__organisation__name", _("enterprise")),
            Column("coupon__program__code", _("programme")),
            Column("provider__organisation__name", _("provider")),
            Column("period_start", _("period start"), DATE),
            Column("period_end", _("period end"), DATE),
            Column("records", _("usage records"), INTEGER),
            Column("metered_amount", _("metered (yuan)"), MONEY),
            Column("subsidy", _("subsidy (yuan)"), MONEY),
            Column("state", _("state")),
        ],
    )
)

register(
    AuditList(
        kind="settlements",
        title=_("Settlement statements"),
        queryset=lambda: Statement.objects.annotate(
            subsidy_total=Coalesce(
                Sum("redemptions__subsidy", filter=Q(redemptions__state=Redemption.State.POSTED)), ZERO
            )
        ),
        filterset=audit_filterset(
            Statement,
            date="month",
            date_is_datetime=False,
            state="state",
            state_choices=Statement.State.choices,
            provider="provider__organisation__uscc",
        ),
        columns=[
            Column("id", _("statement"), INTEGER),
            Column("provider__organisation__uscc", _("provider USCC")),
            Column("provider__organisation__name", _("provider")),
            Column("month", _("month"), DATE),
            Column("state", _("state")),
            Column("subsidy_total", _("subsidy (yuan)"), MONEY),
            Column("approved_at", _("approved"), DATETIME),
            Column("paid_at", _("paid"), DATETIME),
        ],
    )
)

register(
    AuditList(
        kind="assessments",
        title=_("Risk assessments"),
        queryset=lambda: RiskAssessment.objects.all(),
        filterset=audit_filterset(
            RiskAssessment,
            program="application__program__code",
            date="created_at",
            risk_band="band",
            region="application__organisation__region_code",
            industry="application__organisation__industry_id",
            provider="application__provider__organisation__uscc",
            enterprise="application__organisation__uscc",
            amount="score",
        ),
        columns=[
            Column("application__reference", _("application")),
            Column("application__organisation__uscc", _("enterprise USCC")),
            Column("application__organisation__name", _("enterprise")),
            Column("application__program__code", _("programme")),
            Column("score", _("score"), INTEGER),
            Column("band", _("band")),
            Column("rule_points", _("rule points"), INTEGER),
            Column("probability", _("fraud probability"), NUMBER),
            Column("anomaly", _("anomaly"), NUMBER),
            Column("model_version", _("model version")),
            Column("created_at", _("scored"), DATETIME),
        ],
    )
)

register(
    AuditList(
        kind="cases",
        title=_("Cases"),
        queryset=lambda: Case.objects.all(),
        filterset=audit_filterset(
            Case,
            program="application__program__code",
            date="opened_at",
            state="state",
            state_choices=Case.State.choices,
            enterprise="application__organisation__uscc",
            amount="receivable",
        ),
        columns=[
            Column("id", _("case"), INTEGER),
            Column("application__reference", _("application")),
            Column("application__organisation__name", _("enterprise")),
            Column("state", _("state")),
            Column("finding", _("finding")),
            Column("opened_by__username", _("opened by")),
            Column("opened_at", _("opened"), DATETIME),
            Column("closed_at", _("closed"), DATETIME),
            Column("receivable", _("to recover (yuan)"), MONEY),
            Column("penalty_min", _("fine from (yuan)"), MONEY),
            Column("penalty_max", _("fine up to (yuan)"), MONEY),
        ],
    )
)

register(
    AuditList(
        kind="audit-trail",
        title=_("Audit trail"),
        queryset=lambda: AuditEntry.objects.all(),
        filterset=audit_filterset(AuditEntry, date="at", state="action"),
        columns=[
            Column("id", _("entry"), INTEGER),
            Column("at", _("at"), DATETIME),
            Column("actor_label", _("who")),
            Column("action", _("action")),
            Column("content_type__model", _("object type")),
            Column("object_repr", _("object")),
            Column("from_state", _("from")),
            Column("to_state", _("to")),
            Column("reason", _("why"), sortable=False),
        ],
        export_permission="core.export_auditentry",
    )
)


def filtered(audit_list: AuditList, params) -> tuple[QuerySet, object]:
    """The list's rows after its filters (and the bound FilterSet, for forms and errors)."""
    filterset = audit_list.filterset(data=params or None, queryset=audit_list.queryset())
    return filterset.qs, filterset


def ordered(audit_list: AuditList, queryset: QuerySet, sort: str | None) -> QuerySet:
    sortable = {column.key for column in audit_list.columns if column.sortable}
    key = (sort or "").lstrip("-")
    if key in sortable:
        return queryset.order_by(sort, "id")
    return queryset.order_by(audit_list.ordering)
