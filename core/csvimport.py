"""The machinery every CSV import shares: decoding (UTF-8 with or without BOM, or GB18030),
the header check, per-cell parsers that say precisely what is wrong, and the all-or-nothing
upsert. A concrete import (``enterprises.imports.RegistryImport`` …) declares its columns, how
a parsed row becomes model fields, and the key it upserts by.

Contract for callers (commands, admin uploads, tasks): ``run()`` either writes every row and
returns an ``ImportSummary``, or raises ``ValidationFailed`` listing every problem with its
line and column and writes nothing.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from django.db import transaction
from django.utils import timezone

from core.datetimes import unstorable_reason
from core.errors import Problem, ValidationFailed

MAX_REPORTED_PROBLEMS = 1000


class CellError(ValueError):
    """Raised by a cell parser; the message is the reason shown to the user."""


# --- decoding -----------------------------------------------------------------------------

# A CJK ideograph (the unified blocks and the compatibility block).
_IDEOGRAPH = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_IDEOGRAPHS = re.compile(f"[{_IDEOGRAPH}]")
# Latin-1 or Windows-1252 read as GB18030: an accented letter and the ASCII letter after it
# become one ideograph inside a Latin word ("Müller" reads as "M黮ler").
_LATIN_READ_AS_GB18030 = re.compile(f"[A-Za-z][{_IDEOGRAPH}][A-Za-z]")


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_csv_bytes(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), else GB18030, which Excel on Chinese Windows
    writes. Anything else is refused with the line and the byte where reading stopped, never
    guessed into mojibake: GB18030 is read only when the whole file decodes as GB18030 and
    nothing says it is something else (``_gb18030_text``). A NUL byte anywhere is refused
    (PostgreSQL text cannot hold one, and no CSV text file has one)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValidationFailed(
            "The file is UTF-16; save it as UTF-8 or GB18030 CSV.",
            details=[Problem("UTF-16 is not supported", line=1)],
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValidationFailed(
            "The file is not a CSV text file.", details=[Problem("contains NUL bytes", line=_line_at(data, nul))]
        )
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        return _gb18030_text(data, bom + utf8_error.start, utf8_error.reason)


def _gb18030_text(data: bytes, start: int, utf8_reason: str) -> str:
    """``data``, not UTF-8 from byte ``start`` on, read as GB18030, or refused with the line of
    that byte and the reason. Almost any byte string decodes as *something* in GB18030, so
    decoding alone proves little: a UTF-8 file cut in a character or with rows pasted from
    another encoding, and a Latin-1 file, read as plausible Chinese. The checks below refuse
    those; a genuine GB18030 file trips them very rarely (its first bytes that are not UTF-8
    come early, before two UTF-8 ideographs could), and is then refused, never imported wrong."""

    def refuse(why: str) -> NoReturn:
        raise ValidationFailed(
            "The file is neither UTF-8 nor GB18030 text.",
            details=[Problem(f"undecodable byte at offset {start}: {why}", line=_line_at(data, start))],
        )

    if data.startswith(codecs.BOM_UTF8):
        refuse("the file begins with a UTF-8 byte-order mark, so it is not GB18030")
    if utf8_reason == "unexpected end of data":
        refuse("the file ends in the middle of a UTF-8 character (was it cut short?)")
    ideographs = _IDEOGRAPHS.finditer(data[:start].decode("utf-8"))
    if next(ideographs, None) and next(ideographs, None):
        refuse("the Chinese text before it is UTF-8, so from here the file is broken or in another encoding")
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        refuse("not UTF-8, nor GB18030")
    latin = _LATIN_READ_AS_GB18030.search(text)
    if latin:
        refuse(f"read as GB18030 a Latin word would hold {latin.group()!r}; save the file as UTF-8")
    return text


# --- cell parsers -------------------------------------------------------------------------


def text(max_length: int | None = None, *, pattern: str | None = None, message: str = "") -> Callable:
    compiled = re.compile(pattern) if pattern else None

    def parse(value: str) -> str:
        if max_length is not None and len(value) > max_length:
            raise CellError(f"longer than {max_length} characters")
        if compiled and not compiled.fullmatch(value):
            raise CellError(message or f"does not match {pattern}")
        return value

    return parse


def decimal(places: int, *, minimum: Decimal | None = Decimal(0), max_digits: int = 14) -> Callable:
    """A plain decimal with at most ``places`` decimals and ``max_digits`` digits in all (the
    column's size: 14 digits are up to ¥999,999,999,999.99)."""

    def parse(value: str) -> Decimal:
        cleaned = value.replace(",", "").replace("¥", "").strip()
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise CellError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise CellError(f"{value!r} is not a finite number")
        if number.adjusted() >= max_digits - places:
            raise CellError(f"{value!r} is too large")
        quantum = Decimal(1).scaleb(-places)
        if number != number.quantize(quantum):
            raise CellError(f"{value!r} has more than {places} decimal places")
        number = number.quantize(quantum)
        if minimum is not None and number < minimum:
            raise CellError(f"{value!r} is below {minimum}")
        return number

    return parse


def integer(*, minimum: int | None = 0, maximum: int | None = 2_147_483_647) -> Callable:
    def parse(value: str) -> int:
        try:
            number = int(value.replace(",", ""))
        except ValueError:
            raise CellError(f"{value!r} is not a whole number") from None
        if minimum is not None and number < minimum:
            raise CellError(f"{number} is below {minimum}")
        if maximum is not None and number > maximum:
            raise CellError(f"{number} is above {maximum}")
        return number

    return parse


def date() -> Callable:
    def parse(value: str) -> dt.date:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise CellError(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)") from None

    return parse


def aware_datetime() -> Callable:
    """ISO 8601; a time without an offset is read in the platform's zone (Asia/Shanghai)."""

    def parse(value: str) -> dt.datetime:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise CellError(f"{value!r} is not an ISO 8601 date-time") from None
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        if reason := unstorable_reason(moment):
            raise CellError(f"{value!r} {reason}")
        return moment

    return parse


def boolean() -> Callable:
    truthy = {"1", "true", "yes", "y", "是"}
    falsy = {"0", "false", "no", "n", "否"}

    def parse(value: str) -> bool:
        lowered = value.strip().lower()
        if lowered in truthy:
            return True
        if lowered in falsy:
            return False
        raise CellError(f"{value!r} is not yes/no (true/false, 1/0, 是/否)")

    return parse


def choice(values: Iterable[str]) -> Callable:
    allowed = list(values)

    def parse(value: str) -> str:
        if value not in allowed:
            raise CellError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return parse


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], object]
    required: bool = True  # the cell must not be empty
    optional_column: bool = False  # the column may be left out of the header altogether


# --- running an import --------------------------------------------------------------------


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def __str__(self) -> str:
        text = f"{self.total} rows: {self.created} created, {self.updated} updated, {self.unchanged} unchanged"
        for key, value in self.extra.items():
            text += f", {value} {key}"
        return text


@dataclass
class ParsedRow:
    line: int
    values: dict


class ProblemList(list):
    """Problems found so far; stops growing (but keeps counting) past a sane number."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def add(self, reason: str, *, line: int | None = None, column: str | None = None) -> None:
        self.total += 1
        if len(self) < MAX_REPORTED_PROBLEMS:
            self.append(Problem(reason, line=line, column=column))


def no_progress(iterable, **_kwargs):
    return iterable


class CsvImport:
    """Base class of a CSV import. Subclasses set ``columns``, ``model``, ``key`` (the column
    and model field the upsert matches on) and implement ``clean_rows``."""

    label: str = "rows"
    columns: list[Column] = []
    model = None
    key: str = ""

    def __init__(self, *, actor=None, progress=no_progress):
        self.actor = actor
        self.progress = progress

    # Reading and per-cell checks -----------------------------------------------------------

    def parse(self, data: bytes) -> tuple[list[ParsedRow], ProblemList]:
        problems = ProblemList()
        text_data = decode_csv_bytes(data)
        reader = csv.reader(io.StringIO(text_data, newline=""), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValidationFailed("The file is empty.", details=[Problem("no header row", line=1)]) from None
        except csv.Error as error:
            raise ValidationFailed("The header cannot be read.", details=[Problem(str(error), line=1)]) from None
        header = [name.strip().lower() for name in header]
        known = {column.name: column for column in self.columns}
        for index, name in enumerate(header):
            if name not in known:
                problems.add(f"unknown column {name!r}", line=1, column=name or f"#{index + 1}")
            elif header.index(name) != index:
                problems.add("column appears twice", line=1, column=name)
        for column in self.columns:
            if column.name not in header and not column.optional_column:
                problems.add("missing column", line=1, column=column.name)
        if problems:
            raise ValidationFailed(f"The header of the {self.label} file is not valid.", details=problems)

        rows: list[ParsedRow] = []
        line = 1
        try:
            for cells in self.progress(reader, desc="validating", unit="row"):
                start_line = line + 1
                line = reader.line_num
                if not cells or all(cell.strip() == "" for cell in cells):
                    continue  # blank line
                if len(cells) != len(header):
                    problems.add(f"has {len(cells)} cells, the header has {len(header)}", line=start_line)
                    continue
                values = {}
                for name, raw in zip(header, cells, strict=True):
                    column = known[name]
                    raw = raw.strip()
                    if raw == "":
                        if column.required:
                            problems.add("is empty", line=start_line, column=name)
                        values[name] = None
                        continue
                    try:
                        values[name] = column.parse(raw)
                    except CellError as error:
                        problems.add(str(error), line=start_line, column=name)
                        values[name] = None
                for column in self.columns:
                    values.setdefault(column.name, None)
                rows.append(ParsedRow(start_line, values))
        except csv.Error as error:
            problems.add(f"unreadable CSV: {error}", line=reader.line_num)
        if not rows and not problems:
            raise ValidationFailed("The file has a header but no rows.", details=[Problem("no data rows", line=2)])
        return rows, problems

    def check_duplicate_keys(self, rows: list[ParsedRow], problems: ProblemList) -> None:
        seen: dict = {}
        for row in rows:
            value = row.values.get(self.key)
            if value is None:
                continue
            if value in seen:
                problems.add(f"duplicate of line {seen[value]}", line=row.line, column=self.key)
            else:
                seen[value] = row.line

    # Cross-row and database checks, then the write -----------------------------------------

    def clean_rows(self, rows: list[ParsedRow], problems: ProblemList) -> list[tuple[int, dict]]:
        """Return ``(line, model field values)`` for each row; add problems for the rest."""
        raise NotImplementedError

    def run(self, data: bytes, *, file_name: str = "") -> ImportSummary:
        rows, problems = self.parse(data)
        self.check_duplicate_keys(rows, problems)
        cleaned = self.clean_rows(rows, problems)
        if problems:
            message = f"{problems.total} problem(s) in the {self.label} file; nothing was imported."
            raise ValidationFailed(message, details=list(problems))
        with transaction.atomic():
            summary = self.write(cleaned)
            self.after_write(summary, cleaned)
            record_import(kind=self.label, actor=self.actor, data=data, file_name=file_name, summary=summary)
        return summary

    def write(self, cleaned: list[tuple[int, dict]]) -> ImportSummary:
        """Upsert by ``key``: create the new, update what changed, leave the rest untouched."""
        summary = ImportSummary()
        keys = [values[self.key] for _line, values in cleaned]
        existing = {}
        for chunk_start in range(0, len(keys), 5000):
            chunk = keys[chunk_start : chunk_start + 5000]
            existing.update(
                {getattr(obj, self.key): obj for obj in self.model.objects.filter(**{f"{self.key}__in": chunk})}
            )
        to_create, to_update, changed_fields = [], [], set()
        for _line, values in self.progress(cleaned, desc="writing", unit="row"):
            obj = existing.get(values[self.key])
            if obj is None:
                to_create.append(self.model(**values))
                continue
            differing = [name for name, value in values.items() if getattr(obj, name) != value]
            if differing:
                for name in differing:
                    setattr(obj, name, values[name])
                changed_fields.update(differing)
                to_update.append(obj)
            else:
                summary.unchanged += 1
        self.model.objects.bulk_create(to_create, batch_size=1000)
        if to_update:
            # bulk_update skips auto_now, so stamp it here for rows that really changed.
            stamped = [f.name for f in self.model._meta.concrete_fields if getattr(f, "auto_now", False)]
            now = timezone.now()
            for obj in to_update:
                for name in stamped:
                    setattr(obj, name, now)
            changed_fields.update(stamped)
            self.model.objects.bulk_update(to_update, sorted(changed_fields), batch_size=1000)
        summary.created = len(to_create)
        summary.updated = len(to_update)
        return summary

    def after_write(self, summary: ImportSummary, cleaned: list[tuple[int, dict]]) -> None:
        """Hook inside the import's transaction, after the rows are written."""


def record_import(*, kind: str, actor, data: bytes, file_name: str, summary: ImportSummary):
    """Every import that wrote is recorded with the file's SHA-256 and its counts, and lands in
    the audit trail."""
    import hashlib

    from core.audit import audit_record
    from core.models import ImportRun

    run = ImportRun.objects.create(
        kind=kind,
        file_name=file_name[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        rows=summary.total,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        summary=str(summary),
    )
    audit_record(actor=actor or "cli", obj=run, action=f"import.{kind}", reason=str(summary))
    return run
