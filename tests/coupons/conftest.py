"""Fixtures that compose: program → application → (approved) coupon."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from coupons.models import Accelerator
from coupons.services.applications import application_create, application_submit
from coupons.services.programs import program_create


def make_program(**overrides):
    today = timezone.localdate()
    values = {
        "code": f"P{Decimal(len(overrides)) + 1}-{timezone.now().timestamp():.0f}"[:30],
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


@pytest.fixture
def program(db):
    return make_program(code="AH-TEST")


@pytest.fixture
def application(organisation, provider, program):
    return make_application(organisation=organisation, provider=provider, program=program)
