"""Fixtures of the fraud tests: a frozen clock, a programme open around it, hand-made usage, and
a model file in ``tmp_path`` (never in the project's ``var/``).

The clock stands at ``NOW`` (Monday 15 June 2026, 10:00 in Shanghai); the programme ``program``
opens on 1 June and closes on 31 August, so applications made in a test are submitted on
``TODAY``, 77 days before the close."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import zoneinfo
from decimal import Decimal

import pytest
from django.core.cache import cache

from coupons.models import Accelerator, UsageBatch, UsageRecord
from coupons.services import usage_weeks
from fraud import model as fraud_model
from fraud.features import build_features
from tests.coupons.conftest import make_program

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 15, 10, 0, tzinfo=SHANGHAI)
TODAY = NOW.date()
OPENS = dt.date(2026, 6, 1)
CLOSES = dt.date(2026, 8, 31)
A100 = "NVIDIA A100 80GB"

_records = itertools.count(1)


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    """scikit-learn's solvers on one BLAS thread: on a busy test machine the threads of OpenBLAS
    spin against each other and make a 0.7 s fit take 3 s."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(autouse=True)
def model_file(settings, tmp_path):
    """Every test has its own model file (absent until a test saves one) and no model cached
    from another test."""
    settings.FRAUD_MODEL_PATH = tmp_path / "fraud-model.pickle"
    fraud_model._cache.update(key=None, model=None)
    yield settings.FRAUD_MODEL_PATH
    fraud_model._cache.update(key=None, model=None)


@pytest.fixture(autouse=True)
def empty_cache():
    """The debounce of rescoring lives in the cache; no test sees another's pending rescore."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture
def program(clock, db):
    return make_program(code="FR-2026", opens=OPENS, closes=CLOSES)


@pytest.fixture
def a100(db):
    return Accelerator.objects.get(name=A100)


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=SHANGHAI)


def add_usage(provider, enterprise, jobs, *, accelerator_name: str = A100) -> list[UsageRecord]:
    """Store metered jobs directly (a GIVEN of the features, not the ingestion under test), and
    add them to the weekly sums as ingestion does. ``jobs``: (start, hours, cards, amount) per
    record."""
    accelerator = Accelerator.objects.get(name=accelerator_name)
    batch = UsageBatch.objects.create(
        provider=provider,
        sha256=hashlib.sha256(f"batch-{next(_records)}".encode()).hexdigest(),
        records=len(jobs),
        created=len(jobs),
        duplicates=0,
    )
    records = []
    for start, hours, cards, amount in jobs:
        card_hours = Decimal(str(hours)) * cards
        amount = Decimal(str(amount))
        records.append(
            UsageRecord(
                provider=provider,
                record_id=f"r-{next(_records)}",
                enterprise=enterprise,
                accelerator=accelerator,
                gpu_count=cards,
                started_at=start,
                ended_at=start + dt.timedelta(hours=hours),
                card_hours=card_hours,
                amount=amount,
                price_per_card_hour=(amount / card_hours).quantize(Decimal("0.0001")),
                payload_hash="0" * 32,
                batch=batch,
                received_at=start + dt.timedelta(hours=hours),
            )
        )
    stored = UsageRecord.objects.bulk_create(records)
    usage_weeks.add_records(
        (r.enterprise_id, r.provider_id, r.accelerator_id, r.started_at, r.ended_at, r.card_hours, r.amount)
        for r in stored
    )
    return stored


def features_on(program, today: dt.date = TODAY):
    return build_features(program, today=today)
