"""Hostile import files: malformed, truncated, wrongly encoded and enormous CSVs, and wrong file
types, fed to every import path — the import services (``core.csvimport`` through the registry,
provider, programme and application imports), their commands, the admin upload, and the usage
path (``parse_csv_records``/``usage_ingest``, ``POST /api/v1/usage/`` as ``text/csv`` and as an
upload, ``import_usage``). Each is refused with a clear error (a message and, where there is
one, the line and column) and writes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from core.admin import MAX_UPLOAD_BYTES
from core.csvimport import decode_csv_bytes
from core.errors import ValidationFailed
from coupons.imports import ApplicationImport, ProgramImport
from coupons.services.usage import USAGE_FIELDS, parse_csv_records, usage_ingest
from coupons.usage_api import MAX_BODY_BYTES
from enterprises.imports import ProviderImport, RegistryImport
from enterprises.models import Organisation
from enterprises.services import provider_key_create
from tests.coupons.conftest import make_program
from tests.enterprises.csvdata import REGISTRY_HEADER, provider_row, registry_row, to_csv
from tests.factories import make_organisation, make_provider, make_uscc
from tests.hostile.conftest import assert_error_shape, row_counts
from tests.usage.conftest import record

pytestmark = pytest.mark.django_db

REGISTRY_UPLOAD = "/admin/enterprises/organisation/import/"
USAGE = "/api/v1/usage/"

PROGRAM_HEADER = [
    "code",
    "name",
    "budget",
    "rate",
    "domestic_rate",
    "per_enterprise_cap",
    "opens",
    "closes",
    "validity_days",
]
APPLICATION_HEADER = [
    "reference",
    "uscc",
    "program_code",
    "submitted_at",
    "provider_uscc",
    "gpu_model",
    "claimed_card_hours",
    "claimed_amount",
    "scenario",
    "project_summary",
    "status",
    "granted_amount",
    "audit_outcome",
]


def dict_csv(header: list[str], rows: list[dict], *, encoding: str = "utf-8") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def program_row(code: str, **overrides) -> dict:
    return {
        "code": code,
        "name": "安徽省算力券 2026",
        "budget": "5000000.00",
        "rate": "0.20",
        "domestic_rate": "0.30",
        "per_enterprise_cap": "500000.00",
        "opens": "2026-01-01",
        "closes": "2026-12-31",
        "validity_days": "365",
        **overrides,
    }


# --- a good file for each import, to be broken by the tests ---------------------------------------


@pytest.fixture
def good_files(db):
    """A valid two-row file for each import (and what it needs in the database), by label."""
    registered, second = make_organisation(), make_organisation()
    provider = make_provider()
    program = make_program(code="HOSTILE-26")
    application = {
        "uscc": registered.uscc,
        "program_code": program.code,
        "submitted_at": "2025-06-01T10:00:00",
        "provider_uscc": provider.organisation.uscc,
        "gpu_model": "NVIDIA A100 80GB",
        "claimed_card_hours": "1000.0000",
        "claimed_amount": "100000.00",
        "scenario": "training",
        "project_summary": "训练工业质检视觉模型",
        "status": "submitted",
        "granted_amount": "",
        "audit_outcome": "",
    }
    return {
        "registry": (RegistryImport, to_csv([registry_row(70001), registry_row(70002)])),
        "providers": (ProviderImport, to_csv([provider_row(registered), provider_row(second)])),
        "programs": (ProgramImport, dict_csv(PROGRAM_HEADER, [program_row("H-1"), program_row("H-2")])),
        "applications": (
            ApplicationImport,
            dict_csv(APPLICATION_HEADER, [{**application, "reference": "HX-1"}, {**application, "reference": "HX-2"}]),
        ),
    }


IMPORTS = ["registry", "providers", "programs", "applications"]


def refused(importer_class, data: bytes) -> ValidationFailed:
    """Run the import; it must refuse with a message and write nothing."""
    before = row_counts()
    with pytest.raises(ValidationFailed) as caught:
        importer_class(actor="cli").run(data, file_name="hostile.csv")
    assert row_counts() == before
    assert caught.value.message
    return caught.value


def lines_of(error: ValidationFailed) -> set:
    return {problem.line for problem in error.details}


def test_the_good_files_are_imported(good_files):
    """The files the other tests break are good to begin with."""
    for label, (importer_class, data) in good_files.items():
        assert importer_class(actor="cli").run(data).total == 2, label


# --- malformed ------------------------------------------------------------------------------------


def second_data_row_start(data: bytes) -> int:
    return data.index(b"\n", data.index(b"\n") + 1) + 1


@pytest.mark.parametrize("label", IMPORTS)
def test_an_unbalanced_quote_is_an_unreadable_csv_with_its_line(good_files, label):
    importer_class, data = good_files[label]
    at = second_data_row_start(data)
    broken = data[:at] + b'"' + data[at:]  # a quote opened at line 3 and never closed

    error = refused(importer_class, broken)

    assert any("unreadable CSV" in problem.reason for problem in error.details), error.details
    assert lines_of(error) == {3}


@pytest.mark.parametrize("label", IMPORTS)
def test_a_stray_character_after_a_closing_quote_is_an_unreadable_csv(good_files, label):
    importer_class, data = good_files[label]
    at = second_data_row_start(data)
    first_cell_end = data.index(b",", at)
    broken = data[:at] + b'"' + data[at:first_cell_end] + b'"x' + data[first_cell_end:]

    error = refused(importer_class, broken)

    assert [(p.line, "unreadable CSV" in p.reason) for p in error.details] == [(3, True)]


@pytest.mark.parametrize("label", IMPORTS)
def test_a_nul_byte_is_refused(good_files, label):
    importer_class, data = good_files[label]
    at = second_data_row_start(data) + 3

    error = refused(importer_class, data[:at] + b"\x00" + data[at:])

    assert error.message == "The file is not a CSV text file."
    assert [p.reason for p in error.details] == ["contains NUL bytes"]


def test_a_nul_byte_is_reported_at_its_line(good_files):
    importer_class, data = good_files["registry"]
    at = second_data_row_start(data) + 3

    error = refused(importer_class, data[:at] + b"\x00" + data[at:])

    assert lines_of(error) == {3}


def test_a_nul_byte_after_the_first_64_kb_is_refused(db):
    rows = [registry_row(n) for n in range(1, 400)]  # about 110 KB
    rows[-1]["name"] = "合肥\x00算力"
    data = to_csv(rows)
    assert data.index(b"\x00") > 65536

    error = refused(RegistryImport, data)

    assert lines_of(error) == {len(rows) + 1}


@pytest.mark.parametrize("label", IMPORTS)
def test_binary_garbage_is_refused(good_files, label):
    importer_class, _data = good_files[label]
    garbage = random.Random(4754).randbytes(8192)

    error = refused(importer_class, garbage)

    assert error.details and all(p.line is not None for p in error.details)


@pytest.mark.parametrize("label", IMPORTS)
def test_binary_garbage_without_nul_bytes_is_refused(good_files, label):
    importer_class, _data = good_files[label]
    garbage = bytes(b for b in random.Random(6513).randbytes(8192) if b)

    error = refused(importer_class, garbage)

    assert error.details


@pytest.mark.parametrize("label", IMPORTS)
def test_a_header_only_file_has_no_rows(good_files, label):
    importer_class, data = good_files[label]

    error = refused(importer_class, data[: data.index(b"\n") + 1])

    assert error.message == "The file has a header but no rows."
    assert lines_of(error) == {2}


@pytest.mark.parametrize("label", IMPORTS)
@pytest.mark.parametrize("empty", [b"", b"\xef\xbb\xbf", b"\n\n"])
def test_an_empty_file_is_refused(good_files, label, empty):
    importer_class, _data = good_files[label]

    error = refused(importer_class, empty)

    assert error.message in ("The file is empty.", f"The header of the {importer_class.label} file is not valid.")
    assert lines_of(error) == {1}


@pytest.mark.parametrize("label", IMPORTS)
@pytest.mark.parametrize("delimiter", [b";", b"\t", b"|"])
def test_a_wrong_delimiter_is_a_header_problem(good_files, label, delimiter):
    importer_class, data = good_files[label]

    error = refused(importer_class, data.replace(b",", delimiter))

    assert error.message == f"The header of the {importer_class.label} file is not valid."
    assert lines_of(error) == {1}
    assert any(p.reason == "missing column" for p in error.details)


# --- truncated ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", IMPORTS)
def test_a_file_cut_in_the_middle_of_a_row_reports_the_short_row(good_files, label):
    importer_class, data = good_files[label]
    last_row = data.rindex(b"\n", 0, len(data) - 1) + 1
    cut = data.index(b",", data.index(b",", last_row) + 1)  # two cells into the last row

    error = refused(importer_class, data[:cut])

    assert [(p.line, p.reason.startswith("has 2 cells, the header has")) for p in error.details] == [(3, True)]


@pytest.mark.parametrize("label", ["registry", "programs", "applications"])
def test_a_file_cut_in_the_middle_of_a_character_and_a_row_is_refused(good_files, label):
    importer_class, data = good_files[label]
    last_row = data.rindex(b"\n", 0, len(data) - 1) + 1
    first_multibyte = next(i for i in range(last_row, len(data)) if data[i] >= 0x80)
    cut = data[: first_multibyte + 1]
    with pytest.raises(UnicodeDecodeError):
        cut.decode("utf-8")

    error = refused(importer_class, cut)

    assert 3 in lines_of(error)


PROGRAMMES_NAME_LAST = [name for name in PROGRAM_HEADER if name != "name"] + ["name"]


def programmes_cut_in_their_last_character(cut_bytes: int) -> bytes:
    """A good programme file whose last column is ``name``, less the last ``cut_bytes`` bytes of
    its last character (券 is E5 88 B8)."""
    rows = [program_row("P-1", name="安徽省算力券"), program_row("P-2", name="合肥市算力券")]
    data = dict_csv(PROGRAMMES_NAME_LAST, rows).rstrip(b"\n")
    assert data.endswith("券".encode())
    cut = data[:-cut_bytes]
    with pytest.raises(UnicodeDecodeError):
        cut.decode("utf-8")
    return cut


def test_a_file_cut_in_the_middle_of_its_last_character_is_refused_when_no_encoding_reads_it(db):
    error = refused(ProgramImport, programmes_cut_in_their_last_character(1))  # E5 88 is left

    assert error.message == "The file is neither UTF-8 nor GB18030 text."
    assert lines_of(error) == {3}


def test_a_file_cut_in_the_middle_of_its_last_character_is_never_read_as_another_encoding(db):
    data = programmes_cut_in_their_last_character(2)  # E5 is left, and the whole file reads as GB18030
    assert data.decode("gb18030").endswith("鍚堣偉甯傜畻鍔涘")  # what a GB18030 fallback would import

    error = refused(ProgramImport, data)

    assert lines_of(error) == {3}


# --- wrongly encoded ------------------------------------------------------------------------------


@pytest.mark.parametrize("label", IMPORTS)
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_refused_with_advice(good_files, label, encoding):
    importer_class, data = good_files[label]
    utf16 = data.decode("utf-8").encode(encoding)
    if encoding != "utf-16":
        utf16 = (b"\xff\xfe" if encoding.endswith("le") else b"\xfe\xff") + utf16  # with its BOM

    error = refused(importer_class, utf16)

    assert error.message == "The file is UTF-16; save it as UTF-8 or GB18030 CSV."
    assert lines_of(error) == {1}


def test_utf16_without_a_bom_is_refused(good_files):
    importer_class, data = good_files["registry"]

    error = refused(importer_class, data.decode("utf-8").encode("utf-16-le"))

    assert error.message == "The file is not a CSV text file."


def test_gb18030_is_read(db):
    """The encoding Excel on Chinese Windows writes is one of the two the imports read."""
    data = to_csv([registry_row(1)], encoding="gb18030")

    RegistryImport(actor="cli").run(data)

    assert Organisation.objects.get().name == registry_row(1)["name"]


def latin1_registry(name: str) -> bytes:
    rows = [registry_row(1, name=name, legal_representative="Jose", registered_address="1 Rue de Lyon")]
    rows[0]["main_business"] = rows[0]["core_team_city"] = ""
    return to_csv(rows, encoding="latin-1")


def test_latin1_that_is_not_gb18030_is_refused_at_its_line(db):
    error = refused(RegistryImport, latin1_registry("Société Générale"))

    assert error.message == "The file is neither UTF-8 nor GB18030 text."
    assert lines_of(error) == {2}


def test_latin1_with_accented_letters_is_never_imported_as_chinese(db):
    data = latin1_registry("Müller Électronique GmbH")
    assert "黮" in data.decode("gb18030")  # what a GB18030 fallback would store

    error = refused(RegistryImport, data)

    assert lines_of(error) == {2}


def mixed_programmes() -> bytes:
    """Rows 2-3 in UTF-8, row 4 appended in GB18030 (a file put together from two sources)."""
    utf8 = dict_csv(PROGRAM_HEADER, [program_row("P-1", name="安徽省算力券"), program_row("P-2", name="合肥市算力券")])
    gb18030 = dict_csv(PROGRAM_HEADER, [program_row("P-3", name="芜湖市算力券")], encoding="gb18030")
    return utf8 + gb18030.split(b"\n", 1)[1]


def test_a_file_of_mixed_encodings_is_refused_when_no_encoding_reads_it(db):
    data = to_csv([registry_row(1), registry_row(2)]) + to_csv([registry_row(3)], encoding="gb18030").split(b"\n", 1)[1]

    error = refused(RegistryImport, data)

    assert error.message == "The file is neither UTF-8 nor GB18030 text."
    assert lines_of(error) == {4}


def test_a_file_of_mixed_encodings_is_never_read_as_one_of_them(db):
    data = mixed_programmes()
    assert "鍚堣偉甯傜畻鍔涘埜" in data.decode("gb18030")  # 合肥市算力券, as a GB18030 fallback would import it

    error = refused(ProgramImport, data)

    assert lines_of(error) == {4}


def test_gb18030_with_characters_outside_gb2312_and_latin_letters_is_still_read():
    """The checks that refuse mojibake leave genuine GB18030 alone: rare name characters (珺 is
    AC 42, its second byte an ASCII 'B'), card models in Latin letters beside Chinese."""
    text = "name,legal_representative,gpu_model\n昇腾算力（合肥）有限公司,张珺,昇腾910B\nAI算力中心,李玥,Ascend 910B\n"

    assert decode_csv_bytes(text.encode("gb18030")) == text


@pytest.mark.parametrize(
    ("data", "line", "offset", "why"),
    [
        ("a,b\n合肥,1\n".encode() + "芜湖,2\n".encode("gb18030"), 3, 13, "the Chinese text before it is UTF-8"),
        (b"\xef\xbb\xbfa,b\n" + "芜湖,2\n".encode("gb18030"), 2, 7, "byte-order mark"),
        ("a,b\n合肥,1\n".encode()[:-4], 2, 7, "ends in the middle of a UTF-8 character"),
        ("a,b\nMüller,1\n".encode("latin-1"), 2, 5, "'M黮l'"),
    ],
    ids=["mixed", "bom-then-gb18030", "cut", "latin-1"],
)
def test_a_refused_encoding_names_the_line_the_byte_and_why(data, line, offset, why):
    with pytest.raises(ValidationFailed) as refusal:
        decode_csv_bytes(data)

    assert refusal.value.message == "The file is neither UTF-8 nor GB18030 text."
    [problem] = refusal.value.details
    assert problem.line == line
    assert problem.reason.startswith(f"undecodable byte at offset {offset}: ")
    assert why in problem.reason


# --- values the database cannot take --------------------------------------------------------------


@pytest.mark.parametrize(
    "submitted_at",
    ["2025-06-01T10:00:00+16:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-01:00"],
    ids=["offset+16h", "year-1", "year-9999"],
)
def test_a_date_time_the_database_cannot_take_is_refused_at_its_line_and_column(good_files, submitted_at):
    importer_class, data = good_files["applications"]
    at = second_data_row_start(data)
    broken = data[:at] + data[at:].replace(b"2025-06-01T10:00:00", submitted_at.encode(), 1)

    error = refused(importer_class, broken)

    assert {(p.line, p.column) for p in error.details} == {(3, "submitted_at")}
    assert any(p.reason.startswith(repr(submitted_at)) for p in error.details), error.details


# --- enormous -------------------------------------------------------------------------------------


def test_200000_registry_rows_through_the_command_report_every_error_and_write_nothing(db, tmp_path):
    """200,000 rows, one in a thousand with a bad date: the command lists each with its line and
    column and writes nothing."""
    base = registry_row(1)
    for optional in ("main_business", "core_team_city", "contact_phone", "contact_email", "bank_account"):
        base[optional] = ""
    tail = ",".join(base[name] for name in REGISTRY_HEADER[1:])
    bad_tail = tail.replace(base["registration_date"], "2019-02-30")
    lines = [",".join(REGISTRY_HEADER)]
    lines += [f"{make_uscc(n)},{bad_tail if n % 1000 == 0 else tail}" for n in range(1, 200_001)]
    path = tmp_path / "registry.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = row_counts()
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"^200 problem\(s\) in the registry file; nothing was imported\.$"):
        call_command("import_registry", str(path), stdout=io.StringIO(), stderr=err)

    reported = err.getvalue().splitlines()
    assert len(reported) == 200
    assert reported[0] == "  line 1001, column registration_date: '2019-02-30' is not an ISO 8601 date (YYYY-MM-DD)"
    assert reported[-1].startswith("  line 200001, column registration_date:")
    assert row_counts() == before


@pytest.fixture
def officer_client(client, officer):
    client.force_login(officer)
    return client


def admin_upload(client, name: str, data: bytes):
    before = row_counts()
    response = client.post(REGISTRY_UPLOAD, {"file": SimpleUploadedFile(name, data, content_type="text/csv")})
    assert row_counts() == before
    assert response.status_code == 200  # the form again, with the error; no redirect to the list
    return response.content.decode()


def test_a_60_mb_admin_upload_is_refused_for_its_size(officer_client):
    data = to_csv([registry_row(1)])
    data += b"#" * (60 * 1024 * 1024 - len(data))
    assert len(data) > MAX_UPLOAD_BYTES

    html = admin_upload(officer_client, "registry.csv", data)

    assert "The file is larger than 50 MB." in html


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("registry.xlsx", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200)),
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200)),
        ("registry.csv.exe", b"uscc,name\n"),
        ("registry", b"uscc,name\n"),
    ],
)
def test_an_admin_upload_of_the_wrong_type_is_refused(officer_client, name, data):
    html = admin_upload(officer_client, name, data)

    assert "Upload a .csv file." in html


def test_a_spreadsheet_renamed_to_csv_is_refused_as_not_text(officer_client):
    html = admin_upload(officer_client, "registry.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200))

    assert "The file is not a CSV text file." in html
    assert "contains NUL bytes" in html


def unbalanced_registry() -> bytes:
    data = to_csv([registry_row(1)])
    at = data.index(b"\n") + 1
    return data[:at] + b'"' + data[at:]


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b"", "The submitted file is empty.", None),
        (unbalanced_registry(), "1 problem(s) in the registry file; nothing was imported.", "2"),
        ("uscc,name\n9134,Société Générale\n".encode("latin-1"), "The file is neither UTF-8 nor GB18030 text.", "2"),
        ("uscc,name\n".encode("utf-16"), "The file is UTF-16; save it as UTF-8 or GB18030 CSV.", "1"),
    ],
    ids=["empty", "unbalanced-quote", "latin-1", "utf-16"],
)
def test_a_bad_admin_upload_shows_the_error_with_its_line(officer_client, data, message, line):
    html = admin_upload(officer_client, "registry.csv", data)

    assert message in html
    if line is not None:
        assert f"<tr><td>{line}</td>" in html


@pytest.mark.parametrize("command", ["import_registry", "import_providers", "import_programs", "import_applications"])
@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01\x02garbage", "uscc\n".encode("utf-16"), b'a,b\n"c,d\n'],
    ids=["empty", "binary", "utf-16", "unbalanced-quote"],
)
def test_every_import_command_refuses_a_hostile_file_with_a_message(db, tmp_path, command, data):
    path = tmp_path / "hostile.csv"
    path.write_bytes(data)
    before = row_counts()
    err = io.StringIO()

    with pytest.raises(CommandError) as refusal:
        call_command(command, str(path), stdout=io.StringIO(), stderr=err)

    assert str(refusal.value)
    assert "line 1" in err.getvalue() or "line 2" in err.getvalue()
    assert row_counts() == before


# --- the usage path -------------------------------------------------------------------------------


@pytest.fixture
def provider_api(provider):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=provider).raw_key}")
    return client


@pytest.fixture
def usage_csv(organisation):
    start = timezone.now() - dt.timedelta(days=2)
    rows = [record(f"job-{n}", enterprise=organisation, start=start + dt.timedelta(hours=n)) for n in range(3)]
    return dict_csv(USAGE_FIELDS, rows)


def usage_refused(client, data: bytes, *, content_type: str = "text/csv") -> dict:
    before = row_counts()
    response = client.post(USAGE, data, content_type=content_type)
    assert row_counts() == before
    return assert_error_shape(response, 400)


def test_the_usage_csv_the_tests_break_is_good(provider_api, usage_csv):
    response = provider_api.post(USAGE, usage_csv, content_type="text/csv")

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 3


HOSTILE_USAGE = {
    "empty": (b"", "The file is empty."),
    "utf-16": ("record_id\n".encode("utf-16"), "The file is UTF-16; save it as UTF-8 or GB18030 CSV."),
    "binary": (random.Random(4754).randbytes(4096), None),
    "latin-1": ("record_id,name\nSociété Générale,x\n".encode("latin-1"), None),
}


@pytest.mark.parametrize("name", list(HOSTILE_USAGE))
def test_a_hostile_usage_csv_is_refused_in_the_error_shape(provider_api, name):
    data, message = HOSTILE_USAGE[name]

    error = usage_refused(provider_api, data)

    if message:
        assert error["message"] == message


def test_a_usage_csv_with_a_wrong_delimiter_names_the_missing_columns(provider_api, usage_csv):
    error = usage_refused(provider_api, usage_csv.replace(b",", b";"))

    assert error["message"] == "The header of the usage file is not valid."
    assert {d["field"] for d in error["details"] if d["reason"] == "missing column"} == set(USAGE_FIELDS)


def test_a_usage_csv_cut_in_the_middle_of_a_row_names_the_line(provider_api, usage_csv):
    cut = usage_csv[: usage_csv.rindex(b",", 0, len(usage_csv) - 30)]

    error = usage_refused(provider_api, cut)

    assert error["message"] == "A row of the usage file has the wrong number of cells."
    assert [d["index"] for d in error["details"]] == [4]  # the CSV line, here under the API's name


def test_a_usage_csv_with_a_nul_byte_is_refused(provider_api, usage_csv):
    error = usage_refused(provider_api, usage_csv[:100] + b"\x00" + usage_csv[100:])

    assert error["message"] == "The file is not a CSV text file."


def test_a_usage_csv_cut_in_the_middle_of_a_character_is_refused(provider_api, usage_csv):
    data = usage_csv.rstrip(b"\n") + b"," + "合肥".encode()[:-1]

    usage_refused(provider_api, data)


def test_a_usage_body_over_20_mb_is_refused_before_it_is_read(provider_api):
    data = b"#" * (MAX_BODY_BYTES + 1)

    error = usage_refused(provider_api, data)

    assert error["code"] == "too_large"


def test_a_usage_upload_over_20_mb_is_refused(provider_api):
    before = row_counts()
    upload = SimpleUploadedFile("usage.csv", b"#" * (MAX_BODY_BYTES + 1), content_type="text/csv")

    response = provider_api.post(USAGE, {"file": upload}, format="multipart")

    assert_error_shape(response, 400, "too_large")
    assert row_counts() == before


def test_a_usage_csv_with_an_enormous_cell_is_a_400_naming_the_line(provider_api, usage_csv):
    data = usage_csv + b'"' + b"x" * 200_000 + b'",a,b,1,c,d,1,1\n'

    error = usage_refused(provider_api, data)

    assert [d.get("index") for d in error["details"]] == [5]


def test_a_large_usage_csv_with_an_unbalanced_quote_is_a_400(provider_api, usage_csv):
    header, rest = usage_csv.split(b"\n", 1)
    data = header + b'\n"' + rest * 3000

    error = usage_refused(provider_api, data)

    assert error["details"]


def test_import_usage_refuses_an_enormous_cell_with_a_message(provider, usage_csv, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_bytes(usage_csv + b'"' + b"x" * 200_000 + b'",a,b,1,c,d,1,1\n')
    before = row_counts()

    with pytest.raises(CommandError):
        call_command(
            "import_usage",
            "--provider",
            provider.organisation.uscc,
            str(path),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )

    assert row_counts() == before


def test_a_header_only_usage_csv_is_refused_and_stores_no_batch(provider_api, usage_csv):
    error = usage_refused(provider_api, usage_csv.split(b"\n", 1)[0] + b"\n")

    assert error["details"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        "record_id\n".encode("utf-16"),
        b"\x00binary",
        b"record_id;enterprise_uscc\n",
        b'record_id,enterprise_uscc\n"x,y\n',
    ],
    ids=["empty", "utf-16", "binary", "wrong-delimiter", "unbalanced-quote"],
)
def test_the_usage_parser_refuses_hostile_bytes_with_a_line(data):
    with pytest.raises(ValidationFailed) as refusal:
        parse_csv_records(data)

    assert refusal.value.message
    assert all(problem.line is not None for problem in refusal.value.details)


def test_import_usage_refuses_a_hostile_file_and_writes_nothing(provider, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_bytes("record_id\n".encode("utf-16"))
    before = row_counts()
    err = io.StringIO()

    with pytest.raises(CommandError, match="UTF-16"):
        call_command(
            "import_usage", "--provider", provider.organisation.uscc, str(path), stdout=io.StringIO(), stderr=err
        )

    assert "line 1" in err.getvalue()
    assert row_counts() == before


def test_usage_ingest_of_a_hostile_csv_writes_nothing(provider, organisation):
    """The service itself, as the API and the command call it, with one bad row among good ones."""
    start = timezone.now() - dt.timedelta(days=2)
    rows = [record(f"job-{n}", enterprise=organisation, start=start) for n in range(3)]
    rows[2]["gpu_count"] = "８"  # a full-width digit: not a whole number to the parser
    data = dict_csv(USAGE_FIELDS, rows)
    before = row_counts()

    with pytest.raises(ValidationFailed) as refusal:
        usage_ingest(provider=provider, records=parse_csv_records(data), body=data, source="file")

    assert [(p.line, p.column) for p in refusal.value.details] == [(2, "gpu_count")]
    assert row_counts() == before
