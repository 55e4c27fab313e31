"""Reads of the coupons app, scoped to who is asking."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import DecimalField, F, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from coupons.models import (
    Accelerator,
    Account,
    Application,
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Redemption,
    Statement,
    UsageRecord,
    normalize_model_name,
)
from enterprises.authentication import ProviderPrincipal
from enterprises.selectors import portal_account_for

ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=16, decimal_places=2))


def _scope(queryset: QuerySet, user, *, view_perm: str, org_field: str, provider_field: str) -> QuerySet:
    """Staff with the view permission see everything; a portal user sees their organisation's
    rows (an enterprise user as applicant, a provider user as provider); a provider key sees
    its provider's rows; anyone else nothing."""
    if isinstance(user, ProviderPrincipal):
        return queryset.filter(**{provider_field: user.provider.pk})
    if getattr(user, "is_staff", False) and user.has_perm(view_perm):
        return queryset
    account = portal_account_for(user)
    if account is None:
        return queryset.none()
    if account.role == "provider":
        return queryset.filter(**{f"{provider_field}__organisation_id": account.organisation_id})
    return queryset.filter(**{org_field: account.organisation_id})


def applications_for_user(user) -> QuerySet[Application]:
    queryset = Application.objects.select_related("organisation", "program", "provider__organisation", "accelerator")
    return _scope(
        queryset, user, view_perm="coupons.view_application", org_field="organisation_id", provider_field="provider"
    )


def coupons_for_user(user) -> QuerySet[Coupon]:
    queryset = Coupon.objects.select_related(
        "organisation", "program", "provider__organisation", "account", "application"
    )
    return _scope(
        queryset, user, view_perm="coupons.view_coupon", org_field="organisation_id", provider_field="provider"
    )


def usage_for_user(user) -> QuerySet[UsageRecord]:
    queryset = UsageRecord.objects.select_related("provider__organisation", "enterprise", "accelerator")
    return _scope(
        queryset, user, view_perm="coupons.view_usagerecord", org_field="enterprise_id", provider_field="provider"
    )


def redemptions_for_user(user) -> QuerySet[Redemption]:
    queryset = Redemption.objects.select_related(
        "provider__organisation", "coupon__organisation", "coupon__program", "statement"
    )
    return _scope(
        queryset,
        user,
        view_perm="coupons.view_redemption",
        org_field="coupon__organisation_id",
        provider_field="provider",
    )


def statements_for_user(user) -> QuerySet[Statement]:
    """Statements are between the department and a provider: enterprises see none."""
    queryset = Statement.objects.select_related("provider__organisation")
    account = portal_account_for(user)
    if account is not None and account.role != "provider":
        return queryset.none()
    return _scope(
        queryset,
        user,
        view_perm="coupons.view_statement",
        org_field="provider__organisation_id",
        provider_field="provider",
    )


def review_queue() -> QuerySet[Application]:
    """Applications waiting for a decision: highest risk first (unscored after scored), then
    the oldest submission first."""
    return (
        Application.objects.filter(status__in=[Application.Status.SUBMITTED, Application.Status.UNDER_REVIEW])
        .select_related("organisation", "program", "provider__organisation", "accelerator", "organisation__industry")
        .order_by(F("risk_score").desc(nulls_last=True), "submitted_at", "id")
    )


def cap_used(*, organisation_id: int, program_id: int, exclude_application_id: int | None = None) -> Decimal:
    """What counts against the per-enterprise cap in one programme: live coupons' face value
    less what was returned from them, plus historical grants that have no coupon."""
    coupons = Coupon.objects.filter(organisation_id=organisation_id, program_id=program_id)
    history = Application.objects.filter(
        organisation_id=organisation_id, program_id=program_id, status=Application.Status.APPROVED, historical=True
    )
    if exclude_application_id:
        coupons = coupons.exclude(application_id=exclude_application_id)
        history = history.exclude(pk=exclude_application_id)
    live = coupons.aggregate(total=Coalesce(Sum(F("face_value") - F("returned_amount")), ZERO))["total"]
    past = history.aggregate(total=Coalesce(Sum("granted_amount"), ZERO))["total"]
    return live + past


def cap_used_bulk(*, organisation_ids, program_ids) -> dict[tuple[int, int], Decimal]:
    """``cap_used`` for many (organisation, programme) pairs in two queries."""
    used: dict[tuple[int, int], Decimal] = {}
    live = (
        Coupon.objects.filter(organisation_id__in=organisation_ids, program_id__in=program_ids)
        .values("organisation_id", "program_id")
        .annotate(total=Sum(F("face_value") - F("returned_amount")))
    )
    past = (
        Application.objects.filter(
            organisation_id__in=organisation_ids,
            program_id__in=program_ids,
            status=Application.Status.APPROVED,
            historical=True,
        )
        .values("organisation_id", "program_id")
        .annotate(total=Sum("granted_amount"))
    )
    for row in [*live, *past]:
        key = (row["organisation_id"], row["program_id"])
        used[key] = used.get(key, Decimal(0)) + (row["total"] or Decimal(0))
    return used


@dataclass(frozen=True)
class BudgetPanel:
    program: Program
    budget: Decimal
    issued: Decimal
    redeemed: Decimal
    returned: Decimal
    remaining: Decimal
    daily_pace: Decimal
    runs_out_on: dt.date | None

    @property
    def issued_share(self) -> Decimal:
        return (self.issued / self.budget * 100).quantize(Decimal("0.1")) if self.budget else Decimal(0)


def budget_panel(program: Program, *, pace_days: int = 30, today: dt.date | None = None) -> BudgetPanel:
    """Budget, issued, redeemed, returned, remaining, and when the remaining budget runs out if
    coupons keep being issued at the pace of the last ``pace_days`` days (net of returns)."""
    today = today or timezone.localdate()
    budget_account = Account.objects.get(program=program, kind=Account.Kind.BUDGET)
    entries = LedgerEntry.objects.filter(account=budget_account)

    def total(**filters) -> Decimal:
        return -entries.filter(**filters).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]

    issued = total(transaction__kind=LedgerTransaction.Kind.ISSUE)
    returned = -total(transaction__kind__in=[LedgerTransaction.Kind.REVOKE, LedgerTransaction.Kind.EXPIRE])
    # Money that reached providers' payable accounts through redemptions, net of reversals.
    redeemed = LedgerEntry.objects.filter(
        account__program=program,
        account__kind=Account.Kind.PROVIDER_PAYABLE,
        transaction__kind__in=[LedgerTransaction.Kind.REDEEM, LedgerTransaction.Kind.REVERSE],
    ).aggregate(total=Coalesce(Sum("amount"), ZERO))["total"]
    since = timezone.now() - dt.timedelta(days=pace_days)
    recent_net = total(
        transaction__created_at__gte=since,
        transaction__kind__in=[
            LedgerTransaction.Kind.ISSUE,
            LedgerTransaction.Kind.REVOKE,
            LedgerTransaction.Kind.EXPIRE,
        ],
    )
    pace = (recent_net / pace_days).quantize(Decimal("0.01")) if recent_net > 0 else Decimal("0.00")
    remaining = budget_account.balance
    runs_out = None
    if pace > 0:
        runs_out = today + dt.timedelta(days=int(remaining / pace))
    return BudgetPanel(program, program.budget, issued, redeemed, returned, remaining, pace, runs_out)


def open_application_exists(*, organisation_id: int, program_id: int, provider_id: int, exclude_id: int | None) -> bool:
    queryset = Application.objects.filter(
        organisation_id=organisation_id,
        program_id=program_id,
        provider_id=provider_id,
        status__in=[Application.Status.SUBMITTED, Application.Status.UNDER_REVIEW, Application.Status.RETURNED],
    )
    if exclude_id:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()


def linked_reviewer(user, organisation_id: int) -> bool:
    """Whether ``user`` is linked to the organisation: a declared affiliation or a portal
    account of it. Such a reviewer may not review its applications."""
    if user.affiliations.filter(organisation_id=organisation_id).exists():
        return True
    account = portal_account_for(user)
    return account is not None and account.organisation_id == organisation_id


def accelerator_index() -> dict[str, Accelerator]:
    """Every name and alias of every accelerator, normalised (case, spaces, hyphens), to its
    model. Ambiguous aliases (two models claiming one name) are left out, so they never
    silently match the wrong card."""
    index: dict[str, Accelerator] = {}
    ambiguous: set[str] = set()
    for accelerator in Accelerator.objects.all():
        for name in accelerator.all_names():
            key = normalize_model_name(name)
            if key in index and index[key].pk != accelerator.pk:
                ambiguous.add(key)
            index[key] = accelerator
    for key in ambiguous:
        del index[key]
    return index
