"""The registry and provider imports (design.md, import formats): every problem reported with
its line, column and reason; all or nothing; upsert by USCC."""

import datetime as dt
import hashlib
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from core.errors import Problem, ValidationFailed
from core.models import AuditEntry, ImportRun
from enterprises.imports import ProviderImport, RegistryImport
from enterprises.models import Organisation, Provider
from tests import factories
from tests.enterprises.csvdata import (
    PROVIDER_HEADER,
    REGISTRY_HEADER,
    provider_row,
    registry_row,
    to_csv,
)
from tests.factories import make_uscc

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")


def refused(importer, data: bytes) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        importer.run(data)
    return caught.value


def assert_nothing_written(organisations: int = 0) -> None:
    assert Organisation.objects.count() == organisations
    assert not ImportRun.objects.exists()
    assert not AuditEntry.objects.exists()


# --- registry: the happy path -------------------------------------------------------------


def test_a_registry_file_creates_every_organisation_with_its_fields():
    data = to_csv([registry_row(1), registry_row(2), registry_row(3, industry_code="C3911")])

    summary = RegistryImport().run(data, file_name="registry-2025.csv")

    assert (summary.created, summary.updated, summary.unchanged) == (3, 0, 0)
    assert str(summary) == "3 rows: 3 created, 0 updated, 0 unchanged"
    org = Organisation.objects.get(uscc=make_uscc(1))
    assert org.name == "合肥算力测试有限公司1"
    assert org.legal_representative == "李1"
    assert org.registered_address == "合肥市蜀山区望江西路1号"
    assert org.region_code == "340100"
    assert org.registration_date == dt.date(2019, 6, 18)
    assert org.registered_capital == Decimal("2000000.00")
    assert org.paid_in_capital == Decimal("1500000.50")
    assert org.industry.code == "I6513"
    assert org.industry.name == "应用软件开发"
    assert org.main_business == "人工智能应用软件开发"
    assert (org.social_insured_employees, org.rd_staff) == (35, 12)
    assert org.core_team_city == "合肥"
    assert org.contact_phone == "0551-60000001"
    assert org.contact_email == "ops1@example.cn"
    assert org.bank_account == "6217 0000 00000001"
    assert org.uscc_checksum_ok is True
    assert org.data_quality_note == ""
    assert Organisation.objects.get(uscc=make_uscc(3)).industry_id == "C3911"


def test_a_successful_import_is_recorded_with_the_files_digest_and_audited():
    data = to_csv([registry_row(1), registry_row(2)])

    RegistryImport().run(data, file_name="registry-2025.csv")

    run = ImportRun.objects.get()
    assert run.kind == "registry"
    assert run.file_name == "registry-2025.csv"
    assert run.sha256 == hashlib.sha256(data).hexdigest()
    assert (run.rows, run.created, run.updated, run.unchanged) == (2, 2, 0, 0)
    assert run.summary == "2 rows: 2 created, 0 updated, 0 unchanged"
    entry = AuditEntry.objects.get()
    assert entry.action == "import.registry"
    assert entry.object_id == str(run.pk)
    assert entry.actor is None
    assert entry.actor_label == "cli"
    assert entry.reason == run.summary


def test_columns_may_come_in_any_order_and_header_case():
    header = list(reversed(REGISTRY_HEADER))
    rows = [[registry_row(n)[name] for name in header] for n in (1, 2)]
    data = to_csv(rows, header=[f" {name.upper()} " for name in header])

    RegistryImport().run(data)

    org = Organisation.objects.get(uscc=make_uscc(2))
    assert org.name == "合肥算力测试有限公司2"
    assert org.registered_capital == Decimal("2000000.00")


def test_optional_cells_may_be_empty_and_money_may_carry_separators():
    row = registry_row(
        1,
        main_business="",
        core_team_city="",
        contact_phone="",
        contact_email="",
        bank_account="",
        registered_capital="¥1,000,000",
        paid_in_capital=" 999,999.9 ",
    )

    RegistryImport().run(to_csv([row]))

    org = Organisation.objects.get()
    assert (org.main_business, org.core_team_city, org.contact_phone) == ("", "", "")
    assert (org.contact_email, org.bank_account) == ("", "")
    assert org.registered_capital == Decimal("1000000.00")
    assert org.paid_in_capital == Decimal("999999.90")


def test_blank_lines_are_skipped():
    data = to_csv([registry_row(1), [], ["", ""], registry_row(2)], header=REGISTRY_HEADER)

    summary = RegistryImport().run(data)

    assert summary.created == 2


# --- registry: upsert ---------------------------------------------------------------------


def test_importing_the_same_file_again_changes_nothing_but_is_recorded():
    """GIVEN a registry imported yesterday
    WHEN the very same file is imported today
    THEN every row is unchanged, no row's updated_at moves, and the second run is recorded too
    (every import that completes gets an ImportRun, even one that changed nothing)."""
    data = to_csv([registry_row(1), registry_row(2), registry_row(3)])
    with time_machine.travel(dt.datetime(2025, 3, 1, 9, 0, tzinfo=SHANGHAI), tick=False):
        RegistryImport().run(data)
    before = dict(Organisation.objects.values_list("uscc", "updated_at"))

    with time_machine.travel(dt.datetime(2025, 3, 2, 9, 0, tzinfo=SHANGHAI), tick=False):
        summary = RegistryImport().run(data)

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 3)
    assert dict(Organisation.objects.values_list("uscc", "updated_at")) == before
    assert Organisation.objects.count() == 3
    assert ImportRun.objects.count() == 2
    latest = ImportRun.objects.order_by("-id").first()
    assert (latest.created, latest.updated, latest.unchanged) == (0, 0, 3)
    assert AuditEntry.objects.filter(action="import.registry").count() == 2


def test_a_changed_row_is_updated_a_new_row_created_and_the_rest_left_alone():
    RegistryImport().run(to_csv([registry_row(1), registry_row(2), registry_row(3)]))
    untouched_before = Organisation.objects.get(uscc=make_uscc(1)).updated_at

    changed = registry_row(2, name="合肥算力测试有限公司（更名）", rd_staff="20", industry_code="I6450")
    summary = RegistryImport().run(to_csv([registry_row(1), changed, registry_row(3), registry_row(4)]))

    assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 2)
    org = Organisation.objects.get(uscc=make_uscc(2))
    assert org.name == "合肥算力测试有限公司（更名）"
    assert org.rd_staff == 20
    assert org.industry_id == "I6450"
    assert Organisation.objects.count() == 4
    assert Organisation.objects.get(uscc=make_uscc(1)).updated_at == untouched_before


def test_an_updated_row_gets_a_new_updated_at():
    """bulk_update does not stamp auto_now fields itself; the import must, or staff reading
    "updated" would never see what the last registry import changed."""
    with time_machine.travel(dt.datetime(2025, 3, 1, 9, 0, tzinfo=SHANGHAI), tick=False):
        RegistryImport().run(to_csv([registry_row(1)]))
    second_import = dt.datetime(2025, 3, 2, 9, 0, tzinfo=SHANGHAI)

    with time_machine.travel(second_import, tick=False):
        RegistryImport().run(to_csv([registry_row(1, name="新名称有限公司")]))

    org = Organisation.objects.get()
    assert org.name == "新名称有限公司"
    assert org.updated_at == second_import


def test_an_existing_record_is_matched_whatever_the_case_of_the_code_in_the_file():
    existing = factories.make_organisation(uscc=make_uscc(1))

    summary = RegistryImport().run(to_csv([registry_row(1, uscc=f"  {make_uscc(1).lower()} ")]))

    assert (summary.created, summary.updated) == (0, 1)
    assert Organisation.objects.get().pk == existing.pk
    assert Organisation.objects.get().uscc == make_uscc(1)


# --- registry: bad rows -------------------------------------------------------------------

BAD_CELLS = [
    ({"uscc": "9111010855138508"}, "uscc", "'9111010855138508' is not a well-formed USCC"),
    ({"uscc": "91110108551385082I"}, "uscc", "'91110108551385082I' is not a well-formed USCC"),
    ({"uscc": ""}, "uscc", "is empty"),
    ({"name": ""}, "name", "is empty"),
    ({"name": "名" * 201}, "name", "longer than 200 characters"),
    ({"registration_date": ""}, "registration_date", "is empty"),
    (
        {"registration_date": "2020-02-30"},
        "registration_date",
        "'2020-02-30' is not an ISO 8601 date (YYYY-MM-DD)",
    ),
    (
        {"registration_date": "18/06/2019"},
        "registration_date",
        "'18/06/2019' is not an ISO 8601 date (YYYY-MM-DD)",
    ),
    ({"registered_capital": "-1"}, "registered_capital", "'-1' is below 0"),
    (
        {"registered_capital": "100.001"},
        "registered_capital",
        "'100.001' has more than 2 decimal places",
    ),
    ({"registered_capital": "two million"}, "registered_capital", "'two million' is not a number"),
    ({"registered_capital": "1e20"}, "registered_capital", "'1e20' is too large"),
    ({"paid_in_capital": "NaN"}, "paid_in_capital", "'NaN' is not a finite number"),
    ({"paid_in_capital": "-0.01"}, "paid_in_capital", "'-0.01' is below 0"),
    (
        {"registered_capital": "1000", "paid_in_capital": "1000.01"},
        "paid_in_capital",
        "paid-in capital exceeds registered capital",
    ),
    ({"industry_code": "X9999"}, "industry_code", "'X9999' is not a GB/T 4754-2017 code"),
    ({"industry_code": "I65"}, "industry_code", "'I65' is not a class (4-digit) code"),
    ({"industry_code": "I651"}, "industry_code", "'I651' is not a class (4-digit) code"),
    ({"industry_code": "I"}, "industry_code", "'I' is not a class (4-digit) code"),
    ({"industry_code": "I65130"}, "industry_code", "longer than 5 characters"),
    ({"industry_code": ""}, "industry_code", "is empty"),
    ({"region_code": "34010"}, "region_code", "is not a six-digit region code"),
    ({"region_code": "34O100"}, "region_code", "is not a six-digit region code"),
    ({"social_insured_employees": "-3"}, "social_insured_employees", "-3 is below 0"),
    ({"rd_staff": "3.5"}, "rd_staff", "'3.5' is not a whole number"),
    ({"contact_email": "ops-at-example.cn"}, "contact_email", "is not an e-mail address"),
    ({"contact_email": "ops@example"}, "contact_email", "is not an e-mail address"),
    ({"contact_phone": "call me"}, "contact_phone", "is not a phone number"),
    ({"bank_account": "IBAN please"}, "bank_account", "is not a bank account number"),
]


@pytest.mark.parametrize(("overrides", "column", "reason"), BAD_CELLS)
def test_a_bad_last_row_is_reported_precisely_and_nothing_is_written(overrides, column, reason):
    data = to_csv([registry_row(1), registry_row(2), registry_row(3, **overrides)])

    error = refused(RegistryImport(), data)

    assert error.details == [Problem(reason, line=4, column=column)]
    assert error.message == "1 problem(s) in the registry file; nothing was imported."
    assert_nothing_written()


def test_a_bad_row_leaves_existing_records_as_they_were():
    existing = factories.make_organisation(uscc=make_uscc(1), name="原名称有限公司")
    data = to_csv([registry_row(1, name="新名称有限公司"), registry_row(2, registration_date="x")])

    refused(RegistryImport(), data)

    existing.refresh_from_db()
    assert existing.name == "原名称有限公司"
    assert_nothing_written(organisations=1)


def test_every_problem_of_the_file_is_reported_at_once():
    rows = [
        registry_row(1, registration_date="2020-13-01", rd_staff="-1"),
        registry_row(2),
        registry_row(3, industry_code="I65"),
    ]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.details == [
        Problem("'2020-13-01' is not an ISO 8601 date (YYYY-MM-DD)", line=2, column="registration_date"),
        Problem("-1 is below 0", line=2, column="rd_staff"),
        Problem("'I65' is not a class (4-digit) code", line=4, column="industry_code"),
    ]
    assert error.message.startswith("3 problem(s)")
    assert_nothing_written()


def test_a_row_with_the_wrong_number_of_cells_is_reported_with_its_line():
    short = list(registry_row(3).values())[:-1]
    long = [*registry_row(4).values(), "extra"]
    data = to_csv([registry_row(1), registry_row(2), short, long], header=REGISTRY_HEADER)

    error = refused(RegistryImport(), data)

    assert error.details == [
        Problem("has 15 cells, the header has 16", line=4),
        Problem("has 17 cells, the header has 16", line=5),
    ]
    assert_nothing_written()


def test_the_line_of_a_row_after_a_multi_line_cell_is_the_line_it_starts_on():
    """A quoted cell may hold line breaks; the problem must point at the line the bad record
    starts on in the file, which is what a person opening it in an editor sees."""
    rows = [registry_row(1, main_business="第一行\n第二行\n第三行"), registry_row(2, rd_staff="many")]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.details == [Problem("'many' is not a whole number", line=5, column="rd_staff")]


def test_a_uscc_twice_in_the_file_is_reported_on_the_second_line():
    rows = [registry_row(1), registry_row(2), registry_row(3, uscc=make_uscc(1).lower())]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.details == [Problem("duplicate of line 2", line=4, column="uscc")]
    assert_nothing_written()


def test_an_unknown_column_is_reported_not_dropped():
    rows = [{**registry_row(1), "fax": "0551-1234567"}]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.message == "The header of the registry file is not valid."
    assert error.details == [Problem("unknown column 'fax'", line=1, column="fax")]
    assert_nothing_written()


def test_a_missing_column_is_reported():
    header = [name for name in REGISTRY_HEADER if name not in ("rd_staff", "contact_email")]

    error = refused(RegistryImport(), to_csv([registry_row(1)], header=header))

    assert error.details == [
        Problem("missing column", line=1, column="rd_staff"),
        Problem("missing column", line=1, column="contact_email"),
    ]
    assert_nothing_written()


def test_a_column_given_twice_is_reported():
    header = [*REGISTRY_HEADER, "name"]
    row = [*registry_row(1).values(), "又一个名字"]

    error = refused(RegistryImport(), to_csv([row], header=header))

    assert error.details == [Problem("column appears twice", line=1, column="name")]


def test_an_empty_file_and_a_header_without_rows_are_refused():
    assert refused(RegistryImport(), b"").message == "The file is empty."
    header_only = to_csv([], header=REGISTRY_HEADER)
    error = refused(RegistryImport(), header_only)
    assert error.message == "The file has a header but no rows."
    assert error.details == [Problem("no data rows", line=2)]
    assert_nothing_written()


def test_broken_quoting_is_reported_with_its_line():
    data = to_csv([registry_row(1)]) + b'"' + make_uscc(2).encode() + b'"x,rest\r\n'

    error = refused(RegistryImport(), data)

    assert error.details == [Problem("unreadable CSV: ',' expected after '\"'", line=3)]
    assert_nothing_written()


def test_an_empty_header_cell_is_reported_by_its_position():
    header = [*REGISTRY_HEADER[:2], "", *REGISTRY_HEADER[2:]]
    row = list(registry_row(1).values())
    row.insert(2, "")

    error = refused(RegistryImport(), to_csv([row], header=header))

    assert error.details == [Problem("unknown column ''", line=1, column="#3")]


def test_a_huge_bad_file_reports_the_first_thousand_problems_and_counts_them_all():
    rows = [registry_row(n, rd_staff="x") for n in range(1, 1006)]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.message == "1005 problem(s) in the registry file; nothing was imported."
    assert len(error.details) == 1000
    assert error.details[0] == Problem("'x' is not a whole number", line=2, column="rd_staff")
    assert error.details[-1].line == 1001
    assert_nothing_written()


def test_a_capital_too_large_for_the_column_is_reported_not_crashed_on():
    """Organisation capital columns hold 14 integer digits; a bigger number must be a
    reported problem, not a PostgreSQL DataError (or, on SQLite, a stored unreadable value)."""
    rows = [
        registry_row(1, registered_capital="99999999999999.99", paid_in_capital="1"),
        registry_row(2, registered_capital="100000000000000", paid_in_capital="1"),
    ]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.details == [Problem("'100000000000000' is too large", line=3, column="registered_capital")]
    assert_nothing_written()


@pytest.mark.postgres  # SQLite keeps decimals as doubles: 16 significant digits do not round-trip
def test_the_largest_capital_the_column_holds_is_imported():
    RegistryImport().run(to_csv([registry_row(1, registered_capital="99999999999999.99")]))

    assert Organisation.objects.get().registered_capital == Decimal("99999999999999.99")


def test_a_head_count_too_large_for_the_column_is_reported_not_crashed_on():
    rows = [
        registry_row(1, social_insured_employees="2147483647"),
        registry_row(2, social_insured_employees="2147483648"),
    ]

    error = refused(RegistryImport(), to_csv(rows))

    assert error.details == [Problem("2147483648 is above 2147483647", line=3, column="social_insured_employees")]
    assert_nothing_written()


# --- registry: encodings ------------------------------------------------------------------


def test_utf8_with_a_byte_order_mark():
    data = b"\xef\xbb\xbf" + to_csv([registry_row(1, name="北京小米科技有限责任公司")])

    RegistryImport().run(data)

    assert Organisation.objects.get().name == "北京小米科技有限责任公司"


def test_a_gb18030_file_written_by_excel_keeps_its_chinese_text():
    rows = [
        registry_row(1, name="华为技术有限公司", legal_representative="赵明路", core_team_city="深圳"),
        registry_row(2, name="上海汽车集团股份有限公司", registered_address="上海市威宁路563号"),
    ]
    data = to_csv(rows, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the premise: this really is not UTF-8

    summary = RegistryImport().run(data)

    assert summary.created == 2
    huawei = Organisation.objects.get(uscc=make_uscc(1))
    assert (huawei.name, huawei.legal_representative, huawei.core_team_city) == (
        "华为技术有限公司",
        "赵明路",
        "深圳",
    )
    assert Organisation.objects.get(uscc=make_uscc(2)).registered_address == "上海市威宁路563号"


def test_a_utf16_file_is_refused_with_what_to_do():
    data = to_csv([registry_row(1)], encoding="utf-16")
    assert data.startswith(b"\xff\xfe")

    error = refused(RegistryImport(), data)

    assert error.message == "The file is UTF-16; save it as UTF-8 or GB18030 CSV."
    assert_nothing_written()


def test_a_file_that_is_neither_utf8_nor_gb18030_is_refused_with_the_line():
    data = to_csv([registry_row(1)]) + b"\xff\xfe\xff,garbage\r\n"

    error = refused(RegistryImport(), data)

    assert error.message == "The file is neither UTF-8 nor GB18030 text."
    assert len(error.details) == 1
    assert error.details[0].line == 3
    assert error.details[0].reason.startswith("undecodable byte at offset")
    assert_nothing_written()


def test_a_binary_file_is_refused():
    error = refused(RegistryImport(), b"PK\x03\x04\x00\x00binary xlsx")

    assert error.message == "The file is not a CSV text file."
    assert_nothing_written()


# --- registry: USCC data quality ----------------------------------------------------------


def test_a_code_failing_only_its_checksum_is_imported_and_flagged():
    """GIVEN a genuine early pilot-region code that fails its final check character
    WHEN the registry extract containing it is imported
    THEN the organisation is kept, flagged for staff with a note, and the summary says so."""
    data = to_csv([registry_row(1), registry_row(2, uscc="91350100M0001TGQXM")])

    summary = RegistryImport().run(data)

    assert summary.created == 2
    assert summary.extra == {"flagged for USCC data quality": 1}
    assert str(summary) == "2 rows: 2 created, 0 updated, 0 unchanged, 1 flagged for USCC data quality"
    pilot = Organisation.objects.get(uscc="91350100M0001TGQXM")
    assert pilot.uscc_checksum_ok is False
    assert pilot.data_quality_note == "USCC: check character (position 18) does not match"
    assert pilot.has_data_quality_flag
    clean = Organisation.objects.get(uscc=make_uscc(1))
    assert clean.uscc_checksum_ok is True
    assert not clean.has_data_quality_flag
    assert ImportRun.objects.get().summary == str(summary)


def test_reimporting_a_flagged_record_keeps_the_staff_resolution():
    data = to_csv([registry_row(1, uscc="91350211M0000XUF46")])
    RegistryImport().run(data)
    Organisation.objects.update(data_quality_resolved=True)

    summary = RegistryImport().run(data)

    assert summary.unchanged == 1
    org = Organisation.objects.get()
    assert org.data_quality_resolved is True
    assert not org.has_data_quality_flag


# --- providers ----------------------------------------------------------------------------


def test_providers_are_created_for_registry_organisations():
    first = factories.make_organisation()
    second = factories.make_organisation()
    data = to_csv([provider_row(first, whitelisted="true"), provider_row(second, whitelisted="否")])

    summary = ProviderImport().run(data, file_name="providers.csv")

    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    assert Provider.objects.get(organisation=first).whitelisted is True
    assert Provider.objects.get(organisation=second).whitelisted is False
    run = ImportRun.objects.get()
    assert (run.kind, run.file_name, run.created) == ("providers", "providers.csv", 2)
    assert AuditEntry.objects.get().action == "import.providers"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Y", True),
        ("是", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("n", False),
        ("否", False),
    ],
)
def test_whitelisted_reads_english_digits_and_chinese(raw, expected):
    organisation = factories.make_organisation()

    ProviderImport().run(to_csv([provider_row(organisation, whitelisted=raw)]))

    assert Provider.objects.get().whitelisted is expected


@pytest.mark.parametrize("raw", ["maybe", "对", "2"])
def test_whitelisted_refuses_anything_else(raw):
    organisation = factories.make_organisation()

    error = refused(ProviderImport(), to_csv([provider_row(organisation, whitelisted=raw)]))

    assert error.details == [Problem(f"{raw!r} is not yes/no (true/false, 1/0, 是/否)", line=2, column="whitelisted")]
    assert not Provider.objects.exists()


def test_providers_upsert_by_uscc():
    provider = factories.make_provider(whitelisted=True)
    newcomer = factories.make_organisation()
    rows = [
        provider_row(provider.organisation, uscc=provider.organisation.uscc.lower(), whitelisted="否"),
        provider_row(newcomer, whitelisted="是"),
    ]

    summary = ProviderImport().run(to_csv(rows))

    assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 0)
    assert Provider.objects.count() == 2
    provider.refresh_from_db()
    assert provider.whitelisted is False
    assert Provider.objects.get(organisation=newcomer).whitelisted is True

    again = ProviderImport().run(to_csv(rows))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)


def test_a_provider_not_in_the_registry_is_refused():
    known = factories.make_organisation()
    stranger = {"uscc": make_uscc(999_001), "name": "未登记公司", "region_code": "340100", "whitelisted": "是"}

    error = refused(ProviderImport(), to_csv([provider_row(known), stranger], header=PROVIDER_HEADER))

    assert error.details == [
        Problem(f"{make_uscc(999_001)} is not in the registry; import the registry first", line=3, column="uscc")
    ]
    assert not Provider.objects.exists()
    assert not ImportRun.objects.exists()


def test_a_provider_whose_name_or_region_differs_from_the_registry_is_refused():
    """A name or region that does not match the registry usually means a wrong code in the
    file: refusing it keeps a provider from being attached to the wrong organisation."""
    organisation = factories.make_organisation(name="合肥云算科技有限公司", region_code="340100")
    rows = [provider_row(organisation, name="合肥云算科技公司", region_code="340200")]

    error = refused(ProviderImport(), to_csv(rows))

    assert error.details == [
        Problem("name '合肥云算科技公司' differs from the registry's '合肥云算科技有限公司'", line=2, column="name"),
        Problem("region 340200 differs from the registry's 340100", line=2, column="region_code"),
    ]
    assert not Provider.objects.exists()


def test_a_provider_twice_in_the_file_is_refused():
    organisation = factories.make_organisation()
    rows = [provider_row(organisation), provider_row(organisation, whitelisted="否")]

    error = refused(ProviderImport(), to_csv(rows))

    assert error.details == [Problem("duplicate of line 2", line=3, column="uscc")]
    assert not Provider.objects.exists()


def test_a_malformed_provider_code_is_refused():
    organisation = factories.make_organisation()

    error = refused(ProviderImport(), to_csv([provider_row(organisation, uscc="12345")]))

    assert error.details == [Problem("'12345' is not a well-formed USCC", line=2, column="uscc")]
