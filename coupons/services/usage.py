"""Usage ingestion: the one code path behind ``POST /api/v1/usage/`` (JSON or CSV) and
``manage.py import_usage``.

The rules (design.md, usage format): the enterprise is in the registry; the card model is known
(names and aliases without regard to case, spaces or hyphens); ``ended_at`` after
``started_at`` and not in the future; ``card_hours`` agrees with ``gpu_count`` × duration
within ``CARD_HOURS_TOLERANCE``; amounts not negative. A batch with any invalid record writes
nothing and reports every error with its index and field.

Idempotency: ``(provider, record_id)`` is unique. A record sent again with the same payload is a
duplicate (counted, not stored again); with a different payload it is a conflict (409, each
listed). A whole batch sent again (same bytes) returns the stored result of the first time
without validating or writing anything.

Speed: records are validated in one tight pass, look-ups are one query per batch, and on
PostgreSQL the new rows go in with ``COPY`` (``bench/ingest.py`` measures it against a plain
``COPY`` of the same rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import Conflict, Problem, ValidationFailed
from coupons.models import UsageBatch, UsageRecord, normalize_model_name
from coupons.selectors import accelerator_index
from coupons.services import usage_weeks
from enterprises.models import Organisation, Provider
from enterprises.validators import check_uscc

MAX_BATCH = 10_000
USAGE_FIELDS = [
    "record_id",
    "enterprise_uscc",
    "gpu_model",
    "gpu_count",
    "started_at",
    "ended_at",
    "card_hours",
    "amount",
]
# card_hours may differ from gpu_count × hours by 1% or 0.01 card-hours, whichever is larger
# (providers round durations to the second or the minute).
CARD_HOURS_TOLERANCE = Decimal("0.01")
CARD_HOURS_TOLERANCE_ABSOLUTE = Decimal("0.01")
# ended_at may be this far ahead of the platform's clock (clock skew between systems).
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_GPU_COUNT = 100_000
MAX_AMOUNT = Decimal("999999999999.99")  # NUMERIC(14, 2)
MAX_CARD_HOURS = Decimal("9999999999.9999")  # NUMERIC(14, 4)
ASCII_DIGITS = re.compile(r"[0-9]{1,9}")
MAX_PRICE = Decimal("99999999.9999")  # the price-per-card-hour column: NUMERIC(12, 4)
RECORD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-/]{0,63}")
FOUR_PLACES = Decimal("0.0001")
SIX_PLACES = Decimal("0.000001")
CENT = Decimal("0.01")
HOUR = Decimal(3600)


@dataclass(frozen=True)
class IngestResult:
    batch_id: int
    records: int
    created: int
    duplicates: int
    replayed: bool = False

    def as_dict(self) -> dict:
        return {
            "batch": self.batch_id,
            "records": self.records,
            "created": self.created,
            "duplicates": self.duplicates,
            "replayed": self.replayed,
        }


class _Accelerators:
    """The accelerator index, cached per process for a minute (staff rarely edit it, and a
    look-up per batch would cost more than the batch's validation)."""

    ttl = 60.0

    def __init__(self):
        self.index, self.loaded_at = None, 0.0

    def get(self) -> dict:
        if self.index is None or time.monotonic() - self.loaded_at > self.ttl:
            self.index, self.loaded_at = accelerator_index(), time.monotonic()
        return self.index

    def clear(self) -> None:
        self.index = None


accelerators = _Accelerators()


def _decimal(value, places: int) -> Decimal:
    number = Decimal(value if isinstance(value, str) else str(value))
    if not number.is_finite() or number.as_tuple().exponent < -places:
        raise InvalidOperation
    return number


class UnstorableMoment(ValueError):
    """A well-formed date-time the database cannot store; the message says why."""


def _moment(value) -> dt.datetime:
    """An ISO 8601 date-time the database can take; ``ValueError`` (reported against the field
    by the caller) for anything else, an offset beyond ±15:59 or year 1 included."""
    from core.datetimes import unstorable_reason

    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = timezone.make_aware(moment)
    if reason := unstorable_reason(moment):
        raise UnstorableMoment(reason)
    return moment


def _moment_problem(error: Exception) -> str:
    """What is wrong with a date-time: why the database cannot take it, else the format."""
    return str(error) if isinstance(error, UnstorableMoment) else "is not an ISO 8601 date-time"


def parse_csv_records(data: bytes) -> list[dict]:
    """A usage CSV (the format of design.md) as records of strings. Decoding and header rules
    are those of every import."""
    from core.csvimport import decode_csv_bytes

    reader = csv.reader(io.StringIO(decode_csv_bytes(data), newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise ValidationFailed("The file is empty.", details=[Problem("no header row", line=1)]) from None
    problems = [Problem("missing column", line=1, column=name) for name in USAGE_FIELDS if name not in header]
    problems += [
        Problem(f"unknown column {name!r}", line=1, column=name) for name in header if name not in USAGE_FIELDS
    ]
    if problems:
        raise ValidationFailed("The header of the usage file is not valid.", details=problems)
    records = []
    try:
        rows = list(reader)
    except csv.Error as error:
        raise ValidationFailed(
            "The usage file is not valid CSV.", details=[Problem(f"unreadable CSV: {error}", line=reader.line_num)]
        ) from None
    if not any(rows):
        raise ValidationFailed("The file has a header but no rows.", details=[Problem("no data rows", line=2)])
    for line, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise ValidationFailed(
                "A row of the usage file has the wrong number of cells.",
                details=[Problem(f"has {len(cells)} cells, the header has {len(header)}", line=line)],
            )
        records.append(dict(zip(header, (cell.strip() for cell in cells), strict=True)))
    return records


def validate_records(
    records: list, *, now: dt.datetime, max_records: int | None = MAX_BATCH
) -> tuple[list[tuple], list[Problem]]:
    """Check every record; return the parsed rows and every problem (``line`` is the record's
    index in the batch, ``column`` its field)."""
    problems: list[Problem] = []
    if not isinstance(records, list):
        return [], [Problem("records must be a list", column="records")]
    if max_records is not None and len(records) > max_records:
        return [], [Problem(f"a batch holds at most {max_records} records, this one {len(records)}", column="records")]
    index_of_model = accelerators.get()
    latest = now + CLOCK_SKEW
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem("is not an object", line=index))
            continue
        bad = len(problems)
        missing = [name for name in USAGE_FIELDS if record.get(name) in (None, "")]
        for name in missing:
            problems.append(Problem("is required", line=index, column=name))
        unknown = [name for name in record if name not in USAGE_FIELDS]
        for name in unknown:
            problems.append(Problem("is not a field of the usage format", line=index, column=name))
        if missing or unknown:
            continue
        record_id = str(record["record_id"])
        if not RECORD_ID.fullmatch(record_id):
            problems.append(Problem("use 1-64 letters, digits and . _ : - /", line=index, column="record_id"))
        uscc = str(record["enterprise_uscc"]).strip().upper()
        if not check_uscc(uscc).well_formed:
            problems.append(Problem("is not a well-formed USCC (18 characters)", line=index, column="enterprise_uscc"))
        accelerator = index_of_model.get(normalize_model_name(str(record["gpu_model"])))
        if accelerator is None:
            problems.append(
                Problem(f"{record['gpu_model']!r} is not a known card model", line=index, column="gpu_model")
            )
        raw_count = record["gpu_count"]
        if isinstance(raw_count, int) and not isinstance(raw_count, bool):
            gpu_count = raw_count
        elif isinstance(raw_count, str) and ASCII_DIGITS.fullmatch(raw_count.strip()):
            gpu_count = int(raw_count)
        else:
            gpu_count = None
        if gpu_count is None or not 0 < gpu_count <= MAX_GPU_COUNT:
            problems.append(
                Problem(f"must be a whole number from 1 to {MAX_GPU_COUNT}", line=index, column="gpu_count")
            )
            gpu_count = None
        try:
            started = _moment(record["started_at"])
        except (TypeError, ValueError) as error:
            problems.append(Problem(_moment_problem(error), line=index, column="started_at"))
            started = None
        try:
            ended = _moment(record["ended_at"])
        except (TypeError, ValueError) as error:
            problems.append(Problem(_moment_problem(error), line=index, column="ended_at"))
            ended = None
        if started is not None and ended is not None:
            if ended <= started:
                problems.append(Problem("must be after started_at", line=index, column="ended_at"))
            elif ended > latest:
                problems.append(Problem("is in the future", line=index, column="ended_at"))
        try:
            card_hours = _decimal(record["card_hours"], 4)
            if card_hours <= 0:
                problems.append(Problem("must be positive", line=index, column="card_hours"))
            elif card_hours > MAX_CARD_HOURS:
                problems.append(Problem("is too large", line=index, column="card_hours"))
        except (InvalidOperation, TypeError, ValueError):
            problems.append(Problem("is not a number with at most 4 decimals", line=index, column="card_hours"))
            card_hours = None
        try:
            amount = _decimal(record["amount"], 2)
            if amount < 0:
                problems.append(Problem("must not be negative", line=index, column="amount"))
            elif amount > MAX_AMOUNT:
                problems.append(Problem("is too large", line=index, column="amount"))
        except (InvalidOperation, TypeError, ValueError):
            problems.append(Problem("is not an amount with at most 2 decimals", line=index, column="amount"))
            amount = None
        if card_hours is not None and card_hours > 0 and gpu_count and started and ended and ended > started:
            expected = gpu_count * Decimal((ended - started).total_seconds()) / HOUR
            allowed = max(expected * CARD_HOURS_TOLERANCE, CARD_HOURS_TOLERANCE_ABSOLUTE)
            if abs(card_hours - expected) > allowed:
                problems.append(
                    Problem(
                        f"{card_hours} differs from gpu_count × duration = {expected.quantize(FOUR_PLACES)} by more than 1%",
                        line=index,
                        column="card_hours",
                    )
                )
        if card_hours is not None and card_hours > 0 and amount is not None and amount / card_hours > MAX_PRICE:
            problems.append(Problem(f"gives a price above {MAX_PRICE} yuan per card-hour", line=index, column="amount"))
        if len(problems) == bad:
            rows.append((index, record_id, uscc, accelerator, gpu_count, started, ended, card_hours, amount))
    return rows, problems


def _payload_hash(row) -> str:
    _index, record_id, uscc, accelerator, gpu_count, started, ended, card_hours, amount = row
    canonical = f"{record_id}|{uscc}|{accelerator.pk}|{gpu_count}|{started.timestamp():.0f}|{ended.timestamp():.0f}|{card_hours.normalize()}|{amount.normalize()}"
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def usage_ingest(
    *,
    provider: Provider,
    records: list,
    body: bytes,
    source: str = "api",
    now: dt.datetime | None = None,
    max_records: int | None = MAX_BATCH,
) -> IngestResult:
    """Validate and store one batch of usage records for ``provider``, all or nothing; see the
    module doc. The API caps a batch at ``MAX_BATCH``; a file import passes ``max_records=None``."""
    sha256 = hashlib.sha256(body).hexdigest()
    stored = UsageBatch.objects.filter(provider=provider, sha256=sha256).first()
    if stored is not None:
        return IngestResult(stored.pk, stored.records, stored.created, stored.duplicates, replayed=True)
    now = now or timezone.now()
    rows, problems = validate_records(records, now=now, max_records=max_records)
    usccs = {row[2] for row in rows}
    enterprises = dict(Organisation.objects.filter(uscc__in=usccs).values_list("uscc", "pk")) if usccs else {}
    for row in rows:
        if row[2] not in enterprises:
            problems.append(Problem(f"{row[2]} is not in the registry", line=row[0], column="enterprise_uscc"))
    if problems:
        problems.sort(key=lambda p: p.line if p.line is not None else -1)
        raise ValidationFailed(f"{len(problems)} problem(s) in the batch; nothing was stored.", details=problems)

    hashes = {}
    new_rows, duplicates, conflicts = [], 0, []
    for row in rows:
        digest = _payload_hash(row)
        earlier = hashes.get(row[1])
        if earlier is None:
            hashes[row[1]] = digest
            new_rows.append((row, digest))
        elif earlier == digest:
            duplicates += 1
        else:
            conflicts.append(
                Problem(
                    f"record {row[1]} appears earlier in the batch with a different payload",
                    line=row[0],
                    column="record_id",
                )
            )
    existing = dict(
        UsageRecord.objects.filter(provider=provider, record_id__in=list(hashes)).values_list(
            "record_id", "payload_hash"
        )
    )
    if existing:
        fresh = []
        for row, digest in new_rows:
            stored_hash = existing.get(row[1])
            if stored_hash is None:
                fresh.append((row, digest))
            elif stored_hash == digest:
                duplicates += 1
            else:
                conflicts.append(
                    Problem(
                        f"record {row[1]} was stored before with a different payload", line=row[0], column="record_id"
                    )
                )
        new_rows = fresh
    if conflicts:
        raise Conflict(f"{len(conflicts)} record(s) conflict with stored usage; nothing was stored.", details=conflicts)
    try:
        with transaction.atomic():
            batch = UsageBatch.objects.create(
                provider=provider,
                sha256=sha256,
                source=source,
                records=len(rows),
                created=len(new_rows),
                duplicates=duplicates,
            )
            _write(provider, batch, new_rows, enterprises, now)
    except IntegrityError:
        # Another request stored some of these records (or this very batch) in the meantime:
        # start again, now seeing them as duplicates or the batch as a replay.
        return usage_ingest(
            provider=provider, records=records, body=body, source=source, now=now, max_records=max_records
        )
    transaction.on_commit(lambda: _announce(provider.pk, {enterprises[row[2]] for row, _digest in new_rows}))
    return IngestResult(batch.pk, batch.records, batch.created, batch.duplicates)


def _announce(provider_id: int, enterprise_ids: set[int]) -> None:
    from coupons import signals

    signals.usage_ingested.send(sender=UsageRecord, provider_id=provider_id, enterprise_ids=enterprise_ids)


COPY_COLUMNS = [
    "provider_id",
    "record_id",
    "enterprise_id",
    "accelerator_id",
    "gpu_count",
    "started_at",
    "ended_at",
    "card_hours",
    "amount",
    "price_per_card_hour",
    "provider_unit",
    "standard_units",
    "payload_hash",
    "batch_id",
    "received_at",
]


def _derived(accelerator, card_hours: Decimal, amount: Decimal) -> tuple[Decimal, Decimal | None]:
    price = (amount / card_hours).quantize(FOUR_PLACES)
    tflops = accelerator.fp16_dense_tflops
    standard = (card_hours * tflops / 1000).quantize(SIX_PLACES) if tflops else None
    return price, standard


def _write(provider: Provider, batch: UsageBatch, new_rows: list, enterprises: dict, now: dt.datetime) -> None:
    if not new_rows:
        return
    if connection.vendor == "postgresql":
        received = now.isoformat()
        lines = []
        for (_index, record_id, uscc, accelerator, gpu_count, started, ended, card_hours, amount), digest in new_rows:
            price, standard = _derived(accelerator, card_hours, amount)
            lines.append(
                f"{provider.pk}\t{record_id}\t{enterprises[uscc]}\t{accelerator.pk}\t{gpu_count}\t{started.isoformat()}\t"
                f"{ended.isoformat()}\t{card_hours}\t{amount}\t{price}\tcard_hour\t{standard if standard is not None else chr(92) + 'N'}\t"
                f"{digest}\t{batch.pk}\t{received}\n"
            )
        with (
            # psycopg's errors from COPY (a unique violation when a racing batch stored the same
            # record) become Django's, so that usage_ingest's retry catches them.
            connection.wrap_database_errors,
            connection.cursor() as cursor,
            cursor.copy(f"COPY coupons_usagerecord ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy,
        ):
            copy.write("".join(lines))
    else:
        _create(provider, batch, new_rows, enterprises, now)
    usage_weeks.add_records(
        (enterprises[uscc], provider.pk, accelerator.pk, started, ended, card_hours, amount)
        for (_index, _record_id, uscc, accelerator, _count, started, ended, card_hours, amount), _digest in new_rows
    )


def _create(provider: Provider, batch: UsageBatch, new_rows: list, enterprises: dict, now: dt.datetime) -> None:
    objects = []
    for (_index, record_id, uscc, accelerator, gpu_count, started, ended, card_hours, amount), digest in new_rows:
        price, standard = _derived(accelerator, card_hours, amount)
        objects.append(
            UsageRecord(
                provider=provider,
                record_id=record_id,
                enterprise_id=enterprises[uscc],
                accelerator=accelerator,
                gpu_count=gpu_count,
                started_at=started,
                ended_at=ended,
                card_hours=card_hours,
                amount=amount,
                price_per_card_hour=price,
                standard_units=standard,
                payload_hash=digest,
                batch=batch,
                received_at=now,
            )
        )
    UsageRecord.objects.bulk_create(objects, batch_size=500)
