"""``manage.py import_registry FILE`` and ``import_providers FILE``: the summary line on
success; on failure every problem on stderr, a CommandError, and nothing written."""

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEntry, ImportRun
from enterprises.models import Organisation, Provider
from tests import factories
from tests.enterprises.csvdata import provider_row, registry_row, to_csv

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_registry_prints_the_summary_line(tmp_path):
    path = tmp_path / "registry-2025-03.csv"
    path.write_bytes(to_csv([registry_row(1), registry_row(2), registry_row(3, uscc="91350203M0001FUE2P")]))

    out, _err = run("import_registry", str(path))

    assert out == "registry: 3 rows: 3 created, 0 updated, 0 unchanged, 1 flagged for USCC data quality\n"
    assert Organisation.objects.count() == 3
    import_run = ImportRun.objects.get()
    assert import_run.file_name == "registry-2025-03.csv"
    assert AuditEntry.objects.get().actor_label == "cli"


def test_import_registry_run_twice_reports_the_rows_unchanged(tmp_path):
    path = tmp_path / "registry.csv"
    path.write_bytes(to_csv([registry_row(1), registry_row(2)]))
    run("import_registry", str(path))

    out, _err = run("import_registry", str(path))

    assert out == "registry: 2 rows: 0 created, 0 updated, 2 unchanged\n"


def test_import_registry_reports_every_problem_on_stderr_and_writes_nothing(tmp_path):
    path = tmp_path / "registry.csv"
    rows = [registry_row(1), registry_row(2, registration_date="2020-13-01"), registry_row(3, industry_code="I65")]
    path.write_bytes(to_csv(rows))
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"^2 problem\(s\) in the registry file; nothing was imported\.$"):
        call_command("import_registry", str(path), stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        "  line 3, column registration_date: '2020-13-01' is not an ISO 8601 date (YYYY-MM-DD)",
        "  line 4, column industry_code: 'I65' is not a class (4-digit) code",
    ]
    assert not Organisation.objects.exists()
    assert not ImportRun.objects.exists()
    assert not AuditEntry.objects.exists()


def test_import_registry_refuses_an_undecodable_file(tmp_path):
    path = tmp_path / "registry.csv"
    path.write_bytes(to_csv([registry_row(1)], encoding="utf-16"))

    with pytest.raises(CommandError, match="UTF-16"):
        run("import_registry", str(path))

    assert not Organisation.objects.exists()


def test_import_registry_with_a_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"

    with pytest.raises(CommandError, match=r"nope\.csv: no such file$"):
        run("import_registry", str(missing))


def test_import_registry_refuses_a_directory(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run("import_registry", str(tmp_path))


def test_import_registry_reads_stdin_given_a_dash(monkeypatch):
    data = to_csv([registry_row(1)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    out, _err = run("import_registry", "-")

    assert out == "registry: 1 rows: 1 created, 0 updated, 0 unchanged\n"
    assert ImportRun.objects.get().file_name == "stdin"


def test_import_providers_prints_the_summary_line(tmp_path):
    first, second = factories.make_organisation(), factories.make_organisation()
    path = tmp_path / "providers.csv"
    path.write_bytes(to_csv([provider_row(first, whitelisted="是"), provider_row(second, whitelisted="否")]))

    out, _err = run("import_providers", str(path))

    assert out == "providers: 2 rows: 2 created, 0 updated, 0 unchanged\n"
    assert set(Provider.objects.values_list("organisation__uscc", "whitelisted")) == {
        (first.uscc, True),
        (second.uscc, False),
    }


def test_import_providers_refuses_an_organisation_not_in_the_registry(tmp_path):
    known = factories.make_organisation()
    unknown = factories.make_organisation()
    path = tmp_path / "providers.csv"
    path.write_bytes(to_csv([provider_row(known), provider_row(unknown)]))
    unknown.delete()  # the file now names an organisation the registry does not hold
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"^1 problem\(s\) in the providers file"):
        call_command("import_providers", str(path), stdout=io.StringIO(), stderr=err)

    assert err.getvalue() == (
        f"  line 3, column uscc: {unknown.uscc} is not in the registry; import the registry first\n"
    )
    assert not Provider.objects.exists()
