"""The world a simulation run starts from, built from the seed alone (plus a token that makes
codes, registry numbers and usernames unique per run, so that runs on one database do not
collide; the token appears nowhere in the operation log).

- one programme with a modest budget, so that approvals race for its last yuan;
- ``E0`` … enterprises; ``P0`` and ``P1`` whitelisted providers; ``PR`` a whitelisted provider
  that shares its bank account with the last enterprise (a related party: its claims on that
  enterprise's coupon must be refused); ``PX`` a provider that was whitelisted when a coupon
  named it and is no longer (its claims must be refused);
- reviewers ``R0``-``R2`` (``R2`` is affiliated with one enterprise), an auditor ``U0``, a
  programme officer ``O0`` who freezes, revokes, reverses and settles;
- coupons issued in the past (time travel, before any worker starts: no clock is frozen while
  threads run): group A 100 days ago with a 90-day validity (due to expire), group B 40 days
  ago; and group C applications submitted now, waiting for review.

Objects are known by logical names (``E3``, ``A.s2`` for an application made here, ``A1.7`` for
the 8th a worker 1 made, a coupon by its application's name, ``R1.2`` for a redemption, ``K0.1``
for a case, ``B1.4`` for a usage batch), so that an operation log reads the same in every run of
the same seed.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import secrets
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import Permission
from django.utils import timezone

from core.errors import ApplicationError
from coupons.models import Accelerator, Application, Program
from coupons.services.applications import application_create, application_submit
from coupons.services.programs import program_create
from coupons.services.review import review_approve
from enterprises import roles
from enterprises.models import Organisation, Provider, StaffAffiliation
from tests import factories

DAY = 86_400
HOUR = 3_600
# Card models the workers use (name, alias a provider would send); the last is domestic and so
# subsidised at the programme's domestic rate.
MODELS = [("NVIDIA A100 80GB", "A100-80G"), ("NVIDIA H100 SXM", "H100"), ("Huawei Ascend 910B2", "910B2")]
# Where usage of a coupon may lie, in seconds after its validity starts: setup coupons have
# weeks in the past; a coupon approved while the workers run has the few minutes after its
# approval (usage may end up to five minutes ahead of the clock: CLOCK_SKEW).
RUNTIME_WINDOW = (5, 245)
GROUP_A_AGO = 100  # days
GROUP_B_AGO = 40
VALIDITY_DAYS = 90


class Names:
    """Logical name ↔ primary key, per kind of object; shared by the worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pk: dict[tuple[str, str], int] = {}
        self._name: dict[tuple[str, int], str] = {}

    def add(self, kind: str, name: str, pk: int) -> None:
        with self._lock:
            self._pk.setdefault((kind, name), pk)
            self._name.setdefault((kind, pk), name)

    def pk(self, kind: str, name: str) -> int | None:
        with self._lock:
            return self._pk.get((kind, name))

    def name(self, kind: str, pk: int | None) -> str | None:
        with self._lock:
            return self._name.get((kind, pk))


@dataclass
class World:
    seed: int
    token: str
    program_id: int
    t_ref: dt.datetime  # when the world was made; months in the log are relative to its month
    enterprises: dict[str, int]  # name → organisation pk
    providers: dict[str, int]  # name → provider pk
    users: dict[str, int]  # name → user pk
    related: tuple[str, str]  # (enterprise, provider) sharing a bank account
    unlisted: str  # the provider that is not whitelisted
    unregistered_uscc: str  # a valid USCC that is not in the registry
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # application name → usage window
    names: Names = field(default_factory=Names)
    setup_applications: list[str] = field(default_factory=list)

    @property
    def reviewers(self) -> list[str]:
        return ["R0", "R1", "R2"]

    def window(self, application: str) -> tuple[int, int]:
        return self.windows.get(application, RUNTIME_WINDOW)

    # Months, relative to the month of t_ref (0 this month, -1 the one before).
    def month_start(self, offset: int) -> dt.date:
        ref = timezone.localdate(self.t_ref)
        index = ref.year * 12 + ref.month - 1 + offset
        return dt.date(index // 12, index % 12 + 1, 1)

    def month_offset(self, moment: dt.datetime) -> int:
        ref, day = timezone.localdate(self.t_ref), timezone.localtime(moment).date()
        return (day.year - ref.year) * 12 + day.month - ref.month

    def period(self, offset: int, first: int = 1, last: int = 31) -> tuple[dt.date, dt.date]:
        start = self.month_start(offset)
        days = calendar.monthrange(start.year, start.month)[1]
        return start.replace(day=min(first, days)), start.replace(day=min(last, days))


def _unused_base(rng_token: str) -> int:
    """A block of registry numbers no earlier run used."""
    base = 10_000_000 + int(rng_token, 16) % 80_000_000
    while Organisation.objects.filter(uscc__in=[factories.make_uscc(base + i) for i in range(0, 40, 7)]).exists():
        base = (base + 1_000) % 89_000_000 + 10_000_000
    return base


def _organisation_values(base: int, i: int, token: str, label: str) -> dict:
    n = base + i
    return {
        "uscc": factories.make_uscc(n),
        "name": f"模拟{label}{token}-{i}",
        "legal_representative": f"模拟人{token}-{i}",
        "registered_address": f"合肥市模拟路{token}-{i}号",
        "contact_phone": f"139{n:08d}",
        "contact_email": f"{label.lower()}{i}.{token}@sim.example.cn",
        "bank_account": f"6217{token}{i:04d}",
    }


def _apply_and_approve(world: World, name: str, *, enterprise, provider, model: str, amount: Decimal, reviewers):
    accelerator = Accelerator.objects.get(name=model)
    application = application_create(
        organisation=enterprise,
        program=Program.objects.get(pk=world.program_id),
        provider=provider,
        accelerator=accelerator,
        claimed_card_hours=Decimal("4000.0000"),
        claimed_amount=amount,
        scenario="training",
        project_summary="模拟：训练面向工业质检的视觉模型。",
    )
    world.names.add("app", name, application.pk)
    world.setup_applications.append(name)
    application = application_submit(application=application, actor=None)
    if reviewers is None:
        return application
    try:
        outcome = review_approve(application=application, reviewer=reviewers[0])
        if outcome.awaiting_second_review:
            outcome = review_approve(application=application, reviewer=reviewers[1])
        world.names.add("coupon", name, outcome.coupon.pk)
    except ApplicationError:  # the budget or the cap ran out: the application stays in review
        pass
    return application


def build_world(seed: int, *, token: str | None = None) -> World:
    """Create the world of ``seed`` in the database (committed: the workers' connections must
    see it). Runs in one thread before any worker starts."""
    import time_machine

    rng = random.Random(f"{seed}:world")
    token = token or secrets.token_hex(3)
    code = f"SIM{token}-{seed}"[:30]
    while Program.objects.filter(code=code).exists():
        token = secrets.token_hex(3)
        code = f"SIM{token}-{seed}"[:30]
    t_ref = timezone.now().replace(microsecond=0)
    today = timezone.localdate(t_ref)
    program = program_create(
        code=code,
        name=f"模拟算力券 {seed}",
        budget=Decimal(rng.randrange(220, 320) * 1000),
        rate=Decimal("0.200"),
        domestic_rate=Decimal("0.300"),
        per_enterprise_cap=Decimal("60000.00"),
        opens=today - dt.timedelta(days=GROUP_A_AGO + 10),
        closes=today + dt.timedelta(days=30),
        validity_days=VALIDITY_DAYS,
        second_review_amount=Decimal("25000.00"),
    )
    base = _unused_base(token)
    count = rng.randint(6, 9)
    enterprises = {
        f"E{i}": factories.make_organisation(**_organisation_values(base, i, token, "企业")) for i in range(count)
    }
    related = f"E{count - 1}"
    providers = {
        name: factories.make_provider(whitelisted=True, **_organisation_values(base, 20 + i, token, "算力"))
        for i, name in enumerate(["P0", "P1", "PR", "PX"])
    }
    Organisation.objects.filter(pk=providers["PR"].organisation_id).update(
        bank_account=enterprises[related].bank_account
    )
    users = {}
    for name, groups in [
        ("R0", (roles.REVIEWERS,)),
        ("R1", (roles.REVIEWERS,)),
        ("R2", (roles.REVIEWERS,)),
        ("U0", (roles.AUDITORS,)),
        ("O0", (roles.PROGRAMME_OFFICERS,)),
    ]:
        users[name] = factories.make_user(f"sim-{token}-{name.lower()}", staff=True, groups=groups)
    users["O0"].user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="coupons", codename__in=["change_redemption", "change_statement"]
        )
    )
    StaffAffiliation.objects.create(
        user=users["R2"], organisation=enterprises[f"E{rng.randrange(count)}"], relation="former employer"
    )
    world = World(
        seed=seed,
        token=token,
        program_id=program.pk,
        t_ref=t_ref,
        enterprises={name: org.pk for name, org in enterprises.items()},
        providers={name: provider.pk for name, provider in providers.items()},
        users={name: user.pk for name, user in users.items()},
        related=(related, "PR"),
        unlisted="PX",
        unregistered_uscc=factories.make_uscc(base + 39),
    )
    reviewers = [users["R0"], users["R1"]]

    def claim(low: int, high: int) -> Decimal:
        return Decimal(rng.randrange(low, high) * 1000)

    # Group A: 100 days ago, valid for 90 days, so due to expire now.
    with time_machine.travel(t_ref - dt.timedelta(days=GROUP_A_AGO), tick=True):
        for i, (enterprise, provider) in enumerate([("E0", "P0"), ("E1", "P1")]):
            name = f"A.s{i}"
            _apply_and_approve(
                world,
                name,
                enterprise=enterprises[enterprise],
                provider=providers[provider],
                model=rng.choice(MODELS)[0],
                amount=claim(50, 180),
                reviewers=reviewers,
            )
            world.windows[name] = (HOUR, (VALIDITY_DAYS - 1) * DAY)
    # Group B: 40 days ago; one with the related party, one with the provider about to leave the whitelist.
    with time_machine.travel(t_ref - dt.timedelta(days=GROUP_B_AGO), tick=True):
        for i, (enterprise, provider) in enumerate([("E2", "P0"), ("E3", "P1"), (related, "PR"), ("E4", "PX")]):
            name = f"A.s{2 + i}"
            _apply_and_approve(
                world,
                name,
                enterprise=enterprises[enterprise],
                provider=providers[provider],
                model=rng.choice(MODELS)[0],
                amount=claim(50, 180),
                reviewers=reviewers,
            )
            world.windows[name] = (HOUR, GROUP_B_AGO * DAY - 2 * HOUR)
    Provider.objects.filter(pk=providers["PX"].pk).update(whitelisted=False)
    # Group C: submitted now, for the workers to review.
    for i in range(rng.randint(4, 6)):
        enterprise = enterprises[f"E{rng.randrange(count)}"]
        provider = providers[rng.choice(["P0", "P1", "PR"])]
        name = f"A.s{6 + i}"
        try:
            _apply_and_approve(
                world,
                name,
                enterprise=enterprise,
                provider=provider,
                model=rng.choice(MODELS)[0],
                amount=claim(30, 200),
                reviewers=None,
            )
        except ApplicationError:  # an open application of the same pair exists: stays a draft
            pass
    assert Application.objects.filter(program=program).count() == len(world.setup_applications)
    return world
