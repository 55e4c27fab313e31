"""The figures behind the dashboards, each one query or a few aggregate queries (never a query
per row), returned as plain lists ready for the charts."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from coupons.models import Account, Application, LedgerEntry, Program, Redemption, RedemptionLine, UsageRecord
from coupons.selectors import budget_panel

ZERO = Value(Decimal(0), output_field=DecimalField(max_digits=18, decimal_places=4))


def _f(value) -> float:
    """Chart data only (never stored, never summed again): money as a float for the browser."""
    return float(value or 0)


def budget_burndown(program: Program) -> dict:
    """Remaining budget after each day with issuing or returns, and the straight line to the
    day it runs out at the pace of the last 30 days."""
    budget = Account.objects.get(program=program, kind=Account.Kind.BUDGET)
    zone = timezone.get_current_timezone()
    days = (
        LedgerEntry.objects.filter(account=budget)
        .values_list("transaction__created_at", "amount")
        .order_by("transaction__created_at")
    )
    series, remaining, last_day = [], Decimal(0), None
    for moment, amount in days.iterator(chunk_size=5000):
        day = moment.astimezone(zone).date()
        remaining += amount
        if day == last_day:
            series[-1]["remaining"] = _f(remaining)
        else:
            series.append({"day": day.isoformat(), "remaining": _f(remaining)})
            last_day = day
    panel = budget_panel(program)
    forecast = []
    if panel.runs_out_on:
        today = timezone.localdate()
        forecast = [
            {"day": today.isoformat(), "remaining": _f(panel.remaining)},
            {"day": panel.runs_out_on.isoformat(), "remaining": 0.0},
        ]
    return {
        "program": program.code,
        "series": series,
        "forecast": forecast,
        "runs_out_on": panel.runs_out_on.isoformat() if panel.runs_out_on else None,
        "budget": _f(panel.budget),
        "remaining": _f(panel.remaining),
    }


def applications_over_time() -> list[dict]:
    rows = (
        Application.objects.exclude(submitted_at=None)
        .annotate(month=TruncMonth("submitted_at"))
        .values("month")
        .annotate(applications=Count("id"), granted=Coalesce(Sum("granted_amount"), ZERO))
        .order_by("month")
    )
    return [
        {"month": row["month"].strftime("%Y-%m"), "applications": row["applications"], "granted": _f(row["granted"])}
        for row in rows
    ]


def risk_distribution() -> dict:
    """Scores in bins of ten, and the share flagged high by district and by provider."""
    bins = [0] * 10
    for score, count in Application.objects.exclude(risk_score=None).values_list("risk_score").annotate(n=Count("id")):
        bins[min(score // 10, 9)] += count
    by_region = (
        Application.objects.exclude(risk_score=None)
        .values("organisation__region_code")
        .annotate(total=Count("id"), high=Count("id", filter=Q(risk_band="high")))
        .order_by("organisation__region_code")
    )
    by_provider = (
        Application.objects.exclude(risk_score=None)
        .values("provider__organisation__name")
        .annotate(total=Count("id"), high=Count("id", filter=Q(risk_band="high")))
        .order_by("-high", "provider__organisation__name")[:20]
    )
    return {
        "bins": [{"range": f"{i * 10}-{i * 10 + 9 if i < 9 else 100}", "applications": bins[i]} for i in range(10)],
        "by_region": [
            {"label": r["organisation__region_code"], "share": r["high"] / r["total"], "total": r["total"]}
            for r in by_region
        ],
        "by_provider": [
            {"label": r["provider__organisation__name"], "share": r["high"] / r["total"], "total": r["total"]}
            for r in by_provider
        ],
    }


def claimed_vs_metered(program: Program | None = None, limit: int = 2000) -> list[dict]:
    """Per enterprise: claimed card-hours of its approved or pending applications against its
    metered card-hours. Points far below the diagonal stand out."""
    applications = Application.objects.filter(status__in=["approved", "under_review", "submitted"])
    usage = UsageRecord.objects.all()
    if program is not None:
        applications = applications.filter(program=program)
        usage = usage.filter(started_at__date__gte=program.opens)
    claimed = dict(
        applications.values("organisation_id")
        .annotate(total=Sum("claimed_card_hours"))
        .values_list("organisation_id", "total")
    )
    metered = dict(
        usage.filter(enterprise_id__in=list(claimed))
        .values("enterprise_id")
        .annotate(total=Sum("card_hours"))
        .values_list("enterprise_id", "total")
    )
    high = set(applications.filter(risk_band="high").values_list("organisation_id", flat=True))
    points = [
        {"claimed": _f(total), "metered": _f(metered.get(org, 0)), "flagged": org in high}
        for org, total in claimed.items()
    ]
    return sorted(points, key=lambda p: -p["claimed"])[:limit]


def subsidy_leverage() -> list[dict]:
    """Per programme: the enterprises' own compute spend per yuan of subsidy on redeemed usage
    (the department's "small effort, great effect")."""
    rows = (
        Redemption.objects.filter(state=Redemption.State.POSTED)
        .values("coupon__program__code")
        .annotate(metered=Sum("metered_amount"), subsidy=Sum("subsidy"))
        .order_by("coupon__program__code")
    )
    return [
        {
            "program": r["coupon__program__code"],
            "subsidy": _f(r["subsidy"]),
            "own_spend": _f(r["metered"] - r["subsidy"]),
            "leverage": _f((r["metered"] - r["subsidy"]) / r["subsidy"]) if r["subsidy"] else 0.0,
        }
        for r in rows
    ]


def domestic_share() -> list[dict]:
    """Per programme: the share of subsidised (redeemed) usage, by amount, on domestic chips."""
    rows = (
        RedemptionLine.objects.filter(redemption__state=Redemption.State.POSTED)
        .values("redemption__coupon__program__code")
        .annotate(
            total=Sum("amount"),
            domestic=Coalesce(Sum("amount", filter=Q(usage_record__accelerator__domestic=True)), ZERO),
        )
        .order_by("redemption__coupon__program__code")
    )
    return [
        {
            "program": r["redemption__coupon__program__code"],
            "share": _f(r["domestic"] / r["total"]) if r["total"] else 0.0,
        }
        for r in rows
    ]


def dashboard() -> dict:
    return {
        "burndown": [budget_burndown(program) for program in Program.objects.order_by("opens")],
        "over_time": applications_over_time(),
        "risk": risk_distribution(),
        "claimed_vs_metered": claimed_vs_metered(),
        "leverage": subsidy_leverage(),
        "domestic": domestic_share(),
    }
