"""The Celery tasks and receivers of the fraud module (fraud/tasks.py, fraud/receivers.py), run
eagerly: each is idempotent in effect when run twice; a submission is scored after its commit
(and not when it rolls back); usage batches schedule one debounced rescore."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from coupons.models import Application
from coupons.services.applications import application_submit
from fraud import tasks
from fraud.model import FraudModel
from fraud.models import ModelVersion, Outcome, RiskAssessment
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.fraud.conftest import CLOSES, NOW, OPENS, TODAY
from tests.usage.conftest import ingest, record


@pytest.fixture
def young(program, provider):
    org = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    return make_application(organisation=org, provider=provider, program=program, project_summary="视觉质检模型训练")


@pytest.fixture
def old(program, provider):
    org = factories.make_organisation()
    return make_application(organisation=org, provider=provider, program=program, project_summary="燃气管网泄漏预测")


def current(*applications) -> list[tuple]:
    return list(
        Application.objects.filter(pk__in=[a.pk for a in applications])
        .order_by("pk")
        .values_list("pk", "risk_score", "risk_band")
    )


def assessed() -> list[int]:
    return sorted(RiskAssessment.objects.values_list("application_id", flat=True))


# --- each task twice -------------------------------------------------------------------------


def test_score_application_twice_adds_an_assessment_and_keeps_the_score(young, old):
    assert tasks.score_application.delay(young.pk).get() == "scored 1"
    after_first = current(young, old)
    assert tasks.score_application.delay(young.pk).get() == "scored 1"

    assert current(young, old) == after_first == [(young.pk, 20, "low"), (old.pk, None, "")]
    assert assessed() == [young.pk, young.pk]


def test_score_chunk_twice(program, young, old):
    assert tasks.score_chunk.delay(program.pk, [young.pk, old.pk]).get() == "FR-2026: scored 2"
    after_first = current(young, old)
    assert tasks.score_chunk.delay(program.pk, [young.pk, old.pk]).get() == "FR-2026: scored 2"

    assert current(young, old) == after_first == [(young.pk, 20, "low"), (old.pk, 0, "low")]
    assert assessed() == sorted([young.pk, old.pk] * 2)


def test_rescore_enterprises_twice_rescores_their_open_applications_only(clock, young, old, provider):
    later = make_program(code="FR-LATER", opens=OPENS, closes=CLOSES)
    draft = make_application(
        organisation=young.organisation, provider=provider, program=later, submit=False, claimed_amount=300000
    )

    assert tasks.rescore_enterprises.delay([young.organisation_id]).get() == "rescored 1"
    after_first = current(young, old, draft)
    assert tasks.rescore_enterprises.delay([young.organisation_id]).get() == "rescored 1"

    assert (
        current(young, old, draft) == after_first == [(young.pk, 20, "low"), (old.pk, None, ""), (draft.pk, None, "")]
    )
    assert assessed() == [young.pk, young.pk]


def test_rescore_all_twice_fans_out_over_every_programme(clock, young, old, provider):
    other = make_program(code="FR-OTHER", opens=OPENS, closes=CLOSES)
    elsewhere = make_application(organisation=factories.make_organisation(), provider=provider, program=other)
    make_program(code="FR-NOBODY", opens=OPENS, closes=CLOSES)  # nothing to score: no chunk

    assert tasks.rescore_all.delay().get() == "queued 2 chunks"
    after_first = current(young, old, elsewhere)
    assert tasks.rescore_all.delay().get() == "queued 2 chunks"

    assert current(young, old, elsewhere) == after_first
    assert [score for _pk, score, _band in after_first] == [20, 0, 0]
    assert assessed() == sorted([young.pk, old.pk, elsewhere.pk] * 2)


def test_rescore_all_cuts_a_programme_into_chunks(monkeypatch, young, old, program):
    monkeypatch.setattr(tasks, "RESCORE_CHUNK", 1)

    assert tasks.rescore_all.delay().get() == "queued 2 chunks"
    assert assessed() == sorted([young.pk, old.pk])


def test_retrain_if_due_trains_a_first_model_without_labels_and_then_is_not_due(young, old, model_file):
    """GIVEN no model and no outcomes WHEN the beat task runs twice THEN the first run trains the
    anomaly model (it works from day one, without labels) and rescored everything with it; the
    second finds nothing due."""
    first = tasks.retrain_if_due.delay().get()
    second = tasks.retrain_if_due.delay().get()

    version = ModelVersion.objects.get(active=True).version
    assert first == f"trained {version}"
    assert second == "not due"
    assert ModelVersion.objects.count() == 1
    assert not ModelVersion.objects.get().supervised
    assert FraudModel.load().version == version
    assert set(RiskAssessment.objects.values_list("model_version", flat=True)) == {version}
    assert assessed() == sorted([young.pk, old.pk])


def test_retrain_if_due_says_unchanged_when_due_but_the_data_are_those_of_the_model(young, old):
    Outcome.objects.create(application=old, verdict=Outcome.Verdict.CLEAN, source=Outcome.Source.IMPORT)
    assert tasks.retrain_if_due.delay().get().startswith("trained ")
    ModelVersion.objects.update(active=False)  # due again: no version in use

    assert tasks.retrain_if_due.delay().get() == "unchanged"
    assert ModelVersion.objects.count() == 1


def test_retrain_if_due_retrains_when_the_model_file_cannot_be_used(young, old, model_file):
    Outcome.objects.create(application=old, verdict=Outcome.Verdict.CLEAN, source=Outcome.Source.IMPORT)
    assert tasks.retrain_if_due.delay().get().startswith("trained ")
    model_file.write_bytes(b"CPFM" + b"\0" * 32 + b"saved by another scikit-learn")  # unusable: load() is None

    assert tasks.retrain_if_due.delay().get().startswith("trained ")
    assert FraudModel.load() is not None


# --- what triggers scoring -----------------------------------------------------------------


def test_a_submission_is_scored_after_its_commit(program, provider, django_capture_on_commit_callbacks):
    org = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    draft = make_application(organisation=org, provider=provider, program=program, submit=False)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            application_submit(application=draft, actor=None)
        assert not RiskAssessment.objects.exists(), "nothing is scored before the commit"

    assert len(callbacks) == 1
    assert assessed() == [draft.pk]
    assert current(draft) == [(draft.pk, 20, "low")]


def test_a_submission_that_rolls_back_is_not_scored(program, provider, django_capture_on_commit_callbacks):
    draft = make_application(
        organisation=factories.make_organisation(), provider=provider, program=program, submit=False
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            application_submit(application=draft, actor=None)
            raise RuntimeError("the request failed after the submission")

    assert callbacks == []
    assert not RiskAssessment.objects.exists()
    assert Application.objects.get(pk=draft.pk).status == Application.Status.DRAFT


@pytest.fixture
def queued(monkeypatch):
    """The calls that would queue ``rescore_enterprises``, instead of queueing it."""
    calls = []
    monkeypatch.setattr(tasks.rescore_enterprises, "apply_async", lambda *a, **kw: calls.append(kw))
    return calls


def _batch(provider, enterprise, record_id, django_capture_on_commit_callbacks):
    start = NOW - dt.timedelta(hours=12)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(provider, [record(record_id, enterprise=enterprise, start=start, hours=10)])


def test_two_usage_batches_within_the_debounce_window_queue_one_rescore(
    clock, program, provider, queued, django_capture_on_commit_callbacks
):
    first, second, third = (factories.make_organisation() for _ in range(3))

    _batch(provider, first, "u-1", django_capture_on_commit_callbacks)
    clock.shift(dt.timedelta(seconds=30))
    _batch(provider, second, "u-2", django_capture_on_commit_callbacks)

    assert queued == [{"args": [[first.pk]], "countdown": tasks.DEBOUNCE_SECONDS}]

    clock.shift(dt.timedelta(seconds=2 * tasks.DEBOUNCE_SECONDS + 1))  # the pending mark has expired
    _batch(provider, third, "u-3", django_capture_on_commit_callbacks)

    assert len(queued) == 2
    assert queued[1]["args"] == [[third.pk]]


def test_the_queued_rescore_also_takes_the_enterprises_of_later_batches(
    program, provider, queued, django_capture_on_commit_callbacks
):
    first, second = (factories.make_organisation() for _ in range(2))
    apps = [make_application(organisation=org, provider=provider, program=program) for org in (first, second)]
    _batch(provider, first, "u-1", django_capture_on_commit_callbacks)
    _batch(provider, second, "u-2", django_capture_on_commit_callbacks)
    assert len(queued) == 1

    result = tasks.rescore_enterprises(*queued[0]["args"])  # the queued task runs a minute later

    assert result == "rescored 2"
    assert assessed() == sorted(a.pk for a in apps)
    # Nothing is pending any more: the next batch queues a new rescore.
    _batch(provider, first, "u-3", django_capture_on_commit_callbacks)
    assert len(queued) == 2


def test_a_usage_batch_rescores_the_enterprises_applications(program, provider, django_capture_on_commit_callbacks):
    """Unpatched and eager: the usage of the batch is in the new assessment."""
    org = factories.make_organisation()
    application = make_application(organisation=org, provider=provider, program=program)

    _batch(provider, org, "u-1", django_capture_on_commit_callbacks)

    assessment = RiskAssessment.objects.get(application=application)
    assert assessment.features["has_usage"] == 1
