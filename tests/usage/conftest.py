"""Fixtures for metered usage, redemption and settlement tests.

The clock is frozen: the coupon is approved at ``APPROVED_AT`` (its validity starts then), and
the clock then stands at ``NOW``, later in the same month, so that usage metered since the
approval can be reported (``ended_at`` is not in the future) and claimed for March.

Personas on top of ``tests/conftest.py``: ``provider`` reports with ``provider_api`` (its API
key), ``rival`` is another whitelisted provider with ``rival_api``, ``settler`` is staff who may
reverse redemptions and approve and pay statements."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import orjson
import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from core.models import AuditEntry
from coupons.ledger_check import check_ledger
from coupons.models import (
    Account,
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Redemption,
    RedemptionLine,
    Statement,
    UsageBatch,
    UsageRecord,
)
from coupons.services.redemptions import ClaimRequest, redemption_claim
from coupons.services.review import review_approve
from coupons.services.usage import usage_ingest
from enterprises.services import provider_key_create
from tests import factories
from tests.coupons.conftest import make_application, make_program

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
APPROVED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
NOW = dt.datetime(2026, 3, 25, 12, 0, tzinfo=SHANGHAI)
MARCH = (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
USAGE = "/api/v1/usage/"
REDEMPTIONS = "/api/v1/redemptions/"
STATEMENTS = "/api/v1/statements/"


def march(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=SHANGHAI)


def record(
    record_id: str,
    *,
    enterprise,
    gpu_model: str = "A100-80G",
    gpu_count: int = 8,
    start: dt.datetime | None = None,
    hours: int = 10,
    amount: str = "1000.00",
    **overrides,
) -> dict:
    """One usage record in the wire format (strings, as a provider sends them)."""
    start = start or march(5)
    values = {
        "record_id": record_id,
        "enterprise_uscc": enterprise.uscc,
        "gpu_model": gpu_model,
        "gpu_count": gpu_count,
        "started_at": start.isoformat(),
        "ended_at": (start + dt.timedelta(hours=hours)).isoformat(),
        "card_hours": f"{gpu_count * hours}.0000",
        "amount": amount,
    }
    values.update(overrides)
    return values


def ingest(provider, records: list[dict]):
    """Store records through the service the API and the command use (a GIVEN, not the subject)."""
    return usage_ingest(provider=provider, records=records, body=orjson.dumps({"records": records}))


def claim(provider, coupon, *, records=None, period=MARCH, key="key-1", actor=None):
    """Claim through the service (a GIVEN); returns the redemption."""
    redemption, _replayed = redemption_claim(
        provider=provider,
        request=ClaimRequest(coupon_code=coupon.code, period_start=period[0], period_end=period[1], record_ids=records),
        idempotency_key=key,
        actor=actor,
    )
    return redemption


def claim_body(coupon, *, records=None, period=MARCH) -> dict:
    body = {"coupon": coupon.code, "period_start": period[0].isoformat(), "period_end": period[1].isoformat()}
    if records is not None:
        body["records"] = records
    return body


def db_state() -> dict:
    """Everything a refused request must leave as it was."""
    return {
        "batches": list(UsageBatch.objects.order_by("pk").values_list("pk", "records", "created", "duplicates")),
        "usage": list(
            UsageRecord.objects.order_by("pk").values_list("pk", "record_id", "payload_hash", "redemption_id")
        ),
        "redemptions": list(
            Redemption.objects.order_by("pk").values_list(
                "pk", "state", "subsidy", "statement_id", "transaction_id", "reversal_id"
            )
        ),
        "lines": RedemptionLine.objects.count(),
        "statements": list(Statement.objects.order_by("pk").values_list("pk", "state", "approved_at", "paid_at")),
        "coupons": list(Coupon.objects.order_by("pk").values_list("pk", "state", "returned_amount")),
        "accounts": list(Account.objects.order_by("pk").values_list("pk", "balance")),
        "transactions": LedgerTransaction.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def assert_ledger_ok() -> None:
    report = check_ledger()
    assert report.ok, report.violations


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one API error shape; returns the ``error`` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def where(error: dict) -> set[tuple]:
    """(index, field) of every detail of an error."""
    return {(d.get("index"), d.get("field")) for d in error["details"]}


def balance(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def key_client(provider) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=provider).raw_key}")
    return client


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(APPROVED_AT, tick=False)
    return time_machine


@pytest.fixture
def later(clock):
    """The clock at ``NOW``, for tests that need no coupon."""
    clock.move_to(NOW, tick=False)
    return clock


@pytest.fixture
def program(clock):
    return make_program()


@pytest.fixture
def application(organisation, provider, program):
    return make_application(organisation=organisation, provider=provider, program=program)


@pytest.fixture
def coupon(clock, application, reviewer):
    """The coupon of ``application``: 20,000 yuan (100,000 × 0.20), valid from ``APPROVED_AT``.
    The clock then moves on to ``NOW``."""
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(NOW, tick=False)
    return coupon


@pytest.fixture
def rival(db):
    return factories.make_provider()


@pytest.fixture
def provider_api(provider):
    return key_client(provider)


@pytest.fixture
def rival_api(rival):
    return key_client(rival)


@pytest.fixture
def settler(db):
    """Staff who reverse redemptions, approve adjustments, approve and pay statements."""
    user = factories.make_user("settler", staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="coupons",
            codename__in=[
                "view_redemption",
                "change_redemption",
                "view_statement",
                "change_statement",
                "view_usagerecord",
            ],
        )
    )
    return user


@pytest.fixture
def settler_api(settler):
    client = APIClient()
    client.force_login(settler)
    return client
