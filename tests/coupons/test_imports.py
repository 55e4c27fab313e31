"""The programme and application imports (design.md, import formats): what they write, the
ledger postings they make, every problem with its line and column, and all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core.errors import ValidationFailed
from core.models import AuditEntry, ImportRun
from coupons.imports import ApplicationImport, ProgramImport
from coupons.models import Account, Application, Coupon, LedgerTransaction, Program
from coupons.selectors import cap_used
from coupons.services.review import grant_limit
from fraud.models import Outcome
from tests import factories
from tests.coupons.conftest import assert_ledger_ok, budget_account, make_application, make_program, snapshot

T = LedgerTransaction.Kind

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


def to_csv(header: list[str], rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def problems_of(error: ValidationFailed) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.column, p.reason) for p in error.details]


def refused(importer, data: bytes) -> list[tuple[int | None, str | None, str]]:
    before = snapshot()
    runs = ImportRun.objects.count()
    with pytest.raises(ValidationFailed) as caught:
        importer.run(data)
    assert snapshot() == before
    assert ImportRun.objects.count() == runs
    return problems_of(caught.value)


# --- programmes -----------------------------------------------------------------------------


def program_row(code: str = "AH-2026", **overrides) -> dict:
    row = {
        "code": code,
        "name": "安徽省算力券 2026",
        "budget": "5000000.00",
        "rate": "0.20",
        "domestic_rate": "0.30",
        "per_enterprise_cap": "500000.00",
        "opens": "2026-01-01",
        "closes": "2026-12-31",
        "validity_days": "365",
    }
    row.update(overrides)
    return row


def test_a_new_programme_is_created_and_its_budget_funded(db):
    summary = ProgramImport().run(to_csv(PROGRAM_HEADER, [program_row(), program_row("HF-2026", budget="1,000,000")]))

    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    program = Program.objects.get(code="AH-2026")
    assert (program.budget, program.rate, program.domestic_rate) == (
        Decimal("5000000.00"),
        Decimal("0.200"),
        Decimal("0.300"),
    )
    assert budget_account(program).balance == Decimal("5000000.00")
    assert budget_account(Program.objects.get(code="HF-2026")).balance == Decimal("1000000.00")
    assert LedgerTransaction.objects.filter(kind=T.FUND).count() == 2
    assert_ledger_ok()


def test_importing_the_same_programmes_again_changes_nothing(db):
    data = to_csv(PROGRAM_HEADER, [program_row()])
    ProgramImport().run(data)
    before = snapshot()

    summary = ProgramImport().run(data)

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 1)
    assert snapshot() == {**before, "audit": before["audit"] + 1}  # the import run itself is audited


@pytest.mark.parametrize(("budget", "delta"), [("6000000.00", "1000000.00"), ("4500000.00", "-500000.00")])
def test_a_changed_budget_posts_an_adjustment(db, budget, delta):
    ProgramImport().run(to_csv(PROGRAM_HEADER, [program_row()]))

    summary = ProgramImport().run(to_csv(PROGRAM_HEADER, [program_row(budget=budget)]))

    assert summary.updated == 1
    program = Program.objects.get(code="AH-2026")
    assert program.budget == Decimal(budget)
    adjust = LedgerTransaction.objects.get(kind=T.ADJUST)
    assert adjust.entries.get(account=budget_account(program)).amount == Decimal(delta)
    assert budget_account(program).balance == Decimal(budget)
    assert_ledger_ok()


def test_a_budget_cut_below_what_is_issued_refuses_the_whole_file(organisation, provider, reviewer):
    from coupons.services.review import review_approve

    program = make_program(code="AH-2026", budget=Decimal("50000.00"), per_enterprise_cap=Decimal("50000.00"))
    review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program), reviewer=reviewer
    )
    data = to_csv(
        PROGRAM_HEADER,
        [program_row("NEW-2026"), program_row(budget="10000.00", per_enterprise_cap="10000.00")],
    )
    before = snapshot()

    with pytest.raises(ValidationFailed, match="Line 3 cannot be applied") as refused:
        ProgramImport().run(data)

    assert refused.value.details[0].line == 3
    assert "cannot go below" in refused.value.details[0].reason or "cannot be taken" in refused.value.details[0].reason

    assert snapshot() == before
    assert not Program.objects.filter(code="NEW-2026").exists()


def test_bad_programme_rows_are_reported_with_line_and_column_and_nothing_is_written(db):
    data = to_csv(
        PROGRAM_HEADER,
        [
            program_row("OK-2026"),
            program_row("BAD-1", opens="2026-06-01", closes="2026-05-31"),
            program_row("BAD-2", rate="1.5"),
            program_row("BAD-3", budget="100000.00", per_enterprise_cap="100000.01"),
            program_row("BAD-4", domestic_rate="0.2345", validity_days="0"),
        ],
    )

    assert refused(ProgramImport(), data) == [
        (4, "rate", "'1.5' is above 1 (rates are shares, e.g. 0.20)"),
        (6, "domestic_rate", "'0.2345' has more than 3 decimal places"),
        (6, "validity_days", "0 is below 1"),
        (3, "closes", "closes before it opens"),
        (5, "per_enterprise_cap", "the per-enterprise cap exceeds the budget"),
    ]
    assert not Program.objects.exists()


def test_import_programs_command_prints_the_summary_and_fails_loudly(db, tmp_path):
    good, bad = tmp_path / "programs.csv", tmp_path / "bad.csv"
    good.write_bytes(to_csv(PROGRAM_HEADER, [program_row()]))
    bad.write_bytes(to_csv(PROGRAM_HEADER, [program_row("X-1", rate="2")]))
    out = io.StringIO()

    call_command("import_programs", str(good), stdout=out, stderr=io.StringIO())
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 problem\(s\) in the programs file; nothing was imported\."):
        call_command("import_programs", str(bad), stdout=io.StringIO(), stderr=err)

    assert out.getvalue() == "programs: 1 rows: 1 created, 0 updated, 0 unchanged\n"
    assert err.getvalue() == "  line 2, column rate: '2' is above 1 (rates are shares, e.g. 0.20)\n"
    assert list(Program.objects.values_list("code", flat=True)) == ["AH-2026"]


# --- applications ---------------------------------------------------------------------------


@pytest.fixture
def open_program(db):
    return make_program(code="OPEN26", per_enterprise_cap=Decimal("50000.00"))


@pytest.fixture
def closed_program(db):
    return make_program(
        code="HIST24",
        opens=dt.date(2024, 1, 1),
        closes=dt.date(2024, 12, 31),
        per_enterprise_cap=Decimal("50000.00"),
    )


@pytest.fixture
def row(organisation, provider, open_program, closed_program):
    def make(reference: str, **overrides) -> dict:
        values = {
            "reference": reference,
            "uscc": organisation.uscc,
            "program_code": open_program.code,
            "submitted_at": "2025-03-01T10:00:00",
            "provider_uscc": provider.organisation.uscc,
            "gpu_model": "NVIDIA A100 80GB",
            "claimed_card_hours": "1000.0000",
            "claimed_amount": "100000.00",
            "scenario": "training",
            "project_summary": "训练视觉模型",
            "status": "submitted",
            "granted_amount": "",
            "audit_outcome": "",
        }
        values.update(overrides)
        return values

    return make


def apps_csv(rows: list[dict]) -> bytes:
    return to_csv(APPLICATION_HEADER, rows)


def test_a_mixed_file_is_imported(row, organisation, open_program, closed_program):
    data = apps_csv(
        [
            row("A-1"),
            row("A-2", status="draft", submitted_at=""),
            row("A-3", status="rejected"),
            row("A-4", status="approved", granted_amount="20000.00"),
            row(
                "H-1",
                program_code="HIST24",
                submitted_at="2024-05-01T09:00:00+08:00",
                status="approved",
                granted_amount="15000.00",
            ),
        ]
    )

    summary = ApplicationImport(actor="cli").run(data, file_name="apps.csv")

    assert str(summary) == "5 rows: 5 created, 0 updated, 0 unchanged, 1 live coupons issued"
    statuses = dict(Application.objects.values_list("reference", "status"))
    assert statuses == {"A-1": "submitted", "A-2": "draft", "A-3": "rejected", "A-4": "approved", "H-1": "approved"}
    assert Application.objects.get(reference="A-3").decided_at is not None
    assert Application.objects.get(reference="A-2").submitted_at is None
    coupon = Coupon.objects.get()
    assert (coupon.application.reference, coupon.face_value, coupon.account.balance) == (
        "A-4",
        Decimal("20000.00"),
        Decimal("20000.00"),
    )
    assert budget_account(open_program).balance == Decimal("980000.00")
    assert AuditEntry.objects.filter(action="application.import").count() == 5
    assert ImportRun.objects.get().file_name == "apps.csv"
    assert_ledger_ok()


def test_an_approval_in_a_closed_programme_is_history_without_a_coupon(row, organisation, closed_program):
    data = apps_csv(
        [
            row(
                "H-1",
                program_code="HIST24",
                submitted_at="2024-05-01T09:00:00",
                status="approved",
                granted_amount="15000.00",
            )
        ]
    )
    transactions = LedgerTransaction.objects.count()

    ApplicationImport().run(data)

    application = Application.objects.get(reference="H-1")
    assert (application.historical, application.granted_amount) == (True, Decimal("15000.00"))
    assert not Coupon.objects.exists()
    assert LedgerTransaction.objects.count() == transactions
    assert budget_account(closed_program).balance == Decimal("1000000.00")
    # The grant still counts against the enterprise's cap in that programme.
    assert cap_used(organisation_id=organisation.pk, program_id=closed_program.pk) == Decimal("15000.00")
    assert_ledger_ok()


def test_an_approval_in_an_open_programme_issues_a_live_coupon(row, open_program, organisation, provider):
    ApplicationImport().run(apps_csv([row("A-4", status="approved", granted_amount="20000.00")]))

    application = Application.objects.get(reference="A-4")
    assert application.historical is False
    coupon = application.coupon
    assert (coupon.organisation, coupon.provider, coupon.program) == (organisation, provider, open_program)
    assert LedgerTransaction.objects.get(kind=T.ISSUE).idempotency_key == f"issue:application:{application.pk}"
    assert_ledger_ok()


def test_a_live_import_counts_against_the_cap_of_a_later_review(row, organisation, open_program, reviewer):
    ApplicationImport().run(apps_csv([row("A-4", status="approved", granted_amount="20000.00")]))
    later = make_application(organisation=organisation, provider=factories.make_provider(), program=open_program)

    assert grant_limit(later)[0] == Decimal("20000.00")  # claimed × rate; the cap has 30,000 left
    assert cap_used(organisation_id=organisation.pk, program_id=open_program.pk) == Decimal("20000.00")


def test_unknown_references_are_reported_with_line_and_column(row):
    unknown_uscc = factories.make_uscc(97531)
    not_a_provider = factories.make_organisation()
    data = apps_csv(
        [
            row("A-1"),
            row("A-2", uscc=unknown_uscc),
            row("A-3", provider_uscc=not_a_provider.uscc),
            row("A-4", program_code="NOPE26"),
            row("A-5", gpu_model="NVIDIA A1000"),
        ]
    )

    assert refused(ApplicationImport(), data) == [
        (3, "uscc", f"{unknown_uscc} is not in the registry"),
        (4, "provider_uscc", f"{not_a_provider.uscc} is not a provider"),
        (5, "program_code", "no programme NOPE26"),
        (6, "gpu_model", "'NVIDIA A1000' is not a known card model"),
    ]
    assert not Application.objects.exists()


@pytest.mark.parametrize(
    ("written", "accelerator"),
    [
        ("a100-80g", "NVIDIA A100 80GB"),
        ("A100 80G", "NVIDIA A100 80GB"),
        ("nvidia a100 80gb", "NVIDIA A100 80GB"),
        ("910B", "Huawei Ascend 910B (variant unspecified)"),
        ("ascend-910b", "Huawei Ascend 910B (variant unspecified)"),
        ("RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("rtx-4090", "NVIDIA GeForce RTX 4090"),
        ("Rtx_4090", "NVIDIA GeForce RTX 4090"),
        ("A100 40GB", "NVIDIA A100 40GB"),
        ("A10", "NVIDIA A10"),
    ],
)
def test_a_card_model_matches_its_aliases_without_regard_to_case_spaces_and_hyphens(row, written, accelerator):
    ApplicationImport().run(apps_csv([row("A-1", gpu_model=written)]))

    assert Application.objects.get(reference="A-1").accelerator.name == accelerator


def test_a_grant_above_claimed_times_rate_is_refused(row):
    data = apps_csv(
        [
            row("A-1", status="approved", granted_amount="20000.01"),
            row(
                "A-2",
                status="approved",
                granted_amount="30000.00",
                gpu_model="910B",
                provider_uscc=factories.make_provider().organisation.uscc,
            ),
        ]
    )

    # The domestic card's grant (30,000 = 100,000 × 0.30) is within its rate; the other is not.
    assert refused(ApplicationImport(), data) == [
        (2, "granted_amount", "granted 20000.01 exceeds claimed amount × rate (20000.00)")
    ]


def test_grants_across_rows_beyond_the_cap_are_refused_at_the_last_row(row):
    data = apps_csv(
        [
            row("A-1", status="approved", granted_amount="20000.00"),
            row("A-2"),
            row("A-3", status="approved", granted_amount="20000.00"),
            row("A-4", status="approved", granted_amount="10000.01"),
        ]
    )

    assert refused(ApplicationImport(), data) == [
        (5, "granted_amount", "grants to this enterprise in OPEN26 would exceed the cap of 50000.00")
    ]


def test_grants_beyond_the_cap_together_with_earlier_grants_are_refused(row, organisation, open_program, reviewer):
    from coupons.services.review import review_approve

    review_approve(
        application=make_application(
            organisation=organisation, provider=factories.make_provider(), program=open_program
        ),
        reviewer=reviewer,
    )  # 20,000 of the 50,000 cap used

    problems = refused(
        ApplicationImport(),
        apps_csv(
            [
                row("A-1", status="approved", granted_amount="15000.00"),
                row("A-2", status="approved", granted_amount="15000.01"),
            ]
        ),
    )

    assert [(line, column) for line, column, _ in problems] == [(3, "granted_amount")]


def test_live_grants_beyond_the_remaining_budget_are_refused(row, organisation, provider):
    make_program(code="SMALL26", budget=Decimal("30000.00"), per_enterprise_cap=Decimal("30000.00"))
    other = factories.make_organisation()
    data = apps_csv(
        [
            row("A-1", program_code="SMALL26", status="approved", granted_amount="20000.00"),
            row("A-2", program_code="SMALL26", uscc=other.uscc, status="approved", granted_amount="10000.01"),
        ]
    )

    assert refused(ApplicationImport(), data) == [
        (None, "granted_amount", "live grants of 30000.01 exceed the remaining budget of SMALL26")
    ]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"status": "approved"}, (2, "granted_amount", "an approved application needs granted_amount")),
        (
            {"status": "rejected", "granted_amount": "100.00"},
            (2, "granted_amount", "only an approved application has a granted amount (status is rejected)"),
        ),
        ({"submitted_at": ""}, (2, "submitted_at", "a submitted application needs submitted_at")),
        ({"status": "approved", "granted_amount": "0.00"}, (2, "granted_amount", "must be positive")),
        (
            {"status": "paid"},
            (
                2,
                "status",
                "'paid' is not one of draft, submitted, under_review, approved, rejected, returned, withdrawn",
            ),
        ),
        ({"audit_outcome": "maybe"}, (2, "audit_outcome", "'maybe' is not one of fraud, clean")),
        ({"uscc": "91340100ABC"}, (2, "uscc", "'91340100ABC' is not a well-formed USCC")),
    ],
)
def test_an_inconsistent_row_is_refused(row, overrides, problem):
    assert refused(ApplicationImport(), apps_csv([row("A-1", **overrides)])) == [problem]


def test_a_submission_in_the_future_is_refused(row):
    tomorrow = (timezone.now() + dt.timedelta(days=1)).isoformat()

    assert refused(ApplicationImport(), apps_csv([row("A-1", submitted_at=tomorrow)])) == [
        (2, "submitted_at", "is in the future")
    ]


def test_a_bad_last_row_leaves_the_database_unchanged(row):
    data = apps_csv(
        [
            row("A-1"),
            row("A-2", status="approved", granted_amount="20000.00", audit_outcome="clean"),
            row(
                "H-1",
                program_code="HIST24",
                submitted_at="2024-05-01T09:00:00",
                status="approved",
                granted_amount="1.00",
            ),
            row("A-3", claimed_amount="lots"),
        ]
    )
    transactions = LedgerTransaction.objects.count()

    assert refused(ApplicationImport(), data) == [(5, "claimed_amount", "'lots' is not a number")]

    assert not Application.objects.exists()
    assert not Coupon.objects.exists()
    assert not Outcome.objects.exists()
    assert LedgerTransaction.objects.count() == transactions


def test_a_failure_while_writing_rolls_back_everything(row, monkeypatch):
    """GIVEN rows that pass validation WHEN issuing a coupon fails half-way THEN nothing stays."""
    from coupons import imports

    calls = []

    def failing_issue(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real_issue(**kwargs)

    real_issue = imports.coupon_issue
    monkeypatch.setattr(imports, "coupon_issue", failing_issue)
    other = factories.make_organisation()
    data = apps_csv(
        [
            row("A-1", status="approved", granted_amount="1000.00"),
            row("A-2", uscc=other.uscc, status="approved", granted_amount="1000.00"),
        ]
    )
    before = snapshot()

    with pytest.raises(RuntimeError):
        ApplicationImport().run(data)

    assert snapshot() == before
    assert not ImportRun.objects.exists()


def test_the_same_file_twice_is_a_no_op(row):
    data = apps_csv(
        [
            row("A-1"),
            row("A-2", status="approved", granted_amount="10000.00", audit_outcome="clean"),
            row(
                "H-1",
                program_code="HIST24",
                submitted_at="2024-05-01T09:00:00",
                status="approved",
                granted_amount="5000.00",
            ),
        ]
    )
    ApplicationImport().run(data)
    before = snapshot()
    outcomes = Outcome.objects.count()

    summary = ApplicationImport().run(data)

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 3)
    assert snapshot() == {**before, "audit": before["audit"] + 1}  # the import run itself is audited
    assert Outcome.objects.count() == outcomes
    assert_ledger_ok()


def test_the_same_file_twice_is_a_no_op_even_when_its_grants_use_most_of_the_cap(row):
    data = apps_csv(
        [
            row(
                "H-1",
                program_code="HIST24",
                submitted_at="2024-05-01T09:00:00",
                claimed_amount="200000.00",
                status="approved",
                granted_amount="30000.00",  # of a 50,000 cap
            ),
        ]
    )
    assert ApplicationImport().run(data).created == 1

    assert_reimport_unchanged(data, 1)


def assert_reimport_unchanged(data: bytes, rows: int) -> None:
    try:
        summary = ApplicationImport().run(data)
    except ValidationFailed as error:
        raise AssertionError(problems_of(error)) from error
    assert summary.unchanged == rows


def test_the_same_file_twice_is_a_no_op_even_when_its_live_grant_uses_most_of_the_budget(row):
    make_program(code="SMALL26", budget=Decimal("30000.00"), per_enterprise_cap=Decimal("100000.00"))
    data = apps_csv([row("A-1", program_code="SMALL26", status="approved", granted_amount="20000.00")])
    assert ApplicationImport().run(data).created == 1

    assert_reimport_unchanged(data, 1)


def test_a_reference_imported_again_with_other_values_is_refused(row):
    ApplicationImport().run(apps_csv([row("A-1"), row("A-2")]))
    data = apps_csv([row("A-1"), row("A-2", claimed_amount="90000.00"), row("A-3")])

    problems = refused(ApplicationImport(), data)

    assert problems == [(3, "reference", "reference already imported with different values")]
    assert not Application.objects.filter(reference="A-3").exists()
    assert Application.objects.get(reference="A-2").claimed_amount == Decimal("100000.00")


def test_an_application_made_in_the_portal_is_not_changed_by_an_import(row, application):
    data = apps_csv([row(application.reference, status="approved", granted_amount="100.00")])

    assert [column for _, column, _ in refused(ApplicationImport(), data)] == ["reference"]


def test_audit_outcomes_become_training_labels(row):
    other = factories.make_organisation()
    data = apps_csv(
        [
            row("A-1", audit_outcome="fraud"),
            row("A-2", uscc=other.uscc, audit_outcome="clean"),
            row("A-3", provider_uscc=factories.make_provider().organisation.uscc),
        ]
    )

    ApplicationImport().run(data)

    assert set(Outcome.objects.values_list("application__reference", "verdict", "source")) == {
        ("A-1", "fraud", "import"),
        ("A-2", "clean", "import"),
    }


def test_import_applications_command(row, tmp_path):
    good, bad = tmp_path / "apps.csv", tmp_path / "bad.csv"
    good.write_bytes(apps_csv([row("A-1"), row("A-2", status="approved", granted_amount="100.00")]))
    bad.write_bytes(apps_csv([row("B-1", gpu_model="TPU v5"), row("B-2", program_code="NOPE")]))
    out, err = io.StringIO(), io.StringIO()

    call_command("import_applications", str(good), stdout=out, stderr=io.StringIO())
    with pytest.raises(CommandError, match=r"^2 problem\(s\) in the applications file; nothing was imported\.$"):
        call_command("import_applications", str(bad), stdout=io.StringIO(), stderr=err)

    assert out.getvalue() == "applications: 2 rows: 2 created, 0 updated, 0 unchanged, 1 live coupons issued\n"
    assert err.getvalue().splitlines() == [
        "  line 2, column gpu_model: 'TPU v5' is not a known card model",
        "  line 3, column program_code: no programme NOPE",
    ]
    assert set(Application.objects.values_list("reference", flat=True)) == {"A-1", "A-2"}
    assert Account.objects.filter(kind=Account.Kind.COUPON).count() == 1
