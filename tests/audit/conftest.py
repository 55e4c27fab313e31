"""Fixtures of the audit workspace tests: a small world with something in every list, built
through the services (the same path production data take), on a frozen clock.

The clock (Asia/Shanghai):

* ``EARLY`` 1 March 2026, 00:30 (still 28 February in UTC, so day filters and exported times
  show whether they use Shanghai days): programmes ``AUD-A`` and ``AUD-B`` are funded;
  ``app_hefei`` and ``app_wuhu`` (AUD-A) are submitted.
* ``APPROVED_AT`` 2 March, 09:00: both are approved, coupons of 20,000.00 and 10,000.00.
* ``LATER`` 10 March, 10:00: ``app_b`` (AUD-B, Wuhu, provider one) is submitted and approved
  (60,000.00); ``app_pending`` (AUD-A, Hefei, provider two) and ``app_rejected`` (AUD-B, Hefei,
  provider one) are submitted, and ``app_rejected`` is rejected.
* ``MID`` 20 March, 12:00: provider one reports Hefei's usage and redeems ``coupon_hefei``;
  AUD-B is scored; an auditor opens a case on ``app_b``.
* ``NOW`` 25 March, 12:00: provider two redeems ``coupon_wuhu`` and its March statement is
  approved; provider one redeems ``coupon_b`` and that redemption is reversed; AUD-A is scored;
  a case on ``app_hefei`` is closed as fraud (its coupon revoked). The clock stays here.

Two regions (340100 Hefei, 340200 Wuhu), two industries (I6513, I6520), two providers, so that
every filter has rows to keep and rows to drop."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from coupons.models import Application, Coupon, Program, Redemption, Statement
from coupons.services.redemptions import redemption_reverse, statement_for
from coupons.services.review import review_approve, review_reject
from coupons.services.settlement import statement_approve
from enterprises.models import Organisation, Provider
from fraud import model as fraud_model
from fraud.models import Case
from fraud.scoring import score_program
from fraud.services import case_close, case_open
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.usage.conftest import claim, ingest, record

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
EARLY = dt.datetime(2026, 3, 1, 0, 30, tzinfo=SHANGHAI)
APPROVED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
LATER = dt.datetime(2026, 3, 10, 10, 0, tzinfo=SHANGHAI)
MID = dt.datetime(2026, 3, 20, 12, 0, tzinfo=SHANGHAI)
NOW = dt.datetime(2026, 3, 25, 12, 0, tzinfo=SHANGHAI)

HEFEI, WUHU = "340100", "340200"
SOFTWARE, CHIPS = "I6513", "I6520"


@pytest.fixture(autouse=True)
def no_trained_model(settings, tmp_path):
    """Scoring is rules-only here: no model file from the project's ``var/`` leaks in."""
    settings.FRAUD_MODEL_PATH = tmp_path / "fraud-model.pickle"
    fraud_model._cache.update(key=None, model=None)
    yield
    fraud_model._cache.update(key=None, model=None)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(EARLY, tick=False)
    return time_machine


@dataclass
class World:
    program_a: Program
    program_b: Program
    hefei: Organisation
    wuhu: Organisation
    provider_one: Provider
    provider_two: Provider
    app_hefei: Application
    app_wuhu: Application
    app_b: Application
    app_pending: Application
    app_rejected: Application
    coupon_hefei: Coupon  # revoked after the fraud case
    coupon_wuhu: Coupon
    coupon_b: Coupon
    redemption_one: Redemption  # coupon_hefei, 800.00, posted at MID
    redemption_two: Redemption  # coupon_wuhu, 100.00, posted at NOW
    redemption_three: Redemption  # coupon_b, 400.00, reversed
    statement_one: Statement  # provider one, March, open
    statement_two: Statement  # provider two, March, approved
    statement_feb: Statement  # provider one, February, open and empty
    case_open: Case  # app_b, opened at MID
    case_closed: Case  # app_hefei, fraud


def _on(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=SHANGHAI)


@pytest.fixture
def world(clock, reviewer, auditor, officer) -> World:
    program_a = make_program(code="AUD-A")
    program_b = make_program(code="AUD-B")
    hefei = factories.make_organisation(region_code=HEFEI, industry_id=SOFTWARE)
    wuhu = factories.make_organisation(region_code=WUHU, industry_id=CHIPS)
    provider_one, provider_two = factories.make_provider(), factories.make_provider()
    app = make_application

    app_hefei = app(organisation=hefei, provider=provider_one, program=program_a)
    app_wuhu = app(
        organisation=wuhu,
        provider=provider_two,
        program=program_a,
        claimed_amount=Decimal("50000.00"),
        claimed_card_hours=Decimal("5000.0000"),
    )

    clock.move_to(APPROVED_AT, tick=False)
    coupon_hefei = review_approve(application=app_hefei, reviewer=reviewer).coupon
    coupon_wuhu = review_approve(application=app_wuhu, reviewer=reviewer).coupon

    clock.move_to(LATER, tick=False)
    app_b = app(
        organisation=wuhu,
        provider=provider_one,
        program=program_b,
        claimed_amount=Decimal("300000.00"),
        claimed_card_hours=Decimal("30000.0000"),
    )
    coupon_b = review_approve(application=app_b, reviewer=reviewer).coupon
    app_pending = app(
        organisation=hefei,
        provider=provider_two,
        program=program_a,
        claimed_amount=Decimal("80000.00"),
        claimed_card_hours=Decimal("8000.0000"),
    )
    app_rejected = app(
        organisation=hefei,
        provider=provider_one,
        program=program_b,
        claimed_amount=Decimal("40000.00"),
        claimed_card_hours=Decimal("4000.0000"),
    )
    review_reject(application=app_rejected, reviewer=reviewer, reason="合同金额与用量不符")

    clock.move_to(MID, tick=False)
    ingest(
        provider_one,
        [record("one-1", enterprise=hefei), record("one-2", enterprise=hefei, start=_on(6), amount="3000.00")],
    )
    redemption_one = claim(provider_one, coupon_hefei, key="audit-one")
    statement_feb = statement_for(provider_one, dt.date(2026, 2, 1))
    score_program(program_b)
    case_on_b = case_open(application=app_b, actor=auditor, note="金额异常")

    clock.move_to(NOW, tick=False)
    ingest(provider_two, [record("two-1", enterprise=wuhu, start=_on(7, 8), amount="500.00")])
    ingest(provider_one, [record("one-3", enterprise=wuhu, start=_on(12), amount="2000.00")])
    redemption_two = claim(provider_two, coupon_wuhu, key="audit-two")
    statement_two = statement_approve(statement=redemption_two.statement, actor=officer)
    redemption_three = claim(provider_one, coupon_b, key="audit-three")
    redemption_three = redemption_reverse(redemption=redemption_three, actor=officer, reason="重复计量")
    score_program(program_a)
    case_on_hefei = case_open(application=app_hefei, actor=auditor)
    case_on_hefei = case_close(case=case_on_hefei, actor=auditor, finding=Case.Finding.FRAUD, reason="虚构合同")

    for obj in (app_hefei, app_wuhu, app_b, app_pending, app_rejected, coupon_hefei, coupon_wuhu, coupon_b):
        obj.refresh_from_db()
    return World(
        program_a=program_a,
        program_b=program_b,
        hefei=hefei,
        wuhu=wuhu,
        provider_one=provider_one,
        provider_two=provider_two,
        app_hefei=app_hefei,
        app_wuhu=app_wuhu,
        app_b=app_b,
        app_pending=app_pending,
        app_rejected=app_rejected,
        coupon_hefei=coupon_hefei,
        coupon_wuhu=coupon_wuhu,
        coupon_b=coupon_b,
        redemption_one=redemption_one,
        redemption_two=redemption_two,
        redemption_three=redemption_three,
        statement_one=redemption_one.statement,
        statement_two=statement_two,
        statement_feb=statement_feb,
        case_open=case_on_b,
        case_closed=case_on_hefei,
    )


@pytest.fixture
def auditor_client(client, auditor):
    client.force_login(auditor)
    return client


@pytest.fixture
def staff_without_workspace(db):
    """Staff who may view programmes (the dashboards) but not use the workspace."""
    user = factories.make_user("programme-viewer", staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="coupons", codename="view_program"))
    return user
