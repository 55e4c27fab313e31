"""Fixtures that compose: program → application → (approved) coupon. Plus the helpers the
coupons tests share: a snapshot of everything a denial must leave untouched, and the check of
the one API error shape."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from core.models import AuditEntry
from coupons.ledger_check import check_ledger
from coupons.models import (
    Accelerator,
    Account,
    Application,
    ApplicationMessage,
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Review,
)
from coupons.services.applications import application_create, application_submit
from coupons.services.programs import program_create
from coupons.services.review import review_approve

_program_numbers = itertools.count(1)


def make_program(**overrides):
    today = timezone.localdate()
    values = {
        # A counter, not the clock: two programmes made in the same second need two codes.
        "code": f"P{next(_program_numbers)}-{timezone.now().timestamp():.0f}"[:30],
        "name": "测试算力券 2026",
        "budget": Decimal("1000000.00"),
        "rate": Decimal("0.200"),
        "domestic_rate": Decimal("0.300"),
        "per_enterprise_cap": Decimal("200000.00"),
        "opens": today - dt.timedelta(days=30),
        "closes": today + dt.timedelta(days=60),
        "validity_days": 365,
        "second_review_amount": Decimal("100000.00"),
    }
    values.update(overrides)
    return program_create(**values)


def make_application(
    *, organisation, provider, program, submit: bool = True, accelerator_name="NVIDIA A100 80GB", **overrides
):
    values = {
        "claimed_card_hours": Decimal("10000.0000"),
        "claimed_amount": Decimal("100000.00"),
        "scenario": "training",
        "project_summary": "训练面向工业质检的视觉大模型，使用自有标注数据集。",
    }
    values.update(overrides)
    application = application_create(
        organisation=organisation,
        program=program,
        provider=provider,
        accelerator=Accelerator.objects.get(name=accelerator_name),
        created_by=None,
        **values,
    )
    if submit:
        application = application_submit(application=application, actor=None)
    return application


def set_status(application: Application, status: str, **fields) -> Application:
    """Put ``application`` in ``status`` directly (a test's GIVEN, not a transition)."""
    if status == Application.Status.APPROVED:
        fields.setdefault("granted_amount", Decimal("1000.00"))
    if status != Application.Status.DRAFT:
        fields.setdefault("submitted_at", timezone.now())
    Application.objects.filter(pk=application.pk).update(status=status, **fields)
    application.refresh_from_db()
    return application


def budget_account(program: Program) -> Account:
    return Account.objects.get(program=program, kind=Account.Kind.BUDGET)


def snapshot() -> dict:
    """Everything a refused request must leave as it was."""
    return {
        "applications": list(
            Application.objects.order_by("pk").values_list(
                "pk", "status", "granted_amount", "submitted_at", "decided_at", "updated_at"
            )
        ),
        "reviews": list(Review.objects.order_by("pk").values_list("pk", "decision", "amount", "superseded")),
        "messages": ApplicationMessage.objects.count(),
        "coupons": list(Coupon.objects.order_by("pk").values_list("pk", "state", "face_value", "returned_amount")),
        "programs": list(Program.objects.order_by("pk").values_list("pk", "budget", "updated_at")),
        "accounts": list(Account.objects.order_by("pk").values_list("pk", "balance")),
        "transactions": LedgerTransaction.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def assert_ledger_ok() -> None:
    report = check_ledger()
    assert report.ok, report.violations


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    """The one API error shape; returns the ``error`` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def program(db):
    return make_program(code="AH-TEST")


@pytest.fixture
def application(organisation, provider, program):
    return make_application(organisation=organisation, provider=provider, program=program)


@pytest.fixture
def coupon(application, reviewer):
    """The coupon of ``application``, approved at its limit (100,000 × 0.20 = 20,000)."""
    return review_approve(application=application, reviewer=reviewer).coupon
