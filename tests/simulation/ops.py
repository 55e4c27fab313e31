"""Operations: drawn by a worker (``Worker.draw``) or planned for a race (``plan_race``) as a
plain, JSON-serialisable spec in logical names, then run by an ``Executor`` through the
services. A spec carries everything its execution needs, so a logged operation can be run
again (``--replay``). ``expect`` states what the operation must do whatever the other workers
do (a replay answers with the original, a terminal state refuses another transition); a broken
expectation is a violation.

Drawing reads the database (the candidates of an operation), in primary-key order; it uses only
the worker's own random generator and memory, so a worker's sequence of operations depends on
the seed, its number, the results of its earlier operations and what it finds in the database
(with one worker: on the seed alone).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

import orjson
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditEntry
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
)
from coupons.services.applications import application_create, application_submit, application_withdraw
from coupons.services.coupons import coupon_expire, coupon_freeze, coupon_revoke, coupon_unfreeze, coupons_expire_due
from coupons.services.redemptions import (
    ClaimRequest,
    redemption_approve_adjustment,
    redemption_claim,
    redemption_reverse,
)
from coupons.services.review import grant_limit, review_approve, review_reject, review_return
from coupons.services.settlement import statement_approve, statement_pay
from coupons.services.usage import MAX_BATCH, usage_ingest
from enterprises.models import Organisation, Provider
from fraud.models import Case
from fraud.services import case_close, case_open
from tests.simulation.world import HOUR, MODELS, RUNTIME_WINDOW, World

CENT = Decimal("0.01")
FOUR = Decimal("0.0001")
S = Application.Status
# How often a worker draws each operation.
WEIGHTS = {
    "apply": 8,
    "submit": 3,
    "withdraw": 2,
    "approve": 10,
    "reject": 2,
    "return": 2,
    "ingest": 20,
    "claim": 20,
    "reverse": 5,
    "adjust": 2,
    "freeze": 2,
    "unfreeze": 2,
    "revoke": 2,
    "expire_due": 1,
    "expire_one": 1,
    "settle": 4,
    "case_open": 2,
    "case_close": 2,
}
# Operations that cap what they take from a coupon at its balance (a claim) or return exactly
# its balance (revocation, expiry, a case closed as fraud): the ledger's InsufficientFunds guard
# must never be what answers them.
TAKES_BALANCE = {"claim", "revoke", "expire_one", "expire_due", "case_close"}
REASONS = ["核对发现计量异常", "provider asked for a correction", "重复申报", "audit request"]


@dataclass
class Outcome:
    status: str  # ok | refused | skipped | error
    detail: str
    broken: str | None = None  # the expectation it broke, if any
    trace: str | None = None
    message: str = ""  # a refusal's message (logged apart: it may name primary keys)

    @property
    def text(self) -> str:
        return f"{self.status} {self.detail}".strip()


# --- reading the shared state -----------------------------------------------------------------


class Reader:
    """What workers and race planners read from the database, in logical names and pk order."""

    def __init__(self, world: World):
        self.world = world
        self.names = world.names

    def applications(self, statuses=None) -> list[tuple[str, str]]:
        rows = Application.objects.filter(program_id=self.world.program_id)
        if statuses:
            rows = rows.filter(status__in=statuses)
        named = ((self.names.name("app", pk), status) for pk, status in rows.order_by("pk").values_list("pk", "status"))
        return [(name, status) for name, status in named if name]

    def coupons(self, states=None) -> list[tuple[str, Coupon]]:
        rows = Coupon.objects.filter(program_id=self.world.program_id).order_by("pk")
        if states:
            rows = rows.filter(state__in=states)
        # A coupon is known by its application's name, once the approval that issued it is logged.
        named = ((self.names.name("coupon", c.pk), c) for c in rows)
        return [(name, c) for name, c in named if name]

    def redemptions(self, states=None) -> list[tuple[str, str]]:
        rows = Redemption.objects.filter(coupon__program_id=self.world.program_id)
        if states:
            rows = rows.filter(state__in=states)
        named = ((self.names.name("redemption", pk), s) for pk, s in rows.order_by("pk").values_list("pk", "state"))
        return [(name, state) for name, state in named if name]

    def statements(self) -> list[tuple[str, int, str]]:
        """(provider name, month offset, state) of the world's providers' statements."""
        by_pk = {pk: name for name, pk in self.world.providers.items()}
        rows = (
            Statement.objects.filter(provider_id__in=by_pk).order_by("pk").values_list("provider_id", "month", "state")
        )
        ref = self.world.month_start(0)
        return [(by_pk[p], (month.year - ref.year) * 12 + month.month - ref.month, state) for p, month, state in rows]

    def cases(self, states=None) -> list[tuple[str, str]]:
        rows = Case.objects.filter(application__program_id=self.world.program_id)
        if states:
            rows = rows.filter(state__in=states)
        named = ((self.names.name("case", pk), s) for pk, s in rows.order_by("pk").values_list("pk", "state"))
        return [(name, state) for name, state in named if name]

    def provider_name(self, pk: int) -> str:
        return next(name for name, p in self.world.providers.items() if p == pk)

    def enterprise_name(self, pk: int) -> str | None:
        return next((name for name, o in self.world.enterprises.items() if o == pk), None)

    def unredeemed(self, coupon: Coupon) -> dict[int, list[str]]:
        """The coupon's eligible unredeemed records (by provider, enterprise, validity), by month
        offset; records that straddle two months are left out."""
        rows = (
            UsageRecord.objects.filter(
                provider_id=coupon.provider_id,
                enterprise_id=coupon.organisation_id,
                redemption__isnull=True,
                started_at__gte=coupon.valid_from,
                ended_at__lte=coupon.valid_until,
            )
            .order_by("pk")
            .values_list("record_id", "started_at", "ended_at")
        )
        months: dict[int, list[str]] = defaultdict(list)
        for record_id, started, ended in rows:
            month = self.world.month_offset(started)
            if month == self.world.month_offset(ended):
                months[month].append(record_id)
        return dict(months)

    def claimable_pairs(self) -> set[tuple[int, int]]:
        return set(
            UsageRecord.objects.filter(provider_id__in=self.world.providers.values(), redemption__isnull=True)
            .values_list("provider_id", "enterprise_id")
            .distinct()
        )


def pick(rng: random.Random, items):
    return rng.choice(items) if items else None


def _shared_record(world: World, app: str, j: int, enterprise: str) -> dict:
    """A record any worker may send for the coupon of ``app``: the same payload every time, so
    that workers racing with it produce duplicates, never conflicts."""
    rng = random.Random(f"{world.seed}:shared:{app}:{j}")
    return _record(rng, world, f"s-{app}-{j}", app, enterprise)


def _record(rng: random.Random, world: World, record_id: str, app: str, enterprise: str) -> dict:
    low, high = world.window(app)
    runtime = (low, high) == RUNTIME_WINDOW
    seconds = rng.randrange(60, 181) if runtime else rng.randrange(1, 49) * HOUR
    start = rng.randint(low, max(low, high - seconds))
    gpus = rng.randint(1, 16)
    card_hours = (Decimal(gpus * seconds) / 3600).quantize(FOUR)
    if runtime:
        amount = Decimal(rng.randrange(20_000, 1_500_000)) / 100
    else:
        amount = (card_hours * rng.randrange(5, 40)).quantize(CENT)
    return {
        "id": record_id,
        "ent": enterprise,
        "model": rng.choice(MODELS)[1],
        "gpus": gpus,
        "anchor": app,
        "start": start,
        "secs": seconds,
        "ch": str(card_hours),
        "amount": str(amount),
    }


# --- drawing operations -----------------------------------------------------------------------


class Worker:
    """One worker's generator of operations: its random generator and its memory of what it did."""

    def __init__(self, world: World, number: int):
        self.world = world
        self.w = number
        self.rng = random.Random(f"{world.seed}:{number}")
        self.read = Reader(world)
        self.counters: Counter = Counter()
        self.batches: list[dict] = []  # {"name", "records", "variant", "ok"}
        self.claims: list[dict] = []  # {"spec", "redemption"} of claims that went through

    def next_name(self, prefix: str) -> str:
        number = self.counters[prefix]
        self.counters[prefix] += 1
        return f"{prefix}{self.w}.{number}"

    def draw(self) -> dict:
        kinds, weights = zip(*WEIGHTS.items(), strict=True)
        for _attempt in range(5):
            kind = self.rng.choices(kinds, weights)[0]
            spec = getattr(self, f"_draw_{kind}")()
            if spec is not None:
                return {"op": kind, **spec}
        return {"op": "apply", **self._draw_apply()}

    def learn(self, spec: dict, outcome: Outcome, facts: dict) -> None:
        """Remember what this worker's own operations did (what later replays refer to)."""
        if spec["op"] == "ingest" and "as" in spec:
            self.batches.append(
                {
                    "name": spec["as"],
                    "provider": spec["provider"],
                    "records": spec["records"],
                    "ok": outcome.status == "ok" and not facts.get("replayed"),
                }
            )
        if spec["op"] == "claim" and outcome.status == "ok" and not facts.get("replayed") and facts.get("name"):
            self.claims.append({"spec": spec, "redemption": facts["name"]})

    # applications and review

    def _draw_apply(self) -> dict:
        rng = self.rng
        return {
            "as": self.next_name("A"),
            "ent": f"E{rng.randrange(len(self.world.enterprises))}",
            "provider": rng.choices(["P0", "P1", "PR", "PX"], [4, 4, 2, 1])[0],
            "model": rng.choice(MODELS)[0],
            "hours": f"{rng.randrange(500, 8000)}.0000",
            "amount": f"{rng.randrange(20, 250) * 1000}.00",
            "submit": rng.random() < 0.85,
        }

    def _some_application(self, statuses, share: float) -> str | None:
        preferred = self.read.applications(statuses) if self.rng.random() < share else []
        chosen = pick(self.rng, preferred) or pick(self.rng, self.read.applications())
        return chosen[0] if chosen else None

    def _draw_submit(self):
        app = self._some_application([S.DRAFT, S.RETURNED], 0.7)
        return {"app": app} if app else None

    def _draw_withdraw(self):
        app = self._some_application([S.DRAFT, S.SUBMITTED, S.RETURNED], 0.6)
        return {"app": app, "reason": self.rng.choice(REASONS)} if app else None

    def _draw_approve(self):
        rng = self.rng
        app = self._some_application([S.SUBMITTED, S.UNDER_REVIEW], 0.85)
        if app is None:
            return None
        reviewer = rng.choices(self.world.reviewers, [4, 4, 2])[0]
        mode = rng.random()
        amount = None
        if mode >= 0.55:
            application = Application.objects.select_related("program", "accelerator").get(
                pk=self.world.names.pk("app", app)
            )
            limit, _by = grant_limit(application)
            if mode < 0.75:
                amount = (limit * Decimal(str(round(rng.uniform(0.3, 1.0), 3)))).quantize(CENT, rounding=ROUND_DOWN)
            elif mode < 0.9:  # above the limit
                amount = limit + Decimal(rng.randrange(1, 100_000)) / 100
            elif mode < 0.95:
                amount = Decimal("0.00")
            else:
                amount = Decimal("9999999.00")
            amount = str(amount)
        return {"app": app, "reviewer": reviewer, "amount": amount}

    def _draw_reject(self):
        app = self._some_application([S.SUBMITTED, S.UNDER_REVIEW], 0.8)
        reason = "" if self.rng.random() < 0.1 else self.rng.choice(REASONS)
        if app is None:
            return None
        return {"app": app, "reviewer": self.rng.choice(self.world.reviewers), "reason": reason}

    _draw_return = _draw_reject

    # usage

    def _draw_ingest(self):
        rng = self.rng
        mode = rng.random()
        done = [b for b in self.batches if b["ok"]]
        if mode < 0.1 and done:  # the same bytes again: the stored answer
            batch = rng.choice(done)
            return {"replay": batch["name"], "expect": f"replay:{batch['name']}"}
        if mode < 0.17 and done:  # the same records in another body: all duplicates
            batch = rng.choice(done)
            return {
                "as": self.next_name("B"),
                "provider": batch["provider"],
                "records": batch["records"],
                "expect": f"dup:{len(batch['records'])}",
            }
        if mode < 0.23 and done:  # a record sent before, with another payload: 409
            batch = rng.choice(done)
            changed = dict(rng.choice(batch["records"]))
            changed["amount"] = str(Decimal(changed["amount"]) + Decimal("1.00"))
            return {
                "as": self.next_name("B"),
                "provider": batch["provider"],
                "records": [changed],
                "expect": "refused:conflict",
            }
        coupons = self.read.coupons()
        if not coupons:
            return None
        active = [(a, c) for a, c in coupons if c.state == Coupon.State.ACTIVE]
        app, coupon = rng.choice(active if active and rng.random() < 0.8 else coupons)
        enterprise = self.read.enterprise_name(coupon.organisation_id)
        provider = self.read.provider_name(coupon.provider_id)
        if rng.random() < 0.1:  # usage of the enterprise at another provider: not for this coupon
            provider = rng.choice([p for p in self.world.providers if p != provider])
        records = [
            _record(rng, self.world, f"w{self.w}-{self.counters['record']}-{i}", app, enterprise)
            for i in range(rng.randint(1, 4))
        ]
        self.counters["record"] += 1
        if rng.random() < 0.3:
            records.append(_shared_record(self.world, app, rng.randrange(4), enterprise))
        if rng.random() < 0.05:  # the same record twice in one batch: a duplicate
            records.append(dict(records[0]))
        spec = {"as": self.next_name("B"), "provider": provider, "records": records}
        if mode > 0.93:  # invalid: refused as a whole, nothing stored
            bad = rng.choice(["order", "future", "model", "hours", "uscc", "max"])
            if bad == "max" and len(records) < 2:
                records.append(_record(rng, self.world, f"w{self.w}-{self.counters['record']}-x", app, enterprise))
            spec.update(bad=bad, expect="refused:validation_failed")
        return spec

    # redemptions

    def _draw_claim(self):
        rng = self.rng
        mode = rng.random()
        key = f"k{self.w}.{self.counters['key']}"
        self.counters["key"] += 1
        name = self.next_name("R")
        if mode < 0.08 and self.claims:  # the same key and request again: the stored redemption
            earlier = rng.choice(self.claims)
            spec = {k: v for k, v in earlier["spec"].items() if k not in ("op", "as", "expect", "race")}
            return {**spec, "as": name, "expect": f"replay:{earlier['redemption']}"}
        if mode < 0.12 and self.claims:  # the same key with another request: 409
            earlier = rng.choice(self.claims)
            spec = {k: v for k, v in earlier["spec"].items() if k not in ("op", "as", "expect", "race")}
            spec["days"] = [spec["days"][0] + 1, spec["days"][1]]
            return {**spec, "as": name, "expect": "refused:conflict"}
        coupons = self.read.coupons()
        if not coupons:
            return None
        pairs = self.read.claimable_pairs()
        with_usage = [
            (a, c) for a, c in coupons if (c.provider_id, c.organisation_id) in pairs and c.state == Coupon.State.ACTIVE
        ]
        app, coupon = rng.choice(with_usage if with_usage and rng.random() < 0.8 else coupons)
        provider = self.read.provider_name(coupon.provider_id)
        enterprise = self.read.enterprise_name(coupon.organisation_id)
        spec = {"coupon": app, "provider": provider, "key": key, "as": name}
        first_month = self.world.month_offset(coupon.valid_from)
        if mode < 0.17:  # a provider the coupon does not name
            spec.update(
                provider=rng.choice([p for p in self.world.providers if p != provider]),
                month=0,
                days=[1, 31],
                records=None,
                expect="refused:not_found",
            )
            return spec
        if mode < 0.21:  # a period that ends before it starts
            spec.update(month=rng.randint(first_month, 0), days=[20, 3], records=None, expect="refused")
            return spec
        months = self.read.unredeemed(coupon)
        if months and rng.random() < 0.65:
            month = rng.choice(sorted(months))
            records = months[month]
            chosen = sorted(rng.sample(range(len(records)), rng.randint(1, min(4, len(records)))))
            record_ids = [records[i] for i in chosen]
            if rng.random() < 0.12:  # one record that is not this coupon's to claim
                other = (
                    UsageRecord.objects.filter(provider_id=coupon.provider_id)
                    .filter(~Q(enterprise_id=coupon.organisation_id) | Q(redemption__isnull=False))
                    .order_by("pk")
                    .values_list("record_id", flat=True)[:50]
                )
                if other:
                    record_ids.append(rng.choice(list(other)))
            first, last = (1, 31) if rng.random() < 0.8 else (1, 15)
            spec.update(month=month, days=[first, last], records=record_ids)
        else:
            month = rng.choice(sorted(months)) if months else rng.randint(first_month, 0)
            spec.update(month=month, days=[1, 31], records=None)
        if provider == self.world.unlisted or (enterprise, provider) == self.world.related:
            spec["expect"] = "refused"
        return spec

    def _draw_reverse(self):
        rng = self.rng
        preferred = self.read.redemptions([Redemption.State.POSTED]) if rng.random() < 0.7 else []
        chosen = pick(rng, preferred) or pick(rng, self.read.redemptions())
        if chosen is None:
            return None
        name, state = chosen
        spec = {"redemption": name, "reason": "" if rng.random() < 0.05 else rng.choice(REASONS)}
        if state in (Redemption.State.REVERSED, Redemption.State.REFUSED) or not spec["reason"]:
            spec["expect"] = "refused"
        return spec

    def _draw_adjust(self):
        rng = self.rng
        preferred = self.read.redemptions([Redemption.State.PENDING_ADJUSTMENT]) if rng.random() < 0.8 else []
        chosen = pick(rng, preferred) or pick(rng, self.read.redemptions())
        if chosen is None:
            return None
        name, state = chosen
        spec = {"redemption": name, "reason": rng.choice(REASONS)}
        if state != Redemption.State.PENDING_ADJUSTMENT:  # posted, reversed, refused: never again pending
            spec["expect"] = "refused"
        return spec

    def _draw_coupon_change(self, preferred_states):
        rng = self.rng
        preferred = self.read.coupons(preferred_states) if rng.random() < 0.7 else []
        chosen = pick(rng, preferred) or pick(rng, self.read.coupons())
        if chosen is None:
            return None
        app, coupon = chosen
        spec = {"coupon": app, "reason": "" if rng.random() < 0.05 else rng.choice(REASONS)}
        if coupon.state in (Coupon.State.REVOKED, Coupon.State.EXPIRED) or not spec["reason"]:
            spec["expect"] = "refused"
        return spec

    def _draw_freeze(self):
        return self._draw_coupon_change([Coupon.State.ACTIVE])

    def _draw_unfreeze(self):
        return self._draw_coupon_change([Coupon.State.FROZEN])

    def _draw_revoke(self):
        return self._draw_coupon_change([Coupon.State.ACTIVE, Coupon.State.FROZEN])

    def _draw_expire_due(self):
        return {}

    def _draw_expire_one(self):
        chosen = pick(self.rng, self.read.coupons([Coupon.State.ACTIVE, Coupon.State.FROZEN]))
        return {"coupon": chosen[0]} if chosen else None

    # settlement and cases

    def _draw_settle(self):
        rng = self.rng
        statements = self.read.statements()
        if rng.random() < 0.97:  # the current month's statement only now and then: it closes the month
            statements = [s for s in statements if s[1] != 0] or statements
        chosen = pick(rng, statements)
        if chosen is None:
            return None
        provider, month, state = chosen
        if state == Statement.State.OPEN:
            action = rng.choices(["approve", "approve+pay", "pay"], [6, 3, 1])[0]
        elif state == Statement.State.APPROVED:
            action = rng.choices(["pay", "approve"], [85, 15])[0]
        else:
            action = rng.choice(["approve", "pay"])
        spec = {"provider": provider, "month": month, "action": action}
        if state == Statement.State.PAID or (state == Statement.State.APPROVED and action == "approve"):
            spec["expect"] = "refused:conflict"
        return spec

    def _draw_case_open(self):
        app = self._some_application([S.APPROVED], 0.7)
        return {"app": app, "as": self.next_name("K"), "note": self.rng.choice(REASONS)} if app else None

    def _draw_case_close(self):
        rng = self.rng
        preferred = self.read.cases([Case.State.OPEN]) if rng.random() < 0.85 else []
        chosen = pick(rng, preferred) or pick(rng, self.read.cases())
        if chosen is None:
            return None
        name, state = chosen
        finding = rng.choices(["fraud", "cleared", "inconclusive", "bogus"], [25, 35, 30, 10])[0]
        reason = "" if rng.random() < 0.05 else rng.choice(REASONS)
        spec = {"case": name, "finding": finding, "reason": reason}
        if state == Case.State.CLOSED or finding == "bogus" or not reason:
            spec["expect"] = "refused"
        return spec


# --- races ------------------------------------------------------------------------------------

RACES = ["claim_records", "claim_period", "claim_same_key", "approve", "reverse", "settle", "claim_vs_settle"]
RACES += ["claim_vs_revoke", "case_open", "ingest_same", "ingest_conflict"]
EXCLUSIVE = {"reverse", "settle"}  # at most one worker may succeed


def plan_race(world: World, round_: int, workers: int) -> tuple[str, list[dict]]:
    """The race of round ``round_``: one spec per worker, all aimed at the same object, run at the
    same moment. Drawn from the seed and the round, on what the database holds now."""
    rng = random.Random(f"{world.seed}:race:{round_}")
    read = Reader(world)
    kinds = list(RACES)
    rng.shuffle(kinds)
    for kind in kinds:
        specs = _plan(kind, rng, read, world, round_, workers)
        if specs:
            for spec in specs:
                spec["race"] = round_
            return kind, specs
    return "none", []


def _claim_spec(world, coupon_app, provider, month, records, key, name, days=(1, 31)):
    return {
        "op": "claim",
        "coupon": coupon_app,
        "provider": provider,
        "month": month,
        "days": list(days),
        "records": records,
        "key": key,
        "as": name,
    }


def _plan(kind, rng, read: Reader, world: World, r: int, n: int) -> list[dict] | None:
    if kind in ("claim_records", "claim_period", "claim_same_key", "claim_vs_settle", "claim_vs_revoke"):
        pairs = read.claimable_pairs()
        candidates = [
            (a, c)
            for a, c in read.coupons([Coupon.State.ACTIVE])
            if (c.provider_id, c.organisation_id) in pairs and read.unredeemed(c)
        ]
        if kind == "claim_vs_settle":  # settling the current month would close it for the rest of the run
            candidates = [(a, c) for a, c in candidates if set(read.unredeemed(c)) - {0}] or candidates
        if not candidates:
            return None
        app, coupon = rng.choice(candidates)
        months = read.unredeemed(coupon)
        past = [m for m in sorted(months) if m != 0]
        month = rng.choice(past if past and kind == "claim_vs_settle" else sorted(months))
        provider = read.provider_name(coupon.provider_id)
        records = None if kind in ("claim_period", "claim_vs_settle", "claim_vs_revoke") else months[month]
        specs = []
        for w in range(n):
            key = f"race{r}" if kind == "claim_same_key" else f"race{r}-{w}"
            specs.append(_claim_spec(world, app, provider, month, records, key, f"R{w}.r{r}"))
        if kind == "claim_vs_settle":
            for w in range(1, n, 2):
                specs[w] = {"op": "settle", "provider": provider, "month": month, "action": "approve+pay"}
        if kind == "claim_vs_revoke":
            for w in range(1, n, 2):
                other = rng.choice(["revoke", "freeze", "expire_one"])
                specs[w] = {"op": other, "coupon": app, "reason": "race"}
        return specs
    if kind == "approve":
        apps = read.applications([S.SUBMITTED, S.UNDER_REVIEW])
        if not apps:
            return None
        chosen = rng.sample(apps, min(len(apps), n))
        return [
            {"op": "approve", "app": chosen[w % len(chosen)][0], "reviewer": f"R{w % 2}", "amount": None}
            for w in range(n)
        ]
    if kind == "reverse":
        posted = read.redemptions([Redemption.State.POSTED])
        if not posted:
            return None
        name = rng.choice(posted)[0]
        return [{"op": "reverse", "redemption": name, "reason": "race"} for _ in range(n)]
    if kind == "settle":
        statements = [s for s in read.statements() if s[2] != Statement.State.PAID and s[1] != 0]
        if not statements:
            return None
        provider, month, state = rng.choice(statements)
        action = "approve" if state == Statement.State.OPEN else "pay"
        return [{"op": "settle", "provider": provider, "month": month, "action": action} for _ in range(n)]
    if kind == "case_open":
        apps = read.applications([S.APPROVED])
        if not apps:
            return None
        app = rng.choice(apps)[0]
        return [{"op": "case_open", "app": app, "as": f"K{w}.r{r}", "note": "race"} for w in range(n)]
    if kind in ("ingest_same", "ingest_conflict"):
        coupons = read.coupons()
        if not coupons:
            return None
        app, coupon = rng.choice(coupons)
        enterprise = read.enterprise_name(coupon.organisation_id)
        provider = read.provider_name(coupon.provider_id)
        records = [_record(rng, world, f"race{r}-{i}", app, enterprise) for i in range(rng.randint(1, 3))]
        specs = []
        for w in range(n):
            mine = [dict(record) for record in records]
            if kind == "ingest_conflict" and w % 2:
                for record in mine:
                    record["amount"] = str(Decimal(record["amount"]) + Decimal("1.00"))
            # ingest_same: even workers send the very same bytes (a replay), odd ones their own body
            batch = f"B.r{r}" if kind == "ingest_same" and w % 2 == 0 else f"B{w}.r{r}"
            specs.append({"op": "ingest", "as": batch, "provider": provider, "records": mine})
        return specs
    return None


# --- executing operations ---------------------------------------------------------------------


class Executor:
    """Runs specs through the services, in the calling thread (its own database connection)."""

    def __init__(self, world: World, bodies: dict, bodies_lock: threading.Lock):
        self.world = world
        self.names = world.names
        self.bodies = bodies  # batch name → (records, body bytes), shared: replays of any batch
        self.bodies_lock = bodies_lock
        User = get_user_model()
        self.users = {name: User.objects.get(pk=pk) for name, pk in world.users.items()}
        for user in self.users.values():  # fill this thread's permission caches
            user.has_perm("coupons.review_application")
        self.valid_from: dict[str, dt.datetime] = {}
        # Names of what the current operation created: published (``publish``) only once the
        # operation has its place in the log, so that no operation that uses an object can come
        # before the one that made it (a replay runs them in that order).
        self.pending: list[tuple[str, str, int]] = []

    def _named(self, kind: str, name: str, pk: int) -> str:
        existing = self._name_of(kind, pk)
        if existing is None:
            self.pending.append((kind, name, pk))
        return existing or name

    def _name_of(self, kind: str, pk: int) -> str | None:
        mine = next((n for k, n, p in self.pending if k == kind and p == pk), None)
        return mine or self.names.name(kind, pk)

    def publish(self) -> None:
        for kind, name, pk in self.pending:
            self.names.add(kind, name, pk)
        self.pending.clear()

    def run(self, spec: dict) -> tuple[Outcome, dict]:
        facts: dict = {}
        try:
            handler = getattr(self, f"_{spec['op']}")
            detail = handler(spec, facts)
            outcome = Outcome("ok", detail)
        except ApplicationError as error:
            outcome = Outcome("refused", error.code, message=error.message[:300])
        except _Skip as skip:
            outcome = Outcome("skipped", str(skip))
        except Exception as error:  # a service must answer or refuse; anything else is a bug
            outcome = Outcome("error", f"{type(error).__name__}: {error}"[:400], trace=traceback.format_exc())
        outcome.broken = _broken(spec.get("expect"), outcome, facts)
        if outcome.status == "refused" and outcome.detail == "insufficient_funds" and spec["op"] in TAKES_BALANCE:
            outcome.broken = "never short of funds: it takes (or returns) at most the balance the coupon holds"
        return outcome, facts

    # resolving names

    def _app(self, name: str) -> Application:
        pk = self.names.pk("app", name)
        if pk is None:
            raise _Skip(f"no application {name}")
        return Application.objects.get(pk=pk)

    def _coupon(self, app: str) -> Coupon:
        pk = self.names.pk("app", app)
        coupon = Coupon.objects.select_related("program").filter(application_id=pk).first()
        if coupon is None:
            raise _Skip(f"no coupon of {app}")
        return coupon

    def _redemption(self, name: str) -> Redemption:
        pk = self.names.pk("redemption", name)
        if pk is None:
            raise _Skip(f"no redemption {name}")
        return Redemption.objects.get(pk=pk)

    def _provider(self, name: str) -> Provider:
        return Provider.objects.select_related("organisation").get(pk=self.world.providers[name])

    # applications and review

    def _apply(self, spec, facts):
        application = application_create(
            organisation=Organisation.objects.get(pk=self.world.enterprises[spec["ent"]]),
            program=Program.objects.get(pk=self.world.program_id),
            provider=self._provider(spec["provider"]),
            accelerator=Accelerator.objects.get(name=spec["model"]),
            claimed_card_hours=Decimal(spec["hours"]),
            claimed_amount=Decimal(spec["amount"]),
            scenario="training",
            project_summary="模拟：训练面向工业质检的视觉模型。",
        )
        self._named("app", spec["as"], application.pk)
        if not spec["submit"]:
            return "draft"
        application_submit(application=application, actor=None)
        return "submitted"

    def _submit(self, spec, facts):
        return application_submit(application=self._app(spec["app"]), actor=None).status

    def _withdraw(self, spec, facts):
        return application_withdraw(application=self._app(spec["app"]), actor=None, reason=spec["reason"]).status

    def _approve(self, spec, facts):
        amount = None if spec["amount"] is None else Decimal(spec["amount"])
        outcome = review_approve(
            application=self._app(spec["app"]), reviewer=self.users[spec["reviewer"]], amount=amount
        )
        if outcome.awaiting_second_review:
            return "first approval"
        self._named("coupon", spec["app"], outcome.coupon.pk)
        return f"approved {outcome.coupon.face_value}"

    def _reject(self, spec, facts):
        return review_reject(
            application=self._app(spec["app"]), reviewer=self.users[spec["reviewer"]], reason=spec["reason"]
        ).status

    def _return(self, spec, facts):
        return review_return(
            application=self._app(spec["app"]), reviewer=self.users[spec["reviewer"]], reason=spec["reason"]
        ).status

    # usage

    def _render(self, record: dict, bad: str | None) -> dict:
        anchor = record["anchor"]
        if anchor not in self.valid_from:
            self.valid_from[anchor] = self._coupon(anchor).valid_from
        start = self.valid_from[anchor].replace(microsecond=0) + dt.timedelta(seconds=1 + record["start"])
        end = start + dt.timedelta(seconds=record["secs"])
        uscc = (
            self.world.unregistered_uscc
            if bad == "uscc"
            else Organisation.objects.values_list("uscc", flat=True).get(pk=self.world.enterprises[record["ent"]])
        )
        wire = {
            "record_id": record["id"],
            "enterprise_uscc": uscc,
            "gpu_model": "NoSuchCard 9000" if bad == "model" else record["model"],
            "gpu_count": record["gpus"],
            "started_at": start.astimezone(dt.UTC).isoformat(),
            "ended_at": end.astimezone(dt.UTC).isoformat(),
            "card_hours": record["ch"],
            "amount": record["amount"],
        }
        if bad == "order":
            wire["ended_at"] = (start - dt.timedelta(hours=1)).astimezone(dt.UTC).isoformat()
        elif bad == "future":
            wire["ended_at"] = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0).isoformat()
        elif bad == "hours":
            wire["card_hours"] = str(Decimal(record["ch"]) * 2 + 1)
        return wire

    def _ingest(self, spec, facts):
        if "replay" in spec:
            with self.bodies_lock:
                stored = self.bodies.get(spec["replay"])
            if stored is None:
                raise _Skip(f"no body of {spec['replay']}")
            provider_name, records, body = stored
        else:
            provider_name = spec["provider"]
            records = [self._render(record, spec.get("bad")) for record in spec["records"]]
            body = orjson.dumps({"client_batch": spec["as"], "records": records})
            with self.bodies_lock:
                self.bodies.setdefault(spec["as"], (provider_name, records, body))
        result = usage_ingest(
            provider=self._provider(provider_name),
            records=records,
            body=body,
            max_records=1 if spec.get("bad") == "max" else MAX_BATCH,
        )
        if not result.replayed and "as" in spec:
            self._named("batch", spec["as"], result.batch_id)
        facts.update(
            name=self._name_of("batch", result.batch_id),
            replayed=result.replayed,
            created=result.created,
            duplicates=result.duplicates,
        )
        return f"{facts['name']} created={result.created} duplicates={result.duplicates} replayed={result.replayed}"

    # redemptions

    def _claim(self, spec, facts):
        coupon_code = Coupon.objects.filter(application_id=self.names.pk("app", spec["coupon"])).values_list(
            "code", flat=True
        )
        if not coupon_code:
            raise _Skip(f"no coupon of {spec['coupon']}")
        start, end = self.world.period(spec["month"], spec["days"][0], spec["days"][1])
        redemption, replayed = redemption_claim(
            provider=self._provider(spec["provider"]),
            request=ClaimRequest(
                coupon_code=coupon_code[0], period_start=start, period_end=end, record_ids=spec["records"]
            ),
            idempotency_key=spec["key"],
        )
        if not replayed:
            self._named("redemption", spec["as"], redemption.pk)
        name = self._name_of("redemption", redemption.pk)
        facts.update(name=name, replayed=replayed)
        return f"{name} {redemption.state} subsidy={redemption.subsidy} records={redemption.records}" + (
            " replayed" if replayed else ""
        )

    def _reverse(self, spec, facts):
        redemption = redemption_reverse(
            redemption=self._redemption(spec["redemption"]), actor=self.users["O0"], reason=spec["reason"]
        )
        return redemption.state

    def _adjust(self, spec, facts):
        redemption = redemption_approve_adjustment(
            redemption=self._redemption(spec["redemption"]), actor=self.users["O0"], reason=spec["reason"]
        )
        return redemption.state

    def _freeze(self, spec, facts):
        return coupon_freeze(coupon=self._coupon(spec["coupon"]), actor=self.users["O0"], reason=spec["reason"]).state

    def _unfreeze(self, spec, facts):
        coupon = self._coupon(spec["coupon"])
        return coupon_unfreeze(coupon=coupon, actor=self.users["O0"], reason=spec["reason"]).state

    def _revoke(self, spec, facts):
        return coupon_revoke(coupon=self._coupon(spec["coupon"]), actor=self.users["O0"], reason=spec["reason"]).state

    def _expire_due(self, spec, facts):
        coupons_expire_due(now=timezone.now())  # every programme's: its count is not this run's alone
        expired = Coupon.objects.filter(program_id=self.world.program_id, state=Coupon.State.EXPIRED).count()
        return f"{expired} expired in the programme"

    def _expire_one(self, spec, facts):
        """Expire one coupon as the clock will at the end of its validity."""
        coupon = self._coupon(spec["coupon"])
        return "expired" if coupon_expire(coupon=coupon, now=coupon.valid_until) else "nothing to do"

    # settlement and cases

    def _settle(self, spec, facts):
        statement = Statement.objects.filter(
            provider_id=self.world.providers[spec["provider"]], month=self.world.month_start(spec["month"])
        ).first()
        if statement is None:
            raise _Skip("no such statement")
        if spec["action"] in ("approve", "approve+pay"):
            statement = statement_approve(statement=statement, actor=self.users["O0"])
        if spec["action"] in ("pay", "approve+pay"):
            statement = statement_pay(statement=statement, actor=self.users["O0"])
        return statement.state

    def _case_open(self, spec, facts):
        case = case_open(application=self._app(spec["app"]), actor=self.users["U0"], note=spec["note"])
        self._named("case", spec["as"], case.pk)
        return spec["as"]

    def _case_close(self, spec, facts):
        pk = self.names.pk("case", spec["case"])
        if pk is None:
            raise _Skip(f"no case {spec['case']}")
        case = case_close(
            case=Case.objects.get(pk=pk), actor=self.users["U0"], finding=spec["finding"], reason=spec["reason"]
        )
        return f"{case.finding} receivable={case.receivable}"


class _Skip(Exception):
    """The operation's object does not exist (a replayed log on a world that went otherwise)."""


def _audit_trails(world: World) -> list[str]:
    program = world.program_id
    subjects = [
        (Application, Application.objects.filter(program_id=program), "status"),
        (Coupon, Coupon.objects.filter(program_id=program), "state"),
        (Redemption, Redemption.objects.filter(coupon__program_id=program), "state"),
        (Statement, Statement.objects.filter(provider_id__in=world.providers.values()), "state"),
        (Case, Case.objects.filter(application__program_id=program), "state"),
    ]
    problems = []
    for model, rows, field in subjects:
        content_type = ContentType.objects.get_for_model(model)
        last = (
            AuditEntry.objects.filter(content_type=content_type, object_id=Cast(OuterRef("pk"), CharField()))
            .order_by("-pk")
            .values("to_state")[:1]
        )
        for pk, state, trail in rows.annotate(trail=Subquery(last)).values_list("pk", field, "trail"):
            ended = (trail or "").split(":", 1)[0]  # a case closes to "closed:<finding>"
            if ended != state and not (model is Statement and state == Statement.State.OPEN and trail is None):
                problems.append(
                    f"[simulation: invariant 5] {model._meta.model_name} #{pk} is {state} "
                    f"but its audit trail ends at {trail!r}"
                )
    return problems


def _broken(expect: str | None, outcome: Outcome, facts: dict) -> str | None:
    if not expect or outcome.status in ("skipped", "error"):
        return None
    if expect == "refused":
        return None if outcome.status == "refused" else "expected a refusal"
    if expect.startswith("refused:"):
        code = expect.split(":", 1)[1]
        return None if outcome.status == "refused" and outcome.detail == code else f"expected a refusal ({code})"
    if expect.startswith("replay:"):
        name = expect.split(":", 1)[1]
        ok = outcome.status == "ok" and facts.get("replayed") and facts.get("name") == name
        return None if ok else f"expected the stored answer of {name}"
    if expect.startswith("dup:"):
        n = int(expect.split(":", 1)[1])
        ok = outcome.status == "ok" and facts.get("created") == 0 and facts.get("duplicates") == n
        return None if ok else f"expected {n} duplicates and nothing created"
    return None


# --- checks beyond check_ledger ---------------------------------------------------------------


def simulation_checks(world: World) -> list[str]:
    """What ``check_ledger`` cannot see: no live redemption between related parties or by a
    provider off the whitelist (invariant 4); a paid statement paid exactly its posted
    redemptions (a redemption posted to a statement after it was paid would never be paid); and
    the audit trail of every application, coupon, redemption, statement and case of the world
    ends in the state it is in (invariant 5: every state change has its entry)."""
    problems = _audit_trails(world)
    live = Redemption.objects.filter(
        coupon__program_id=world.program_id,
        state__in=[Redemption.State.POSTED, Redemption.State.PENDING_ADJUSTMENT],
    )
    enterprise, provider = world.related
    offending = live.filter(
        Q(provider_id=world.providers[world.unlisted])
        | Q(provider_id=world.providers[provider], coupon__organisation_id=world.enterprises[enterprise])
    )
    problems += [
        f"[simulation: invariant 4] redemption #{pk} by a related or unlisted provider"
        for pk in offending.values_list("pk", flat=True)
    ]
    paid = Statement.objects.filter(provider_id__in=world.providers.values(), state=Statement.State.PAID)
    for statement in paid:
        posted = statement.redemptions.filter(state=Redemption.State.POSTED).aggregate(t=Sum("subsidy"))["t"] or 0
        settled = (
            LedgerEntry.objects.filter(
                transaction__kind=LedgerTransaction.Kind.PAY,
                transaction__subject=f"statement:{statement.pk}",
                account__kind=Account.Kind.PROVIDER_PAID,
            ).aggregate(t=Sum("amount"))["t"]
            or 0
        )
        if Decimal(posted) != Decimal(settled):
            problems.append(
                f"[simulation: settlement] statement #{statement.pk} ({statement.month:%Y-%m}) is paid: "
                f"posted redemptions {posted} but payment {settled}"
            )
    return problems
