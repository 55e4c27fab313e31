"""The fraud module's management commands: ``score_risk`` (with its CSV), ``train_fraud_model``
and ``evaluate_fraud`` on a small generated province."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zoneinfo

import pytest
from django.core.management import CommandError, call_command

from coupons.models import Program
from fraud.models import ModelVersion, Outcome, RiskAssessment
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.fraud.conftest import CLOSES, OPENS, TODAY


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def scored(program, provider):
    """Two applicants in ``program`` and one in another programme."""
    young = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    apps = [
        make_application(organisation=young, provider=provider, program=program, project_summary="视觉质检模型"),
        make_application(
            organisation=factories.make_organisation(), provider=provider, program=program, project_summary="燃气预测"
        ),
    ]
    other = make_program(code="FR-OTHER", opens=OPENS, closes=CLOSES)
    make_application(organisation=factories.make_organisation(), provider=provider, program=other)
    return apps


def test_score_risk_writes_a_csv_of_the_programme(scored, program, tmp_path):
    output = tmp_path / "risk.csv"

    printed = run("score_risk", "--program", program.code, "--output", str(output))

    with output.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["reference", "risk_score", "band", "reasons"]
    assert sorted(rows[1:]) == sorted(
        [
            [scored[0].reference, "20", "low", "registered 34 days before applying"],
            [scored[1].reference, "0", "low", ""],
        ]
    )
    assert "FR-2026: 2 applications scored with rules-only (2 low)" in printed
    assert RiskAssessment.objects.count() == 2  # the other programme was not scored


def test_score_risk_without_a_programme_scores_every_programme(scored):
    printed = run("score_risk")

    assert "FR-2026: 2 applications scored" in printed
    assert "FR-OTHER: 1 applications scored" in printed
    assert RiskAssessment.objects.count() == 3


def test_score_risk_refuses_an_unknown_programme(scored, tmp_path):
    output = tmp_path / "risk.csv"

    with pytest.raises(CommandError, match="no programme NOPE"):
        run("score_risk", "--program", "NOPE", "--output", str(output))

    assert not output.exists()
    assert not RiskAssessment.objects.exists()


def test_train_fraud_model_trains_then_says_unchanged_and_force_trains_again(clock, scored, model_file):
    first = run("train_fraud_model")
    clock.shift(dt.timedelta(hours=1))
    second = run("train_fraud_model")
    forced = run("train_fraud_model", "--force")

    versions = list(ModelVersion.objects.order_by("trained_at", "id").values_list("version", flat=True))
    assert first.startswith(f"trained {versions[0]}: anomaly only (too few labels")
    assert "3 applications, 0 labelled, 0 frauds" in first
    assert second.startswith(f"unchanged: {versions[0]} already fits these data")
    assert forced.startswith("trained ")
    assert len(versions) == 2
    assert ModelVersion.objects.filter(active=True).count() == 1
    assert model_file.exists()


def test_a_forced_retrain_within_the_same_second_does_not_crash(clock, scored):
    run("train_fraud_model")

    assert run("train_fraud_model", "--force").startswith("trained ")


def test_train_fraud_model_on_an_empty_platform_trains_nothing(db, model_file):
    assert run("train_fraud_model").startswith("unchanged: no model")
    assert not model_file.exists()


ROW = re.compile(r"^(model|rules_only|department_baseline)\s+(\d\.\d{3})\s+(\d\.\d{3})\s+(\d\.\d{3})$", re.M)


def test_evaluate_fraud_on_a_small_generated_province(time_machine, db, tmp_path):
    """GIVEN the demo generator's province at 300 applications (its ground truth in
    ``truth.csv``), WHEN evaluate_fraud trains on last year's outcomes and scores this year's
    applications, THEN it prints the three rows, and the model ranks better than the
    department's three signals. (No quality threshold beyond that at this scale.)"""
    time_machine.move_to(dt.datetime(2026, 11, 28, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")), tick=False)
    truth = tmp_path / "truth.csv"
    run("seed_demo", "--scale", "300", "--no-users", "--truth", str(truth))
    assert set(Program.objects.values_list("code", flat=True)) >= {"AH-2025", "AH-2026"}
    assert Outcome.objects.exists()

    printed = run("evaluate_fraud", "--truth", str(truth))

    rows = {name: tuple(map(float, numbers)) for name, *numbers in ROW.findall(printed)}
    assert set(rows) == {"model", "rules_only", "department_baseline"}, printed
    assert all(0 <= value <= 1 for numbers in rows.values() for value in numbers)
    assert rows["model"][0] > rows["department_baseline"][0], printed


def test_evaluate_fraud_without_ground_truth_is_refused(db, tmp_path):
    with pytest.raises(CommandError, match="no ground truth"):
        run("evaluate_fraud", "--truth", str(tmp_path / "missing.csv"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reference data back afterwards
def test_score_risk_in_two_processes_scores_each_programme_once_as_one_process_would(on_postgres, clock):
    from fraud.scoring import score_programs

    # Committed data: the forked processes read it on connections of their own.
    first = make_program(code="FR-A", opens=OPENS, closes=CLOSES)
    second = make_program(code="FR-B", opens=OPENS, closes=CLOSES)
    provider = factories.make_provider()
    young = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    new = make_application(organisation=young, provider=provider, program=first, project_summary="视觉质检模型")
    for program in (first, second, second):
        make_application(organisation=factories.make_organisation(), provider=provider, program=program)
    before = max(RiskAssessment.objects.values_list("pk", flat=True), default=0)  # scored on submission

    printed = run("score_risk", "--processes", "2")

    assert "FR-A: 2 applications scored" in printed
    assert "FR-B: 2 applications scored" in printed
    written = RiskAssessment.objects.filter(pk__gt=before)
    assert written.count() == 4
    in_parallel = {a.application_id: (a.score, a.features) for a in written}
    last = max(RiskAssessment.objects.values_list("pk", flat=True))
    score_programs(Program.objects.all())  # once more, in this process
    again = {a.application_id: (a.score, a.features) for a in RiskAssessment.objects.filter(pk__gt=last)}
    assert again == in_parallel
    assert again[new.pk][1]["registration_age_days"] == 34  # features of this applicant, not another's
