"""The feature table (fraud/features.py), one feature at a time on hand-made cases: each case
beside a control that differs only in what the feature looks at, so that a feature that always
returns the same number fails."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from coupons.models import Application, ReferencePrice
from fraud.features import FEATURE_NAMES, _summary_similarity, build_features, describe
from fraud.models import Outcome, SummarySignature
from tests import factories
from tests.coupons.conftest import make_application, make_program, set_status
from tests.fraud.conftest import CLOSES, OPENS, TODAY, add_usage, at, features_on

COPIED = (
    "本项目基于国产算力平台训练面向工业质检的视觉大模型，使用企业自有的三十万张标注缺陷图像，"
    "目标是将产线漏检率降低到千分之一以下，并在年内部署到三条产线。"
)
# The same text with one character changed (true trigram Jaccard 0.92): what a copy-paste
# applicant sends.
COPIED_AGAIN = COPIED.replace("三条", "五条")
UNRELATED = "我们为城市燃气管网开发泄漏预测算法，利用传感器时序数据和图神经网络，预测未来七天的高风险管段。"


def apply(organisation, provider, program, **overrides):
    return make_application(organisation=organisation, provider=provider, program=program, **overrides)


# --- shared identities and related parties -------------------------------------------------


def test_two_organisations_with_one_bank_account_each_count_the_other(program, provider):
    first = factories.make_organisation(bank_account="6222000011112222")
    second = factories.make_organisation(bank_account="6222 0000 1111 2222")  # the same account, spaced
    alone = factories.make_organisation()
    apps = [apply(org, provider, program) for org in (first, second, alone)]

    table = features_on(program)

    assert table.loc[apps[0].pk, "shared_bank"] == 1
    assert table.loc[apps[1].pk, "shared_bank"] == 1
    assert table.loc[apps[2].pk, "shared_bank"] == 0


def test_each_shared_attribute_counts_the_other_organisations_using_it(program, provider):
    address = "合肥市蜀山区某创业园 8 楼"
    at_the_address = [factories.make_organisation(registered_address=address) for _ in range(4)]
    phone = factories.make_organisation(contact_phone="0551-66668888")
    factories.make_organisation(contact_phone="0551-6666 8888")  # spaces do not hide a shared phone
    representative = factories.make_organisation(legal_representative="王五")
    factories.make_organisation(legal_representative="王五")
    email = factories.make_organisation(contact_email="Boss@Example.cn")
    factories.make_organisation(contact_email="boss@example.cn")  # nor does case a shared e-mail
    apps = {org.pk: apply(org, provider, program).pk for org in (at_the_address[0], phone, representative, email)}

    table = features_on(program)

    assert table.loc[apps[at_the_address[0].pk], "shared_address"] == 3
    assert table.loc[apps[phone.pk], "shared_phone"] == 1
    assert table.loc[apps[representative.pk], "shared_legal_rep"] == 1
    assert table.loc[apps[email.pk], "shared_email"] == 1
    assert table.loc[apps[phone.pk], ["shared_address", "shared_email", "shared_legal_rep", "shared_bank"]].sum() == 0


def test_an_applicant_sharing_bank_account_and_phone_with_its_provider_is_directly_related(program):
    provider = factories.make_provider(bank_account="6222999900001111", contact_phone="13912345678")
    related = factories.make_organisation(bank_account="6222999900001111", contact_phone="13912345678")
    stranger = factories.make_organisation()
    related_app, stranger_app = apply(related, provider, program), apply(stranger, provider, program)

    table = features_on(program)

    assert table.loc[related_app.pk, "related_direct"] == 2
    assert table.loc[related_app.pk, "related_indirect"] == 0  # direct links are not counted twice
    assert table.loc[stranger_app.pk, "related_direct"] == 0
    assert table.loc[stranger_app.pk, "related_indirect"] == 0


def test_an_applicant_linked_to_its_provider_through_another_organisation_is_indirectly_related(program):
    provider = factories.make_provider(registered_address="芜湖市鸠江区某大厦 1201")
    go_between = factories.make_organisation(registered_address="芜湖市鸠江区某大厦 1201", contact_phone="13800009999")
    linked = factories.make_organisation(contact_phone="13800009999")
    stranger = factories.make_organisation()
    linked_app, stranger_app = apply(linked, provider, program), apply(stranger, provider, program)
    assert go_between.pk

    table = features_on(program)

    assert table.loc[linked_app.pk, "related_direct"] == 0
    assert table.loc[linked_app.pk, "related_indirect"] == 1
    assert table.loc[stranger_app.pk, "related_indirect"] == 0


def test_an_address_shared_by_a_whole_business_park_does_not_link_its_tenants(program):
    """GIVEN more than SHARE_CAP (50) organisations registered at one park address, among them
    the provider and the applicant, THEN the address alone does not relate them."""
    park = "合肥市高新区创新产业园 A 座"
    provider = factories.make_provider(registered_address=park)
    tenants = [factories.make_organisation(registered_address=park) for _ in range(50)]
    application = apply(tenants[0], provider, program)

    row = features_on(program).loc[application.pk]

    assert row["shared_address"] == 50
    assert row["related_indirect"] == 0


def test_a_park_address_shared_with_the_provider_is_not_a_direct_link(program):
    park = "合肥市高新区创新产业园 A 座"
    provider = factories.make_provider(registered_address=park)
    tenants = [factories.make_organisation(registered_address=park) for _ in range(50)]
    application = apply(tenants[0], provider, program)

    assert features_on(program).loc[application.pk, "related_direct"] == 0


# --- the registry record -------------------------------------------------------------------


def test_registration_age_is_counted_to_the_day_of_application(program, provider):
    fresh = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=34))
    after_opening = factories.make_organisation(registration_date=OPENS + dt.timedelta(days=4))
    old = factories.make_organisation(registration_date=dt.date(2015, 3, 1))
    apps = [apply(org, provider, program) for org in (fresh, after_opening, old)]

    table = features_on(program, today=TODAY + dt.timedelta(days=40))  # later scoring does not age them

    assert list(table.loc[[a.pk for a in apps], "registration_age_days"]) == [
        34,
        10,
        (TODAY - old.registration_date).days,
    ]
    assert list(table.loc[[a.pk for a in apps], "registered_after_opening"]) == [0, 1, 0]


def test_a_shell_companys_capital_and_staff(program, provider):
    shell = factories.make_organisation(paid_in_capital=Decimal("0.00"), social_insured_employees=1, rd_staff=0)
    real = factories.make_organisation(paid_in_capital=Decimal("999999.00"), social_insured_employees=20, rd_staff=8)
    shell_app, real_app = apply(shell, provider, program), apply(real, provider, program)

    table = features_on(program)

    assert table.loc[
        shell_app.pk, ["paid_in_zero", "paid_in_capital_log", "insured_employees", "rd_share"]
    ].tolist() == [
        1,
        0,
        1,
        0,
    ]
    assert table.loc[real_app.pk, "paid_in_zero"] == 0
    assert table.loc[real_app.pk, "paid_in_capital_log"] == pytest.approx(6.0)
    assert table.loc[real_app.pk, "rd_share"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("region", "city", "elsewhere"),
    [
        ("340100", "深圳", 1),
        ("340100", "深圳市", 1),
        ("340100", "合肥", 0),
        ("340200", "合肥市", 0),  # another city of the same province
        ("340100", "", 0),  # unknown: not held against the applicant
        ("110108", "深圳", 0),  # a province whose cities are not listed
    ],
)
def test_team_elsewhere_compares_the_core_team_city_with_the_registered_province(
    program, provider, region, city, elsewhere
):
    org = factories.make_organisation(region_code=region, core_team_city=city, uscc=factories.make_uscc(region=region))
    application = apply(org, provider, program)

    assert features_on(program).loc[application.pk, "team_elsewhere"] == elsewhere


@pytest.mark.parametrize(("industry", "outside"), [("H6210", 1.0), ("I6513", 0.0), ("C3562", 0.5)])
def test_an_industry_outside_the_digital_economy_core_is_flagged_and_a_partly_core_one_half(
    program, provider, industry, outside
):
    application = apply(factories.make_organisation(industry_id=industry), provider, program)

    assert features_on(program).loc[application.pk, "outside_digital_core"] == outside


# --- the project summary -------------------------------------------------------------------


def test_near_identical_summaries_of_two_organisations_are_similar_and_unrelated_ones_are_not(program, provider):
    copier, original, other = (factories.make_organisation() for _ in range(3))
    copy_app = apply(copier, provider, program, project_summary=COPIED)
    original_app = apply(original, provider, program, project_summary=COPIED_AGAIN)
    other_app = apply(other, provider, program, project_summary=UNRELATED)

    table = features_on(program)

    assert table.loc[copy_app.pk, "summary_similarity"] >= 0.8
    assert table.loc[original_app.pk, "summary_similarity"] >= 0.8
    assert table.loc[other_app.pk, "summary_similarity"] < 0.5


def test_one_organisations_own_similar_summaries_do_not_count(program):
    org, other = factories.make_organisation(), factories.make_organisation()
    first = apply(org, factories.make_provider(), program, project_summary=COPIED)
    second = apply(org, factories.make_provider(), program, project_summary=COPIED_AGAIN)
    apply(other, factories.make_provider(), program, project_summary=UNRELATED)

    table = features_on(program)

    assert table.loc[first.pk, "summary_similarity"] < 0.5
    assert table.loc[second.pk, "summary_similarity"] < 0.5


def test_summary_similarity_estimates_the_jaccard_similarity_of_character_trigrams():
    texts = [COPIED, COPIED, COPIED_AGAIN, UNRELATED, ""]
    similarity = _summary_similarity(texts, owners=[1, 2, 3, 4, 5])

    assert similarity[0] == similarity[1] == 1.0  # identical texts of two owners
    assert 0.7 <= similarity[2] < 1.0
    assert similarity[3] < 0.5
    assert similarity[4] == 0.0  # an empty summary matches nothing
    assert list(_summary_similarity([COPIED], owners=[1])) == [0.0]


def test_subsidy_talk_counts_subsidy_terms_per_100_characters(program, provider):
    talker = apply(factories.make_organisation(), provider, program, project_summary="算力券补贴")
    worker = apply(factories.make_organisation(), provider, program)  # the default, about the work

    table = features_on(program)

    assert table.loc[talker.pk, "subsidy_talk"] == pytest.approx(40.0)  # 2 terms in 5 characters
    assert table.loc[worker.pk, "subsidy_talk"] == 0
    assert table.loc[worker.pk, "work_talk"] > 0


# --- metered usage -------------------------------------------------------------------------


def test_flat_24_hour_records_make_flat_share_one_and_irregular_jobs_zero(program, provider):
    flat, irregular = factories.make_organisation(), factories.make_organisation()
    flat_app, irregular_app = apply(flat, provider, program), apply(irregular, provider, program)
    add_usage(provider, flat, [(at(TODAY + dt.timedelta(days=d), 0), 24, 8, "2000.00") for d in range(1, 8)])
    add_usage(
        provider,
        irregular,
        [
            (at(TODAY + dt.timedelta(days=1), 9), 3, 8, "245.30"),
            (at(TODAY + dt.timedelta(days=2), 14), 7.5, 4, "301.10"),
        ],
    )

    table = features_on(program, today=TODAY + dt.timedelta(days=10))

    assert table.loc[flat_app.pk, "flat_share"] == 1
    assert table.loc[flat_app.pk, "round_amount_share"] == 1
    assert table.loc[irregular_app.pk, "flat_share"] == 0
    assert table.loc[irregular_app.pk, "round_amount_share"] == 0


def test_night_and_weekend_shares_count_job_starts_in_local_time(program, provider):
    org = factories.make_organisation()
    application = apply(org, provider, program)
    saturday = dt.date(2026, 6, 20)
    add_usage(
        provider,
        org,
        [
            (at(saturday, 2), 3, 1, "31.00"),  # Saturday 02:00 in Shanghai: Friday 18:00 UTC
            (at(saturday + dt.timedelta(days=2), 23), 3, 1, "31.00"),  # Monday 23:00: Monday 15:00 UTC
            (at(saturday + dt.timedelta(days=3), 10), 3, 1, "31.00"),
            (at(saturday + dt.timedelta(days=4), 5), 3, 1, "31.00"),  # Thursday 05:00
        ],
    )

    row = features_on(program, today=TODAY + dt.timedelta(days=10)).loc[application.pk]

    assert row["night_share"] == pytest.approx(0.5)
    assert row["weekend_share"] == pytest.approx(0.25)


def test_billed_price_is_compared_with_the_reference_price_of_the_card(program, provider, a100):
    ReferencePrice.objects.create(accelerator=a100, valid_from=dt.date(2026, 1, 1), price_per_card_hour=Decimal("10"))
    dear, fair = factories.make_organisation(), factories.make_organisation()
    dear_app = apply(dear, provider, program, claimed_card_hours=Decimal("1000"), claimed_amount=Decimal("30000"))
    fair_app = apply(fair, provider, program)  # claims 100,000 yuan for 10,000 card-hours: 10 a card-hour
    add_usage(provider, dear, [(at(TODAY + dt.timedelta(days=1)), 10, 8, "2400.00")])  # 30 a card-hour
    add_usage(provider, fair, [(at(TODAY + dt.timedelta(days=1)), 10, 8, "800.00")])

    table = features_on(program, today=TODAY + dt.timedelta(days=5))

    assert table.loc[dear_app.pk, "billed_price_ratio"] == pytest.approx(3.0)
    assert table.loc[dear_app.pk, "claimed_price_ratio"] == pytest.approx(3.0)
    assert table.loc[fair_app.pk, "billed_price_ratio"] == pytest.approx(1.0)
    assert table.loc[fair_app.pk, "claimed_price_ratio"] == pytest.approx(1.0)


def test_without_a_reference_price_the_median_of_the_providers_prices_is_the_reference(program):
    cheap, middle, dear = factories.make_provider(), factories.make_provider(), factories.make_provider()
    customers = [factories.make_organisation() for _ in range(3)]
    applicant = apply(customers[2], dear, program, claimed_card_hours=Decimal("1000"), claimed_amount=Decimal("20000"))
    start = at(TODAY + dt.timedelta(days=1))
    add_usage(cheap, customers[0], [(start, 10, 8, "800.00")])  # 10 a card-hour
    add_usage(middle, customers[1], [(start, 10, 8, "1600.00")])  # 20
    add_usage(dear, customers[2], [(start, 10, 8, "4800.00")])  # 60

    row = features_on(program, today=TODAY + dt.timedelta(days=5)).loc[applicant.pk]

    assert row["billed_price_ratio"] == pytest.approx(3.0)
    assert row["claimed_price_ratio"] == pytest.approx(1.0)  # 20 a card-hour claimed


def test_free_usage_does_not_make_the_reference_price_zero(program, provider):
    org = factories.make_organisation()
    application = apply(org, provider, program)
    add_usage(provider, org, [(at(TODAY + dt.timedelta(days=1)), 10, 8, "0.00")])  # a free trial

    row = features_on(program, today=TODAY + dt.timedelta(days=5)).loc[application.pk]

    assert np.isfinite(row["claimed_price_ratio"])
    assert np.isfinite(row["billed_price_ratio"])


def test_without_any_price_the_claimed_price_is_neutral(program, provider):
    application = apply(factories.make_organisation(), provider, program)

    row = features_on(program).loc[application.pk]

    assert row["claimed_price_ratio"] == 1.0
    assert row["billed_price_ratio"] == 1.0
    assert row["has_usage"] == 0
    assert np.isnan(row["usage_ratio"])  # no usage is not "far below the claim"


def test_usage_ratio_compares_metered_hours_with_the_claim_pro_rated_to_today(clock, provider):
    """GIVEN a claim of 10,000 card-hours submitted 100 days before the close and 1,000 metered
    card-hours, THEN after 25 days the ratio is 1,000 / 2,500 and after 50 days 1,000 / 5,000."""
    program = make_program(code="FR-100", opens=OPENS, closes=TODAY + dt.timedelta(days=100))
    org = factories.make_organisation()
    application = apply(org, provider, program)
    add_usage(provider, org, [(at(TODAY + dt.timedelta(days=d)), 12.5, 8, "1000.00") for d in range(1, 11)])

    after_25 = features_on(program, today=TODAY + dt.timedelta(days=25)).loc[application.pk]
    after_50 = features_on(program, today=TODAY + dt.timedelta(days=50)).loc[application.pk]

    assert after_25["has_usage"] == 1
    assert after_25["elapsed_fraction"] == pytest.approx(0.25)
    assert after_25["usage_ratio"] == pytest.approx(0.4)
    assert after_50["elapsed_fraction"] == pytest.approx(0.5)
    assert after_50["usage_ratio"] == pytest.approx(0.2)


def test_usage_at_another_provider_lowers_the_provider_usage_share(program, provider):
    org = factories.make_organisation()
    application = apply(org, provider, program)
    add_usage(provider, org, [(at(TODAY + dt.timedelta(days=1)), 3, 10, "300.00")])
    add_usage(factories.make_provider(), org, [(at(TODAY + dt.timedelta(days=1)), 7, 10, "700.00")])

    row = features_on(program, today=TODAY + dt.timedelta(days=5)).loc[application.pk]

    assert row["provider_usage_share"] == pytest.approx(0.3)


def test_usage_bunched_in_the_last_three_weeks_before_the_deadline_is_flagged_and_spread_usage_not(clock, provider):
    """The programme closes 100 days after the applications; an even spread puts 21/100 of the
    usage in the last three weeks. Bunched: all of it there. Spread: one job every 5 days."""
    closes = TODAY + dt.timedelta(days=100)
    program = make_program(code="FR-DEADLINE", opens=OPENS, closes=closes)
    bunched, spread = factories.make_organisation(), factories.make_organisation()
    bunched_app, spread_app = apply(bunched, provider, program), apply(spread, provider, program)
    add_usage(provider, bunched, [(at(closes - dt.timedelta(days=d)), 10, 8, "800.00") for d in range(1, 15)])
    add_usage(provider, spread, [(at(TODAY + dt.timedelta(days=5 * k)), 10, 8, "800.00") for k in range(20)])

    table = features_on(program, today=closes)

    assert table.loc[bunched_app.pk, "deadline_share"] == pytest.approx(1 - 21 / 100)
    assert table.loc[spread_app.pk, "deadline_share"] == 0


def test_one_provider_serving_most_claims_of_a_district_is_concentration(program):
    usual, other = factories.make_provider(), factories.make_provider()
    apps = [apply(factories.make_organisation(), usual, program) for _ in range(4)]
    apps.append(apply(factories.make_organisation(), other, program))
    elsewhere = factories.make_organisation(region_code="340200", uscc=factories.make_uscc(region="340200"))
    lone = apply(elsewhere, usual, program)

    table = features_on(program)

    assert table.loc[apps[0].pk, "provider_district_share"] == pytest.approx(0.8)
    assert table.loc[apps[4].pk, "provider_district_share"] == pytest.approx(0.2)
    assert table.loc[lone.pk, "provider_district_share"] == 0  # fewer than 5 claims in its district


# --- history -------------------------------------------------------------------------------


def test_earlier_applications_and_confirmed_frauds_count(program, provider):
    earlier = make_program(code="FR-2025", opens=dt.date(2025, 6, 1), closes=dt.date(2025, 8, 31))
    fraudster, honest, newcomer = (factories.make_organisation() for _ in range(3))
    for org, verdict in ((fraudster, Outcome.Verdict.FRAUD), (honest, Outcome.Verdict.CLEAN)):
        old = set_status(apply(org, provider, earlier, submit=False), "rejected")
        Outcome.objects.create(application=old, verdict=verdict, source=Outcome.Source.IMPORT)
    apps = [apply(org, provider, program) for org in (fraudster, honest, newcomer)]

    table = features_on(program)

    assert table.loc[[a.pk for a in apps], "earlier_applications"].tolist() == [1, 1, 0]
    assert table.loc[[a.pk for a in apps], "earlier_fraud"].tolist() == [1, 0, 0]


def test_the_same_claim_in_another_programme_without_new_usage_is_a_repeated_claim(program):
    other_program = make_program(code="FR-CITY", opens=OPENS, closes=CLOSES)
    provider = factories.make_provider()
    again, different, with_usage, once = (factories.make_organisation() for _ in range(4))
    apply(again, provider, other_program, claimed_amount=Decimal("100000.00"))
    apply(different, provider, other_program, claimed_amount=Decimal("150000.00"))
    apply(with_usage, provider, other_program, claimed_amount=Decimal("100000.00"))
    apps = {
        "again": apply(again, provider, program, claimed_amount=Decimal("102000.00")),  # within 3 %
        "different": apply(different, provider, program, claimed_amount=Decimal("100000.00")),
        "with_usage": apply(with_usage, provider, program, claimed_amount=Decimal("100000.00")),
        "once": apply(once, provider, program),
    }
    # 1,000 card-hours after 10 of the 77 days: 77 % of the 1,299 card-hours due by then.
    add_usage(provider, with_usage, [(at(TODAY + dt.timedelta(days=1)), 125, 8, "10000.00")])

    table = features_on(program, today=TODAY + dt.timedelta(days=10))

    assert {name: table.loc[a.pk, "other_program_claim_match"] for name, a in apps.items()} == {
        "again": 1,
        "different": 0,
        "with_usage": 0,
        "once": 0,
    }


@pytest.mark.parametrize("status", ["draft", "withdrawn"])
def test_an_application_never_submitted_or_withdrawn_elsewhere_is_not_a_repeated_claim(program, provider, status):
    other_program = make_program(code="FR-CITY", opens=OPENS, closes=CLOSES)
    org = factories.make_organisation()
    elsewhere = apply(org, provider, other_program, submit=False)
    if status != "draft":
        set_status(elsewhere, status)
    application = apply(org, provider, program)

    assert features_on(program).loc[application.pk, "other_program_claim_match"] == 0


# --- the table -----------------------------------------------------------------------------


def test_the_table_has_one_row_per_application_and_every_feature(program, provider):
    apps = [apply(factories.make_organisation(), provider, program) for _ in range(2)]
    empty = make_program(code="FR-EMPTY", opens=OPENS, closes=CLOSES)

    table = features_on(program)

    assert sorted(table.index) == sorted(a.pk for a in apps)
    assert list(table.columns) == ["reference", "organisation_id", *FEATURE_NAMES]
    assert table.loc[apps[0].pk, "reference"] == apps[0].reference
    assert build_features(empty, today=TODAY).empty


def _queries_for_features(program, today) -> int:
    with CaptureQueriesContext(connection) as queries:
        build_features(program, today=today)
    return len(queries)


def test_building_the_table_takes_a_fixed_number_of_queries_whatever_the_number_of_applications(program, provider):
    earlier = make_program(code="FR-BEFORE", opens=dt.date(2025, 6, 1), closes=dt.date(2025, 8, 31))

    def add_applicants(count):
        for _ in range(count):
            org = factories.make_organisation()
            apply(org, provider, program)
            apply(org, provider, earlier, submit=False)
            add_usage(provider, org, [(at(TODAY + dt.timedelta(days=1)), 10, 8, "800.00")])

    today = TODAY + dt.timedelta(days=5)
    add_applicants(3)
    with_3 = _queries_for_features(program, today)
    add_applicants(27)
    with_30 = _queries_for_features(program, today)

    assert with_30 == with_3
    # Among them: the summaries' signatures (read, and written for new ones), and the temporary
    # table of the applications that the usage sums join (created, filled, dropped).
    assert with_3 <= 15


def test_describe_puts_the_value_into_words():
    assert describe("registration_age_days", 34) == "registered 34 days before applying"
    assert describe("registration_age_days", 34, "zh-hans") == "申请前 34 天注册"
    assert describe("rd_share", 0.4) == "R&D staff are 40% of the insured employees"


def test_summary_signatures_are_kept_and_recomputed_when_a_summary_changes(program, provider):
    copied = apply(factories.make_organisation(), provider, program, project_summary=COPIED)
    edited = apply(factories.make_organisation(), provider, program, project_summary=UNRELATED)
    assert features_on(program).loc[edited.pk, "summary_similarity"] < 0.5
    kept = dict(SummarySignature.objects.values_list("application_id", "digest"))
    assert set(kept) == {copied.pk, edited.pk}

    Application.objects.filter(pk=edited.pk).update(project_summary=COPIED_AGAIN)
    table = features_on(program)

    assert table.loc[edited.pk, "summary_similarity"] >= 0.7  # the new text, not the stored signature
    now = dict(SummarySignature.objects.values_list("application_id", "digest"))
    assert now[copied.pk] == kept[copied.pk]
    assert now[edited.pk] != kept[edited.pk]


def test_features_of_some_applications_equal_their_rows_in_the_whole_table(program, provider):
    chunk, rest = [], []
    for n in range(4):
        org = factories.make_organisation()
        application = apply(org, provider, program, project_summary=COPIED if n < 2 else UNRELATED)
        add_usage(provider, org, [(at(TODAY + dt.timedelta(days=1 + n)), 10 + n, 8, f"{800 + n}.00")])
        (chunk if n % 2 else rest).append(application.pk)
    whole = features_on(program, today=TODAY + dt.timedelta(days=10))

    part = build_features(program, today=TODAY + dt.timedelta(days=10), only=chunk)

    assert sorted(part.index) == sorted(chunk)
    assert part.loc[chunk[0], "summary_similarity"] == 1.0  # compared with the rest of the programme
    assert part.loc[chunk, FEATURE_NAMES].equals(whole.loc[chunk, FEATURE_NAMES])
