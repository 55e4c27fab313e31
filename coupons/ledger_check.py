"""The ledger's invariants (design.md), checked with set-based queries so that the check runs
in seconds on millions of entries. ``manage.py check_ledger`` and the simulation call
``check_ledger()``; each check returns the violations it found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, DecimalField, Exists, F, OuterRef, Q, Sum, Value
from django.db.models.functions import Cast, Coalesce

from core.models import AuditEntry
from coupons.models import (
    Account,
    Application,
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Redemption,
    RedemptionLine,
    UsageRecord,
)
from coupons.selectors import cap_used_bulk

CENT = Decimal("0.01")
ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=16, decimal_places=2))
LIMIT = 20  # violations listed per check; the count is always complete


@dataclass
class LedgerReport:
    checks: dict[str, int] = field(default_factory=dict)  # check name → violations found
    violations: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())


CHECKS: list[tuple[str, Callable[[], list[str]]]] = []


def check(name: str):
    def register(function):
        CHECKS.append((name, function))
        return function

    return register


@check("transactions balance")
def _transactions_balance() -> list[str]:
    rows = (
        LedgerTransaction.objects.annotate(total=Coalesce(Sum("entries__amount"), ZERO), lines=Count("entries"))
        .filter(~Q(total=0) | Q(lines__lt=2))
        .values_list("pk", "total", "lines")
    )
    return [f"transaction #{pk}: entries sum to {total} over {lines} line(s)" for pk, total, lines in rows[:LIMIT]] + (
        [f"… {rows.count() - LIMIT} more"] if rows.count() > LIMIT else []
    )


@check("balances equal their entries")
def _balances_match_entries() -> list[str]:
    # Compared in Python: SQLite keeps decimals as floats and text, which SQL cannot compare exactly.
    sums = dict(LedgerEntry.objects.values("account").annotate(total=Sum("amount")).values_list("account", "total"))
    problems = []
    for pk, name, balance in Account.objects.values_list("pk", "name", "balance").iterator(chunk_size=5000):
        total = Decimal(sums.get(pk) or 0).quantize(CENT)
        if balance.quantize(CENT) != total:
            problems.append(f"{name}: balance {balance} but entries sum to {total}")
            if len(problems) >= LIMIT:
                break
    return problems


@check("no negative balance")
def _no_negative_balance() -> list[str]:
    rows = Account.objects.filter(
        Q(balance__lt=0) & ~Q(kind=Account.Kind.FUNDING) | Q(kind=Account.Kind.FUNDING, balance__gt=0)
    )
    return [f"{a.name}: balance {a.balance}" for a in rows[:LIMIT]]


@check("issued within budget")
def _issued_within_budget() -> list[str]:
    problems = []
    for program in Program.objects.annotate(
        live=Coalesce(Sum(F("coupons__face_value") - F("coupons__returned_amount")), ZERO)
    ):
        funding = Account.objects.get(program=program, kind=Account.Kind.FUNDING)
        if -funding.balance != program.budget:
            problems.append(f"{program.code}: budget {program.budget} but funding account shows {-funding.balance}")
        if program.live > program.budget:
            problems.append(f"{program.code}: coupons hold {program.live} of a {program.budget} budget")
    return problems


@check("per-enterprise cap")
def _cap_holds() -> list[str]:
    pairs = set(Coupon.objects.values_list("organisation_id", "program_id").distinct()) | set(
        Application.objects.filter(status=Application.Status.APPROVED, historical=True)
        .values_list("organisation_id", "program_id")
        .distinct()
    )
    if not pairs:
        return []
    used = cap_used_bulk(organisation_ids={o for o, _ in pairs}, program_ids={p for _, p in pairs})
    caps = dict(Program.objects.values_list("pk", "per_enterprise_cap"))
    codes = dict(Program.objects.values_list("pk", "code"))
    return [
        f"organisation #{o} in {codes[p]}: {total} above the cap of {caps[p]}"
        for (o, p), total in used.items()
        if total > caps[p]
    ][:LIMIT]


@check("coupons agree with their grants")
def _coupons_agree() -> list[str]:
    problems = []
    approved_live = Application.objects.filter(status=Application.Status.APPROVED, historical=False)
    missing = approved_live.filter(coupon__isnull=True).values_list("reference", flat=True)[:LIMIT]
    problems += [f"{ref}: approved but no coupon" for ref in missing]
    mismatched = Coupon.objects.exclude(face_value=F("application__granted_amount")).values_list("code", flat=True)[
        :LIMIT
    ]
    problems += [f"coupon {code}: face value differs from the grant" for code in mismatched]
    over = Coupon.objects.filter(account__balance__gt=F("face_value") - F("returned_amount")).values_list(
        "code", flat=True
    )[:LIMIT]
    problems += [f"coupon {code}: balance above face value less returns" for code in over]
    ended = Coupon.objects.filter(
        state__in=[Coupon.State.REVOKED, Coupon.State.EXPIRED, Coupon.State.EXHAUSTED], account__balance__gt=0
    ).values_list("code", flat=True)[:LIMIT]
    problems += [f"coupon {code}: ended but still holds money" for code in ended]
    return problems


@check("state changes audited")
def _audited() -> list[str]:
    problems = []
    for model, states in (
        (Application, Application.objects.exclude(status=Application.Status.DRAFT)),
        (Coupon, Coupon.objects.all()),
    ):
        content_type = ContentType.objects.get_for_model(model)
        audited = AuditEntry.objects.filter(content_type=content_type, object_id=OuterRef("pk_text"))
        unaudited = states.annotate(pk_text=Cast("pk", output_field=AuditEntry._meta.get_field("object_id"))).filter(
            ~Exists(audited)
        )
        problems += [f"{model._meta.model_name} {obj}: no audit entry" for obj in unaudited[:LIMIT]]
    return problems


@check("usage backs at most one redemption")
def _usage_backs_one() -> list[str]:
    live = [Redemption.State.POSTED, Redemption.State.PENDING_ADJUSTMENT]
    twice = (
        RedemptionLine.objects.filter(redemption__state__in=live)
        .values("usage_record_id")
        .annotate(n=Count("redemption_id"))
        .filter(n__gt=1)
        .values_list("usage_record_id", "n")
    )
    problems = [f"usage record #{pk} backs {n} live redemptions" for pk, n in twice[:LIMIT]]
    stray = (
        UsageRecord.objects.filter(redemption__isnull=False)
        .exclude(redemption__state__in=live)
        .values_list("pk", flat=True)[:LIMIT]
    )
    problems += [f"usage record #{pk} points at a reversed or refused redemption" for pk in stray]
    unlinked = (
        RedemptionLine.objects.filter(redemption__state__in=live)
        .exclude(usage_record__redemption_id=F("redemption_id"))
        .values_list("redemption_id", "usage_record_id")[:LIMIT]
    )
    problems += [f"redemption #{r}: usage record #{u} is not linked to it" for r, u in unlinked]
    return problems


@check("weekly usage agrees with the records")
def _usage_weeks_agree() -> list[str]:
    from coupons.services import usage_weeks

    return usage_weeks.differences()


@check("redemptions within rate, balance and ledger")
def _redemptions_bounded() -> list[str]:
    problems = []
    over = (
        Redemption.objects.annotate(ceiling=Coalesce(Sum(F("lines__amount") * F("lines__rate")), ZERO))
        .filter(subsidy__gt=F("ceiling"))
        .values_list("pk", "subsidy", "ceiling")
    )
    problems += [
        f"redemption #{pk}: subsidy {subsidy} above rate × metered {ceiling:.2f}"
        for pk, subsidy, ceiling in over[:LIMIT]
    ]
    posted = Redemption.objects.filter(state__in=[Redemption.State.POSTED, Redemption.State.REVERSED])
    problems += [
        f"redemption #{pk}: posted without a ledger transaction"
        for pk in posted.filter(transaction__isnull=True).values_list("pk", flat=True)[:LIMIT]
    ]
    problems += [
        f"redemption #{pk}: reversed without a reversal"
        for pk in Redemption.objects.filter(state=Redemption.State.REVERSED, reversal__isnull=True).values_list(
            "pk", flat=True
        )[:LIMIT]
    ]
    outside = (
        Redemption.objects.filter(lines__usage_record__started_at__lt=F("coupon__valid_from"))
        .values_list("pk", flat=True)
        .distinct()[:LIMIT]
    )
    problems += [f"redemption #{pk}: usage before the coupon's validity" for pk in outside]
    # Provider payable = posted subsidies − paid, per programme and provider.
    for account in Account.objects.filter(kind=Account.Kind.PROVIDER_PAYABLE):
        redeemed = Redemption.objects.filter(
            provider_id=account.provider_id, coupon__program_id=account.program_id, state=Redemption.State.POSTED
        ).aggregate(t=Coalesce(Sum("subsidy"), ZERO))["t"]
        paid = Account.objects.filter(
            kind=Account.Kind.PROVIDER_PAID, provider_id=account.provider_id, program_id=account.program_id
        ).aggregate(t=Coalesce(Sum("balance"), ZERO))["t"]
        if account.balance != redeemed - paid:
            problems.append(
                f"{account.name}: payable {account.balance} but posted redemptions {redeemed} less paid {paid}"
            )
    return problems[: LIMIT * 3]


def check_ledger() -> LedgerReport:
    report = LedgerReport()
    for name, function in CHECKS:
        found = function()
        report.checks[name] = len(found)
        report.violations += [f"[{name}] {text}" for text in found]
    report.figures = {
        "accounts": Account.objects.count(),
        "transactions": LedgerTransaction.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "coupons": Coupon.objects.count(),
        "redemptions": Redemption.objects.filter(state=Redemption.State.POSTED).count(),
        "issued": Decimal(Coupon.objects.aggregate(total=Coalesce(Sum("face_value"), ZERO))["total"]).quantize(CENT),
    }
    return report
