"""Weekly usage (``UsageWeek``): metered usage summed per enterprise, provider, card model and
local week, with the counters the fraud features need. Ingestion adds each batch's new records
in the transaction that stores them (``add_records``); ``rebuild`` recomputes the table from
the records (the migration that created it, and repairs); ``differences`` lists where the table
and the records disagree (``check_ledger`` runs it).

One definition of each counter, ``_counters``, in Python; on PostgreSQL the rebuild and the
check compute the same with one ``GROUP BY`` (``_WEEKS_SQL``), and the tests hold the two
equal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction

from coupons.models import UsageRecord, UsageWeek

FLAT = dt.timedelta(hours=24)
NIGHT_ENDS = 6  # a job starting before 6 a.m. local time starts at night
HUNDRED = Decimal(100)
KEY = ("enterprise_id", "provider_id", "accelerator_id", "week")
SUMS = (
    "records",
    "card_hours",
    "amount",
    "flat_card_hours",
    "round_records",
    "night_records",
    "weekend_records",
)
LIMIT = 20  # differences listed; the count is complete


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def week_of(moment: dt.datetime, zone: ZoneInfo | None = None) -> dt.date:
    """The Monday of the local week ``moment`` falls in."""
    day = moment.astimezone(zone or _zone()).date()
    return day - dt.timedelta(days=day.weekday())


def _counters(
    rows: Iterable[tuple[int, int, int, dt.datetime, dt.datetime, Decimal, Decimal]],
) -> dict[tuple, list]:
    """Sums per key for records given as (enterprise, provider, card, started, ended,
    card-hours, amount)."""
    zone = _zone()
    weeks: dict[tuple, list] = {}
    for enterprise, provider, accelerator, started, ended, card_hours, amount in rows:
        local = started.astimezone(zone)
        day = local.date()
        key = (enterprise, provider, accelerator, day - dt.timedelta(days=day.weekday()))
        sums = weeks.get(key)
        if sums is None:
            sums = weeks[key] = [0, Decimal(0), Decimal(0), Decimal(0), 0, 0, 0]
        sums[0] += 1
        sums[1] += card_hours
        sums[2] += amount
        if ended - started == FLAT:
            sums[3] += card_hours
        if amount % HUNDRED == 0:
            sums[4] += 1
        if local.hour < NIGHT_ENDS:
            sums[5] += 1
        if local.isoweekday() >= 6:
            sums[6] += 1
    return weeks


def add_records(rows: Iterable[tuple[int, int, int, dt.datetime, dt.datetime, Decimal, Decimal]]) -> int:
    """Add newly stored records (see ``_counters``) to the weekly sums, in the caller's
    transaction. Returns the number of weeks touched."""
    weeks = _counters(rows)
    if not weeks:
        return 0
    keys = sorted(weeks)  # one order for every batch: concurrent batches cannot deadlock
    if connection.vendor == "postgresql":
        columns = ", ".join((*KEY, *SUMS))
        updates = ", ".join(f"{name} = coupons_usageweek.{name} + excluded.{name}" for name in SUMS)
        with connection.cursor() as cursor:
            for start in range(0, len(keys), 2000):
                chunk = keys[start : start + 2000]
                placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                cursor.execute(
                    f"INSERT INTO coupons_usageweek ({columns}) VALUES {placeholders} "  # noqa: S608 - names are constants
                    f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}",
                    [value for key in chunk for value in (*key, *weeks[key])],
                )
        return len(keys)
    # SQLite: one writer at a time holds the database, so read, add and write back.
    with transaction.atomic():
        existing = {}
        enterprises = {key[0] for key in keys}
        for week in UsageWeek.objects.filter(enterprise_id__in=enterprises):
            existing[(week.enterprise_id, week.provider_id, week.accelerator_id, week.week)] = week
        new, changed = [], []
        for key in keys:
            sums = weeks[key]
            week = existing.get(key)
            if week is None:
                new.append(UsageWeek(**dict(zip(KEY, key, strict=True)), **dict(zip(SUMS, sums, strict=True))))
                continue
            for name, value in zip(SUMS, sums, strict=True):
                setattr(week, name, getattr(week, name) + value)
            changed.append(week)
        UsageWeek.objects.bulk_create(new, batch_size=500)
        UsageWeek.objects.bulk_update(changed, list(SUMS), batch_size=500)
    return len(keys)


_WEEKS_SQL = """
SELECT enterprise_id, provider_id, accelerator_id,
       date_trunc('week', started_at AT TIME ZONE %(zone)s)::date AS week,
       count(*), sum(card_hours), sum(amount),
       coalesce(sum(card_hours) FILTER (WHERE ended_at - started_at = interval '24 hours'), 0),
       count(*) FILTER (WHERE mod(amount, 100) = 0),
       count(*) FILTER (WHERE extract(hour FROM started_at AT TIME ZONE %(zone)s) < 6),
       count(*) FILTER (WHERE extract(isodow FROM started_at AT TIME ZONE %(zone)s) >= 6)
  FROM coupons_usagerecord
 GROUP BY 1, 2, 3, 4
"""


def _expected(record_model=UsageRecord) -> dict[tuple, tuple]:
    """The weekly sums recomputed from the records."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_WEEKS_SQL, {"zone": settings.TIME_ZONE})
            return {tuple(row[:4]): tuple(row[4:]) for row in cursor.fetchall()}
    records = record_model.objects.values_list(
        "enterprise_id", "provider_id", "accelerator_id", "started_at", "ended_at", "card_hours", "amount"
    )
    return {key: tuple(sums) for key, sums in _counters(records.iterator(chunk_size=5000)).items()}


def rebuild(*, record_model=UsageRecord, week_model=UsageWeek) -> int:
    """Recompute the whole table from the records (holding a lock on the records' table, so
    that no batch is stored meanwhile). Returns the number of weeks. A migration passes its
    historical models."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE coupons_usagerecord IN SHARE MODE")
                cursor.execute("DELETE FROM coupons_usageweek")
                cursor.execute(
                    f"INSERT INTO coupons_usageweek ({', '.join((*KEY, *SUMS))}) {_WEEKS_SQL}",
                    {"zone": settings.TIME_ZONE},
                )
                return cursor.rowcount
        week_model.objects.all().delete()
        weeks = _expected(record_model)
        week_model.objects.bulk_create(
            [
                week_model(**dict(zip(KEY, key, strict=True)), **dict(zip(SUMS, sums, strict=True)))
                for key, sums in weeks.items()
            ],
            batch_size=1000,
        )
        return len(weeks)


def differences() -> list[str]:
    """Where the weekly table disagrees with the records: one line per week (at most
    ``LIMIT``, then a count)."""
    expected = _expected()
    stored = {tuple(row[:4]): tuple(row[4:]) for row in UsageWeek.objects.values_list(*KEY, *SUMS)}
    found = []
    for key in sorted(expected.keys() | stored.keys()):
        want, have = expected.get(key), stored.get(key)
        if want is None or have is None or any(Decimal(a) != Decimal(b) for a, b in zip(want, have, strict=True)):
            found.append(f"usage week {key}: records give {want}, the table holds {have}")
    if len(found) > LIMIT:
        return [*found[:LIMIT], f"… and {len(found) - LIMIT} more weeks"]
    return found
