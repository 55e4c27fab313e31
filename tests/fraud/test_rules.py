"""The named red flags (fraud/rules.py): each fires at its threshold and not beside it, says what
it saw with the actual value in English and Chinese, and follows what staff set in ``RiskRule``
(threshold, weight, on/off). The points are capped at 100."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from fraud.features import FEATURE_NAMES
from fraud.models import RiskRule
from fraud.rules import DEFAULT_RULES, MAX_POINTS, RULES_BY_CODE, active_rules, evaluate, reasons_for, sentence
from tests import factories
from tests.coupons.conftest import make_application
from tests.fraud.conftest import TODAY, features_on

# An unremarkable applicant: old, staffed, in the digital core, using what it claimed at the
# market price. No rule fires on it.
QUIET = {name: 0.0 for name in FEATURE_NAMES} | {
    "registration_age_days": 2000.0,
    "paid_in_capital_log": 6.0,
    "insured_employees": 20.0,
    "rd_staff": 8.0,
    "rd_share": 0.4,
    "summary_similarity": 0.2,
    "work_talk": 3.0,
    "claimed_price_ratio": 1.0,
    "claim_per_employee_log": 4.0,
    "has_usage": 1.0,
    "elapsed_fraction": 0.5,
    "usage_ratio": 1.0,
    "billed_price_ratio": 1.0,
    "provider_usage_share": 1.0,
    "provider_district_share": 0.2,
}

# (rule, a value at which it fires, the nearest value at which it does not): written out by hand
# so that a changed default threshold is a deliberate change here too.
EDGES = [
    ("new_registration", 179, 180),
    ("registered_after_opening", 1, 0),
    ("nobody_insured", 2, 3),
    ("no_rd_staff", 0, 1),
    ("team_elsewhere", 1, 0),
    ("shared_address", 3, 2),
    ("shared_contact", 1, 0),
    ("shared_email", 1, 0),
    ("shared_bank", 1, 0),
    ("outside_digital_core", 1, 0.5),  # a partly-core industry is not flagged
    ("copy_paste_summary", 0.7, 0.69),
    ("subsidy_talk", 1.5, 1.49),
    ("claimed_price_high", 1.8, 1.79),
    ("usage_far_below_claim", 0.39, 0.4),
    ("flat_usage", 0.5, 0.49),
    ("deadline_bunching", 0.5, 0.49),
    ("billed_price_high", 1.8, 1.79),
    ("related_party", 1, 0),
    ("related_indirectly", 1, 0),
    ("provider_concentration", 0.6, 0.59),
    ("earlier_fraud", 1, 0),
    ("claimed_twice", 1, 0),
]


def table(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([QUIET | row for row in rows], index=range(1, len(rows) + 1))


def test_every_rule_has_an_edge_case_here():
    assert sorted(code for code, _fires, _quiet in EDGES) == sorted(rule.code for rule in DEFAULT_RULES)


@pytest.mark.django_db
def test_the_rules_are_seeded_with_their_defaults_on_migrate():
    rows = {row.code: row for row in RiskRule.objects.all()}

    assert set(rows) == set(RULES_BY_CODE)
    for code, row in rows.items():
        assert (row.enabled, row.weight, float(row.threshold)) == (
            True,
            RULES_BY_CODE[code].weight,
            RULES_BY_CODE[code].threshold,
        )


@pytest.mark.django_db
def test_a_quiet_applicant_fires_no_rule():
    fired, points = evaluate(table({}))

    assert not fired.any(axis=None)
    assert points.tolist() == [0]


@pytest.mark.django_db
@pytest.mark.parametrize(("code", "fires", "quiet"), EDGES, ids=[edge[0] for edge in EDGES])
def test_each_rule_fires_at_its_threshold_and_not_beside_it(code, fires, quiet):
    rule = RULES_BY_CODE[code]

    fired, points = evaluate(table({rule.feature: fires}, {rule.feature: quiet}))

    assert fired[code].tolist() == [True, False]
    assert fired.drop(columns=[code]).sum().sum() == 0, "only the rule under test fires"
    assert points.tolist() == [rule.weight, 0]


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["usage_far_below_claim", "flat_usage", "deadline_bunching", "billed_price_high"])
def test_usage_rules_need_metered_usage(code):
    rule = RULES_BY_CODE[code]
    fires = dict((c, f) for c, f, _q in EDGES)[code]

    fired, _points = evaluate(table({rule.feature: fires, "has_usage": 0.0}))

    assert fired[code].tolist() == [False]


@pytest.mark.django_db
def test_no_usage_at_all_is_not_usage_far_below_the_claim():
    fired, _points = evaluate(table({"usage_ratio": float("nan")}))

    assert fired["usage_far_below_claim"].tolist() == [False]


@pytest.mark.django_db
def test_points_are_capped_at_100():
    heavy = {"related_direct": 2, "shared_bank": 1, "registration_age_days": 34, "summary_similarity": 0.95}

    fired, points = evaluate(table(heavy))

    assert fired.loc[1].sum() == 4  # 60 + 20 + 20 + 25 = 125 points of weight
    assert points.tolist() == [MAX_POINTS] == [100]


# --- sentences -----------------------------------------------------------------------------


def test_sentences_carry_the_actual_value_in_english_and_chinese():
    new = RULES_BY_CODE["new_registration"]
    copied = RULES_BY_CODE["copy_paste_summary"]
    below = RULES_BY_CODE["usage_far_below_claim"]

    assert sentence(new, 34.0, "en") == "registered 34 days before applying"
    assert sentence(new, 34.0, "zh-hans") == "申请前 34 天才注册"
    assert sentence(copied, 0.93, "en") == "project summary 93% identical to another applicant's"
    assert sentence(copied, 0.93, "zh") == "项目简介与其他申请人的相似度达 93%"
    assert sentence(below, 0.2, "en") == "metered usage is 20% of the claim to date"


@pytest.mark.django_db
def test_the_reasons_of_a_real_applicant_say_what_was_seen_heaviest_first(program, provider):
    """GIVEN a company registered 34 days before applying that shares its bank account with its
    provider, THEN its reasons name both with their values, the related party first."""
    org = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34), bank_account="6222000077778888")
    provider.organisation.bank_account = "6222000077778888"
    provider.organisation.save()
    application = make_application(organisation=org, provider=provider, program=program)
    features = features_on(program)
    rules = active_rules()
    fired, _points = evaluate(features, rules)

    reasons = reasons_for(features.loc[application.pk], fired.loc[application.pk], rules)

    assert [r["code"] for r in reasons] == ["related_party", "new_registration", "shared_bank"]
    assert reasons[0]["en"].startswith("shares 1 identity attributes")
    assert reasons[1] == {
        "code": "new_registration",
        "weight": 20,
        "en": "registered 34 days before applying",
        "zh": "申请前 34 天才注册",
    }
    assert reasons[2]["zh"] == "与另外 1 家单位共用银行账户"


# --- staff tune the rules --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_lower_threshold_set_by_staff_stops_a_rule_firing():
    young = table({"registration_age_days": 34})
    assert evaluate(young)[0]["new_registration"].tolist() == [True]

    RiskRule.objects.filter(code="new_registration").update(threshold=Decimal("30"))

    assert evaluate(young)[0]["new_registration"].tolist() == [False]
    assert evaluate(table({"registration_age_days": 29}))[0]["new_registration"].tolist() == [True]


@pytest.mark.django_db
def test_a_weight_set_by_staff_changes_the_points():
    young = table({"registration_age_days": 34})
    RiskRule.objects.filter(code="new_registration").update(weight=45)

    assert evaluate(young)[1].tolist() == [45]


@pytest.mark.django_db
def test_a_rule_switched_off_by_staff_does_not_fire():
    related = table({"related_direct": 1})
    RiskRule.objects.filter(code="related_party").update(enabled=False)

    fired, points = evaluate(related)

    assert "related_party" not in fired.columns
    assert points.tolist() == [0]
    assert "related_party" not in [a.rule.code for a in active_rules()]


@pytest.mark.django_db
def test_a_rule_without_a_row_runs_with_its_defaults():
    RiskRule.objects.filter(code="shared_bank").delete()

    fired, points = evaluate(table({"shared_bank": 1}))

    assert fired["shared_bank"].tolist() == [True]
    assert points.tolist() == [RULES_BY_CODE["shared_bank"].weight]
