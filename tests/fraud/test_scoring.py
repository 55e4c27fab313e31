"""Risk scoring (fraud/scoring.py): one assessment per application with its score, band, reasons
in both languages, feature values and model version; the applications carry the current score
and band (PostgreSQL writes them with UPDATE … FROM VALUES, SQLite with bulk_update: run the
suite on both); the band gates four-eyes review and the review page shows the reasons.

Three applicants, scored with the rules only (no model file):
  clean    nothing remarkable                                       0 points  → low
  young    registered 34 days before applying                      20 points  → medium (from 20)
  related  shares its bank account with its provider (60 + 20)     80 points  → high (from 70)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coupons.models import Application, Coupon
from coupons.services.review import review_approve
from fraud.features import FEATURE_NAMES
from fraud.models import RiskAssessment
from fraud.scoring import RULES_ONLY, combine, score_applications, score_program
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.fraud.conftest import CLOSES, OPENS, TODAY

BANK = "6222000055556666"


@pytest.fixture
def banded(clock, db):
    return make_program(code="FR-BANDS", opens=OPENS, closes=CLOSES, risk_medium_from=20, risk_high_from=70)


@pytest.fixture
def applicants(banded):
    provider = factories.make_provider(bank_account=BANK)
    clean = factories.make_organisation()
    young = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    related = factories.make_organisation(bank_account=BANK)
    summaries = {
        "clean": "训练面向工业质检的视觉大模型，使用自有标注数据集。",
        "young": "为城市燃气管网开发泄漏预测算法，利用传感器时序数据。",
        "related": "微调中文法律问答模型，服务律所客户的合同审查。",
    }
    return {
        name: make_application(organisation=org, provider=provider, program=banded, project_summary=summaries[name])
        for name, org in (("clean", clean), ("young", young), ("related", related))
    }


def latest(application) -> RiskAssessment:
    return RiskAssessment.objects.filter(application=application).order_by("-created_at", "-id").first()


def test_score_program_writes_one_assessment_per_application(banded, applicants):
    result = score_program(banded, today=TODAY)

    assert (result.program, result.scored, result.model_version) == ("FR-BANDS", 3, RULES_ONLY)
    assert result.bands == {"low": 1, "medium": 1, "high": 1}
    assert RiskAssessment.objects.count() == 3
    expected = {"clean": (0, "low"), "young": (20, "medium"), "related": (80, "high")}
    for name, application in applicants.items():
        assessment = latest(application)
        assert (assessment.score, assessment.band) == expected[name], name
        assert assessment.rule_points == assessment.score
        assert assessment.model_version == "rules-only"
        assert set(assessment.features) == set(FEATURE_NAMES)


def test_the_band_follows_the_programmes_thresholds(clock, applicants, banded):
    """The same 20 points are medium from 20 and low from the default 40."""
    score_program(banded, today=TODAY)
    assert latest(applicants["young"]).band == "medium"

    banded.risk_medium_from = 40
    banded.save()
    score_program(banded, today=TODAY)

    assert latest(applicants["young"]).band == "low"
    assert latest(applicants["related"]).band == "high"


def test_the_assessment_keeps_its_reasons_in_both_languages_and_the_feature_values(banded, applicants):
    score_program(banded, today=TODAY)

    young, related = latest(applicants["young"]), latest(applicants["related"])

    assert young.reasons == [
        {
            "code": "new_registration",
            "weight": 20,
            "en": "registered 34 days before applying",
            "zh": "申请前 34 天才注册",
        }
    ]
    assert young.features["registration_age_days"] == 34
    assert young.features["usage_ratio"] is None  # no usage: missing, not zero
    assert [r["code"] for r in related.reasons] == ["related_party", "shared_bank"]
    assert all(r["en"] and r["zh"] for r in related.reasons)
    assert related.features["related_direct"] == 1
    assert latest(applicants["clean"]).reasons == []


def test_the_applications_carry_the_current_score_and_band(banded, applicants):
    score_program(banded, today=TODAY)

    current = {
        pk: (score, band) for pk, score, band in Application.objects.values_list("pk", "risk_score", "risk_band")
    }
    assert current == {
        applicants["clean"].pk: (0, "low"),
        applicants["young"].pk: (20, "medium"),
        applicants["related"].pk: (80, "high"),
    }


def test_a_rescore_replaces_the_current_score_and_keeps_the_history(banded, applicants):
    score_program(banded, today=TODAY)
    provider = applicants["related"].provider.organisation
    provider.bank_account = "6222000000000001"  # the link is gone (a registry correction)
    provider.save()

    score_program(banded, today=TODAY)

    related = Application.objects.get(pk=applicants["related"].pk)
    assert (related.risk_score, related.risk_band) == (0, "low")
    assert list(related.assessments.order_by("id").values_list("score", flat=True)) == [80, 0]
    assert latest(related).score == 0
    young = Application.objects.get(pk=applicants["young"].pk)
    assert (young.risk_score, young.risk_band) == (20, "medium")


def test_score_applications_writes_only_the_applications_asked_for(banded, applicants):
    results = score_applications([applicants["related"].pk])

    assert [(r.program, r.scored) for r in results] == [("FR-BANDS", 1)]
    assert list(RiskAssessment.objects.values_list("application_id", flat=True)) == [applicants["related"].pk]
    scores = dict(Application.objects.values_list("pk", "risk_score"))
    assert scores == {applicants["related"].pk: 80, applicants["young"].pk: None, applicants["clean"].pk: None}


def test_score_applications_goes_programme_by_programme(banded, applicants, provider):
    other = make_program(code="FR-OTHER", opens=OPENS, closes=CLOSES)
    elsewhere = make_application(organisation=factories.make_organisation(), provider=provider, program=other)

    results = score_applications([applicants["young"].pk, elsewhere.pk])

    assert sorted((r.program, r.scored) for r in results) == [("FR-BANDS", 1), ("FR-OTHER", 1)]
    assert RiskAssessment.objects.count() == 2


def test_an_empty_programme_scores_nothing(clock, db):
    empty = make_program(code="FR-EMPTY", opens=OPENS, closes=CLOSES)

    result = score_program(empty, today=TODAY)

    assert result.scored == 0
    assert not RiskAssessment.objects.exists()


def test_scoring_a_programme_takes_a_fixed_number_of_queries(banded, applicants, provider):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            score_program(banded, today=TODAY)
        return len(captured)

    with_3 = queries()
    for _ in range(27):
        make_application(organisation=factories.make_organisation(), provider=provider, program=banded)
    with_30 = queries()

    assert with_30 == with_3
    assert RiskAssessment.objects.count() == 3 + 30


@pytest.mark.parametrize(
    ("points", "anomaly", "probability", "score"),
    [
        (0, None, None, 0),
        (80, None, None, 80),
        (100, 0.0, 0.0, 100),
        (20, 0.5, None, 36),  # 1 - 0.8 × (1 - 0.4 × 0.5)
        (0, None, 1.0, 90),  # the probability alone reaches 90
        (20, 1.0, 0.5, 65),  # 1 - 0.8 × (1 - 0.9 × 0.5) × (1 - 0.2 × 1.0) = 0.648
    ],
)
def test_combine_adds_the_layers_as_a_noisy_or(points, anomaly, probability, score):
    def wrap(value):
        return None if value is None else [value]

    assert combine([points], wrap(anomaly), wrap(probability)).tolist() == [score]


# --- what the score does to review ------------------------------------------------------------


def test_a_high_band_needs_a_second_reviewer_and_a_low_one_does_not(banded, applicants, reviewer):
    score_program(banded, today=TODAY)

    high = review_approve(application=applicants["related"], reviewer=reviewer, amount=Decimal("10000.00"))
    low = review_approve(application=applicants["clean"], reviewer=reviewer, amount=Decimal("10000.00"))

    assert high.awaiting_second_review is True and high.coupon is None
    assert low.awaiting_second_review is False and low.coupon is not None
    assert not Coupon.objects.filter(application=applicants["related"]).exists()


def test_the_review_page_shows_the_score_and_the_reasons(client, reviewer, banded, applicants):
    score_program(banded, today=TODAY)
    client.force_login(reviewer)
    url = reverse("admin:coupons_application_change", args=[applicants["young"].pk])

    english = client.get(url).content.decode()
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "20 / 100" in english
    assert "registered 34 days before applying" in english
    assert "rules-only" in english
    assert "申请前 34 天才注册" in chinese
    assert "registered 34 days before applying" not in chinese


def test_feature_values_are_written_as_one_json_object_per_application():
    import json

    import numpy as np
    import pandas as pd

    from fraud.scoring import _feature_objects

    table = pd.DataFrame(
        [[1 / 3] * len(FEATURE_NAMES), [np.nan] * len(FEATURE_NAMES)], columns=FEATURE_NAMES, index=[7, 8]
    )
    table.iloc[1, 0] = np.inf
    table.iloc[1, 1] = 34

    first, second = (json.loads(text) for text in _feature_objects(table))

    assert list(first) == FEATURE_NAMES
    assert set(first.values()) == {0.3333}
    assert second[FEATURE_NAMES[0]] is None  # infinite
    assert second[FEATURE_NAMES[1]] == 34
    assert second[FEATURE_NAMES[2]] is None  # missing
    assert _feature_objects(table.iloc[:0]) == []
