"""Weekly usage: the sums the fraud features read, kept by ingestion in step with the records."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.errors import ValidationFailed
from coupons.ledger_check import check_ledger
from coupons.models import UsageWeek
from coupons.services import usage_weeks
from tests.usage.conftest import SHANGHAI, ingest, record

pytestmark = pytest.mark.django_db


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


def weeks() -> dict:
    return {
        (w.enterprise_id, w.provider_id, w.week): (
            w.records,
            w.card_hours,
            w.amount,
            w.flat_card_hours,
            w.round_records,
            w.night_records,
            w.weekend_records,
        )
        for w in UsageWeek.objects.all()
    }


def test_each_counter_is_summed_per_local_week(later, provider, organisation):
    # 2026-03-08 is a Sunday, 2026-03-09 a Monday (Asia/Shanghai).
    ingest(
        provider,
        [
            # Monday 2 March, 10:00, 8 cards × 10 h, 1,000 yuan: a round amount, daytime, a weekday.
            record("a", enterprise=organisation, start=at(2, 10)),
            # Sunday 8 March at 23:30 local is 15:30 UTC the same Sunday: still the week of 2 March,
            # a weekend record, not at night.
            record("b", enterprise=organisation, start=at(8, 23, 30), hours=2, amount="123.45"),
            # Monday 9 March at 00:30 local is Sunday 16:30 UTC: the next week, at night.
            record("c", enterprise=organisation, start=at(9, 0, 30), hours=1, gpu_count=4, amount="40.00"),
            # A flat 24-hour record from midnight, 4 cards: 96 card-hours, night.
            record("d", enterprise=organisation, start=at(10, 0), hours=24, gpu_count=4, amount="2400.00"),
        ],
    )

    assert weeks() == {
        (organisation.pk, provider.pk, dt.date(2026, 3, 2)): (
            2,
            Decimal("96.0000"),
            Decimal("1123.45"),
            Decimal("0"),
            1,
            0,
            1,
        ),
        (organisation.pk, provider.pk, dt.date(2026, 3, 9)): (
            2,
            Decimal("100.0000"),
            Decimal("2440.00"),
            Decimal("96.0000"),
            1,
            2,
            0,
        ),
    }
    assert usage_weeks.differences() == []


def test_a_later_batch_adds_to_the_weeks_and_duplicates_add_nothing(later, provider, organisation):
    ingest(provider, [record("a", enterprise=organisation, start=at(3, 10))])
    ingest(
        provider,
        [
            record("a", enterprise=organisation, start=at(3, 10)),  # a duplicate: stored once
            record("b", enterprise=organisation, start=at(4, 10), amount="150.00"),
        ],
    )

    (sums,) = weeks().values()
    assert sums[:3] == (2, Decimal("160.0000"), Decimal("1150.00"))
    assert sums[4] == 1  # only the first bills a round hundred
    assert usage_weeks.differences() == []


def test_a_refused_batch_leaves_the_weeks_as_they_were(later, provider, organisation):
    ingest(provider, [record("a", enterprise=organisation, start=at(3, 10))])
    before = weeks()

    with pytest.raises(ValidationFailed):
        ingest(
            provider,
            [
                record("b", enterprise=organisation, start=at(4, 10)),
                record("c", enterprise=organisation, start=at(4, 10), card_hours="1.0000"),
            ],
        )

    assert weeks() == before


def test_a_difference_between_the_table_and_the_records_is_reported_and_rebuild_repairs_it(
    later, provider, organisation
):
    ingest(
        provider,
        [
            record("a", enterprise=organisation, start=at(3, 10)),
            record("b", enterprise=organisation, start=at(12, 3), amount="77.70"),
        ],
    )
    expected = weeks()
    UsageWeek.objects.filter(week=dt.date(2026, 3, 2)).update(card_hours=Decimal("1"))
    UsageWeek.objects.filter(week=dt.date(2026, 3, 9)).delete()

    found = usage_weeks.differences()
    assert len(found) == 2
    assert any("2026, 3, 2" in line and "80.0000" in line for line in found)
    report = check_ledger()
    assert report.checks["weekly usage agrees with the records"] == 2

    assert usage_weeks.rebuild() == 2
    assert weeks() == expected
    assert usage_weeks.differences() == []


@pytest.mark.postgres
def test_on_postgresql_the_sql_definition_matches_the_python_one(later, provider, organisation, on_postgres):
    starts = [at(day, hour, minute) for day in (1, 7, 8, 9, 15) for hour, minute in ((0, 0), (5, 59), (6, 0), (23, 59))]
    ingest(
        provider,
        [
            record(f"r{i}", enterprise=organisation, start=start, hours=24 if i % 3 == 0 else 2, amount=f"{i * 50}.00")
            for i, start in enumerate(starts)
        ],
    )
    records = [
        (organisation.pk, provider.pk, *row)
        for row in organisation.usage_records.values_list(
            "accelerator_id", "started_at", "ended_at", "card_hours", "amount"
        )
    ]

    in_sql = usage_weeks._expected()
    in_python = {key: tuple(sums) for key, sums in usage_weeks._counters(records).items()}
    assert in_sql == in_python
    assert len(in_sql) == 3  # 1 March is in the week of 23 February; 15 March, a Sunday, in that of 9 March


def test_the_rebuild_command_repairs_the_table(later, provider, organisation):
    import io

    from django.core.management import call_command

    ingest(provider, [record("a", enterprise=organisation, start=at(3, 10))])
    UsageWeek.objects.update(records=5)
    out = io.StringIO()

    call_command("rebuild_usage_weeks", stdout=out)

    assert "1 weeks, in step with the records" in out.getvalue()
    assert usage_weeks.differences() == []
