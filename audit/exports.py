"""CSV exports of the audit lists: streamed (memory does not grow with the rows), UTF-8 with a
BOM by default so that Excel shows Chinese text, cells that start with = + - @ tab or CR
neutralised against formula injection, money as plain decimals, times in Asia/Shanghai.

On PostgreSQL the rows leave the database through ``COPY (SELECT …) TO STDOUT`` with the same
formatting done in SQL (the export benchmark holds it to half the speed of a bare COPY); on
SQLite through the ORM and Python's csv writer. Both paths format alike (tests compare them).

Every export is recorded with its SHA-256 in a hash chain (``record_export``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from audit.lists import BOOLEAN, DATE, DATETIME, INTEGER, MONEY, NUMBER, AuditList
from audit.models import ExportChainHead, ExportRecord

BOM = "\ufeff".encode()
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GENESIS = "0" * 64
CHUNK_BYTES = 256 * 1024
CENT = Decimal("0.01")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # in Asia/Shanghai, without an offset Excel would not read


def neutralise(text: str) -> str:
    """A cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def format_cell(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == DATETIME:
        return timezone.localtime(value).strftime(TIME_FORMAT)
    if kind == DATE:
        return value.isoformat()
    if kind == MONEY:  # yuan with two places, whatever an aggregate returned
        return format(Decimal(str(value)).quantize(CENT), "f")
    if kind == NUMBER:
        return format(value, "f") if isinstance(value, Decimal) else repr(float(value))
    if kind == INTEGER:
        return str(int(value))
    if kind == BOOLEAN:
        return "true" if value else "false"
    return neutralise(str(value))


def header_row(audit_list: AuditList) -> list[str]:
    labels = []
    for column in audit_list.columns:
        label = str(column.label)
        labels.append(f"{label} (Asia/Shanghai)" if column.kind == DATETIME else label)
    return labels


def _write_row(writer, buffer: io.StringIO, cells: list[str]) -> None:
    """One CSV row ending in \\n, as PostgreSQL's COPY writes it. The writer's terminator is
    \\r\\n so that it quotes cells holding a carriage return (Python 3.11 quotes only the
    terminator's characters); the row's own \\r\\n is then turned into \\n."""
    writer.writerow(cells)
    buffer.seek(buffer.tell() - 2)
    buffer.truncate()
    buffer.write("\n")


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    _write_row(csv.writer(buffer, lineterminator="\r\n"), buffer, cells)
    return buffer.getvalue()


# --- the two paths ---------------------------------------------------------------------------


def _python_rows(audit_list: AuditList, queryset, counter: list[int]) -> Iterator[bytes]:
    kinds = [column.kind for column in audit_list.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in queryset.values_list(*audit_list.keys).iterator(chunk_size=5000):
        _write_row(writer, buffer, [format_cell(value, kind) for value, kind in zip(row, kinds, strict=True)])
        counter[0] += 1
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


FORMULA_CODES = ", ".join(str(ord(char)) for char in FORMULA_STARTS)  # for ascii(), cheaper than left()


def _sql_cell(column_sql: str, kind: str, *, iso_datestyle: bool = True) -> str:
    """The same formatting as ``format_cell``, in PostgreSQL, in the cheapest form that gives
    the same text (the export benchmark holds it to half the speed of a bare COPY)."""
    if kind == DATETIME:
        local = f"({column_sql} AT TIME ZONE 'Asia/Shanghai')"
        if iso_datestyle:  # the ISO DateStyle prints 'YYYY-MM-DD HH:MM:SS' itself
            return f"date_trunc('second', {local})::text"
        return f"to_char({local}, 'YYYY-MM-DD HH24:MI:SS')"
    if kind == DATE:
        return f"({column_sql})::text" if iso_datestyle else f"to_char({column_sql}, 'YYYY-MM-DD')"
    if kind in (MONEY, NUMBER, INTEGER):
        # COPY writes numbers as their plain text already; money columns and the money sums of
        # the lists keep two places in PostgreSQL (numeric(…, 2), a 0.00 default).
        return column_sql
    if kind == BOOLEAN:
        return f"CASE WHEN {column_sql} THEN 'true' WHEN NOT {column_sql} THEN 'false' END"
    text = f"({column_sql})::text"
    return f"CASE WHEN ascii({text}) IN ({FORMULA_CODES}) THEN '''' || {text} ELSE {text} END"


def copy_sql(audit_list: AuditList, queryset) -> str:
    """``COPY (SELECT formatted columns FROM (the list's query)) TO STDOUT`` with the query's
    parameters bound on the client."""
    sql, params = queryset.values_list(*audit_list.keys).query.sql_with_params()
    inner = connection.ops.compose_sql(sql, params)
    names = [f"c{i}" for i in range(len(audit_list.columns))]
    with connection.cursor() as cursor:
        cursor.execute("SHOW DateStyle")
        iso = cursor.fetchone()[0].upper().startswith("ISO")
    select = ", ".join(
        _sql_cell(f"t.{name}", column.kind, iso_datestyle=iso)
        for name, column in zip(names, audit_list.columns, strict=True)
    )
    # The inner query is the ORM's, its parameters bound by psycopg; the rest is our own text.
    return f"COPY (SELECT {select} FROM ({inner}) AS t({', '.join(names)})) TO STDOUT WITH (FORMAT csv)"  # noqa: S608


def _copy_rows(audit_list: AuditList, queryset, counter: list[int]) -> Iterator[bytes]:
    statement = copy_sql(audit_list, queryset)
    with connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            pending, size = [], 0
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= CHUNK_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
            if pending:
                yield b"".join(pending)
        counter[0] = cursor.rowcount


# --- streaming with the record -------------------------------------------------------------


def export_stream(*, audit_list: AuditList, queryset, actor, filters: dict, bom: bool = True) -> Iterator[bytes]:
    """The CSV, chunk by chunk. When the last chunk has gone out (or the download is cut off) the
    export is recorded with the file's SHA-256 and row count."""
    digest = hashlib.sha256()
    rows = [0]
    complete = False
    try:
        head = (BOM if bom else b"") + _csv_line(header_row(audit_list)).encode()
        digest.update(head)
        yield head
        path = _copy_rows if connection.vendor == "postgresql" else _python_rows
        for chunk in path(audit_list, queryset, rows):
            digest.update(chunk)
            yield chunk
        complete = True
    finally:
        record_export(
            kind=audit_list.kind,
            actor=actor,
            filters=filters,
            rows=rows[0],
            sha256=digest.hexdigest(),
            complete=complete,
        )


def record_hash_of(record: ExportRecord) -> str:
    """The hash of an export record's content and of its predecessor's hash: what the chain
    stores when the record is appended and what ``verify_chain`` recomputes."""
    canonical = json.dumps(
        {
            "previous": record.previous_hash,
            "kind": record.kind,
            "by": record.actor_label,
            "at": record.at.isoformat(),
            "filters": record.filters,
            "rows": record.rows,
            "sha256": record.sha256,
            "complete": record.complete,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _actor(actor) -> tuple[object, str]:
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None):
        return actor, actor.get_username()
    return None, str(actor or "cli")


@transaction.atomic
def record_export(*, kind: str, actor, filters: dict, rows: int, sha256: str, complete: bool = True) -> ExportRecord:
    """Append a record to the chain. The chain head is locked, so records are appended one at a
    time and each points at the one before."""
    head, _created = ExportChainHead.objects.select_for_update().get_or_create(pk=1, defaults={"last_hash": GENESIS})
    user, label = _actor(actor)
    at = timezone.now().replace(microsecond=0)
    clean_filters = {key: value for key, value in sorted(filters.items()) if value not in ("", None, [])}
    record = ExportRecord(
        kind=kind,
        user=user,
        actor_label=label,
        at=at,
        filters=clean_filters,
        rows=rows,
        sha256=sha256,
        complete=complete,
        previous_hash=head.last_hash,
    )
    record.record_hash = record_hash_of(record)
    record.save()
    head.last_hash = record.record_hash
    head.save(update_fields=["last_hash"])
    return record


def verify_chain() -> list[str]:
    """Every break of the export chain: a record altered (its hash no longer matches), removed
    or inserted (its predecessor is not the record before it), or a head that does not point at
    the last record."""
    problems = []
    previous = GENESIS
    last = None
    for record in ExportRecord.objects.order_by("id").iterator():
        expected = record_hash_of(record)
        if record.previous_hash != previous:
            problems.append(
                f"record {record.pk}: its predecessor's hash does not match the record before it (one is missing or was altered)"
            )
        if expected != record.record_hash:
            problems.append(f"record {record.pk}: its content does not match its hash (altered)")
        previous = record.record_hash
        last = record
    head = ExportChainHead.objects.filter(pk=1).first()
    if head is not None and head.last_hash != (last.record_hash if last else GENESIS):
        problems.append("the chain head does not point at the last record (the last records were removed)")
    if head is None and last is not None:
        problems.append("the chain head is missing")
    return problems
