"""The audit workspace's list pages (``/audit/<kind>/``): every list renders for an auditor,
every filter narrows the rows, columns sort both ways, pages page, and the number of queries
does not grow with the rows. The world is described in ``tests/audit/conftest.py``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import views
from audit.lists import LISTS
from core.models import AuditEntry
from coupons.models import Application, Coupon, RiskBand
from coupons.services.review import review_approve
from fraud.models import RiskAssessment
from fraud.scoring import score_program
from fraud.services import case_open
from tests import factories
from tests.audit.conftest import NOW, SHANGHAI, WUHU
from tests.coupons.conftest import make_application, make_program
from tests.usage.conftest import claim, ingest, record

KINDS = sorted(LISTS)


def url(kind: str) -> str:
    return f"/audit/{kind}/"


def shown(client, kind: str, **params) -> list[dict]:
    """The rows the page shows, as {column key: value}."""
    response = client.get(url(kind), params)
    assert response.status_code == 200, response.content[:500]
    keys = LISTS[kind].keys
    return [dict(zip(keys, row, strict=True)) for row in response.context["page"].object_list]


def column(rows: list[dict], key: str) -> set:
    return {row[key] for row in rows}


# --- every list renders ----------------------------------------------------------------------


def test_the_index_links_every_list_and_the_dashboards(auditor_client):
    response = auditor_client.get("/audit/")

    assert response.status_code == 200
    for kind in KINDS:
        assert f'href="/audit/{kind}/"'.encode() in response.content
    assert b'href="/audit/dashboards/"' in response.content


def test_each_list_renders_all_its_rows_for_an_auditor(auditor_client, world):
    for kind in KINDS:
        response = auditor_client.get(url(kind))

        assert response.status_code == 200, kind
        total = LISTS[kind].queryset().count()
        assert total > 0, f"the world should put something in the {kind} list"
        assert response.context["page"].paginator.count == total, kind
        assert len(response.context["rows"]) == min(total, views.PAGE_SIZE), kind
        body = response.content.decode()
        assert body.count("<tr>") == 1 + min(total, views.PAGE_SIZE), kind  # the header and a line per row
        assert "Nothing matches these filters." not in body, kind
        for column_ in LISTS[kind].columns:
            assert str(column_.label) in body, (kind, column_.key)


def test_the_applications_page_shows_the_values_of_a_row(auditor_client, world):
    body = auditor_client.get(url("applications")).content.decode()

    app = world.app_hefei
    for text in (app.reference, world.hefei.uscc, world.hefei.name, "AUD-A", "100000.00", "20000.00", "approved"):
        assert text in body
    # Times on the page are Shanghai's: submitted at 00:30 on 1 March (28 February in UTC).
    assert "2026-03-01 00:30" in body


def test_an_unknown_list_is_a_404(auditor_client):
    assert auditor_client.get("/audit/no-such-list/").status_code == 404


# --- filters ---------------------------------------------------------------------------------


def refs(*apps) -> set[str]:
    return {app.reference for app in apps}


def codes(*coupons) -> set[str]:
    return {coupon.code for coupon in coupons}


def pks(*objects) -> set[int]:
    return {obj.pk for obj in objects}


def by_band(band: str) -> set[str]:
    return set(Application.objects.filter(risk_band=band).values_list("reference", flat=True))


# (kind, the key that names a row, params(world), expected(world)); each narrows the full list.
FILTER_CASES = [
    # applications
    ("applications", "reference", lambda w: {"program": "AUD-B"}, lambda w: refs(w.app_b, w.app_rejected)),
    (
        "applications",
        "reference",
        # 1 March in Shanghai: the two submitted at 00:30 (28 February in UTC).
        lambda w: {"date_from": "2026-03-01", "date_to": "2026-03-01"},
        lambda w: refs(w.app_hefei, w.app_wuhu),
    ),
    ("applications", "reference", lambda w: {"date_to": "2026-02-28"}, lambda w: set()),
    (
        "applications",
        "reference",
        lambda w: {"date_from": "2026-03-02"},
        lambda w: refs(w.app_b, w.app_pending, w.app_rejected),
    ),
    ("applications", "reference", lambda w: {"state": "approved"}, lambda w: refs(w.app_hefei, w.app_wuhu, w.app_b)),
    ("applications", "reference", lambda w: {"state": "rejected"}, lambda w: refs(w.app_rejected)),
    ("applications", "reference", lambda w: {"risk_band": "medium"}, lambda w: by_band("medium")),
    ("applications", "reference", lambda w: {"risk_band": "low"}, lambda w: by_band("low")),
    ("applications", "reference", lambda w: {"region": WUHU}, lambda w: refs(w.app_wuhu, w.app_b)),
    (
        "applications",
        "reference",
        lambda w: {"industry": "I6513"},
        lambda w: refs(w.app_hefei, w.app_pending, w.app_rejected),
    ),
    (
        "applications",
        "reference",
        lambda w: {"provider": w.provider_two.organisation.uscc},
        lambda w: refs(w.app_wuhu, w.app_pending),
    ),
    (
        "applications",
        "reference",
        lambda w: {"enterprise": w.wuhu.uscc},
        lambda w: refs(w.app_wuhu, w.app_b),
    ),
    # amounts: both bounds inclusive
    (
        "applications",
        "reference",
        lambda w: {"amount_min": "80000"},
        lambda w: refs(w.app_hefei, w.app_b, w.app_pending),
    ),
    ("applications", "reference", lambda w: {"amount_max": "50000.00"}, lambda w: refs(w.app_wuhu, w.app_rejected)),
    (
        "applications",
        "reference",
        lambda w: {"program": "AUD-A", "state": "approved", "amount_min": "60000"},
        lambda w: refs(w.app_hefei),
    ),
    # coupons
    ("coupons", "code", lambda w: {"program": "AUD-B"}, lambda w: codes(w.coupon_b)),
    ("coupons", "code", lambda w: {"date_from": "2026-03-03"}, lambda w: codes(w.coupon_b)),
    ("coupons", "code", lambda w: {"date_to": "2026-03-02"}, lambda w: codes(w.coupon_hefei, w.coupon_wuhu)),
    ("coupons", "code", lambda w: {"state": "revoked"}, lambda w: codes(w.coupon_hefei)),
    ("coupons", "code", lambda w: {"region": "340100"}, lambda w: codes(w.coupon_hefei)),
    ("coupons", "code", lambda w: {"industry": "I6520"}, lambda w: codes(w.coupon_wuhu, w.coupon_b)),
    (
        "coupons",
        "code",
        lambda w: {"provider": w.provider_one.organisation.uscc},
        lambda w: codes(w.coupon_hefei, w.coupon_b),
    ),
    ("coupons", "code", lambda w: {"enterprise": w.wuhu.uscc}, lambda w: codes(w.coupon_wuhu, w.coupon_b)),
    ("coupons", "code", lambda w: {"amount_min": "20000"}, lambda w: codes(w.coupon_hefei, w.coupon_b)),
    ("coupons", "code", lambda w: {"amount_max": "10000"}, lambda w: codes(w.coupon_wuhu)),
    # usage
    (
        "usage",
        "record_id",
        lambda w: {"date_from": "2026-03-06", "date_to": "2026-03-07"},
        lambda w: {"one-2", "two-1"},
    ),
    ("usage", "record_id", lambda w: {"region": WUHU}, lambda w: {"two-1", "one-3"}),
    ("usage", "record_id", lambda w: {"industry": "I6513"}, lambda w: {"one-1", "one-2"}),
    ("usage", "record_id", lambda w: {"provider": w.provider_two.organisation.uscc}, lambda w: {"two-1"}),
    ("usage", "record_id", lambda w: {"enterprise": w.wuhu.uscc}, lambda w: {"two-1", "one-3"}),
    ("usage", "record_id", lambda w: {"amount_min": "2000"}, lambda w: {"one-2", "one-3"}),
    ("usage", "record_id", lambda w: {"amount_max": "1000"}, lambda w: {"one-1", "two-1"}),
    # redemptions
    ("redemptions", "id", lambda w: {"program": "AUD-B"}, lambda w: pks(w.redemption_three)),
    ("redemptions", "id", lambda w: {"date_to": "2026-03-20"}, lambda w: pks(w.redemption_one)),
    ("redemptions", "id", lambda w: {"date_from": "2026-03-25"}, lambda w: pks(w.redemption_two, w.redemption_three)),
    ("redemptions", "id", lambda w: {"state": "reversed"}, lambda w: pks(w.redemption_three)),
    ("redemptions", "id", lambda w: {"region": "340100"}, lambda w: pks(w.redemption_one)),
    ("redemptions", "id", lambda w: {"industry": "I6520"}, lambda w: pks(w.redemption_two, w.redemption_three)),
    (
        "redemptions",
        "id",
        lambda w: {"provider": w.provider_one.organisation.uscc},
        lambda w: pks(w.redemption_one, w.redemption_three),
    ),
    ("redemptions", "id", lambda w: {"enterprise": w.hefei.uscc}, lambda w: pks(w.redemption_one)),
    ("redemptions", "id", lambda w: {"amount_min": "400"}, lambda w: pks(w.redemption_one, w.redemption_three)),
    ("redemptions", "id", lambda w: {"amount_max": "100.00"}, lambda w: pks(w.redemption_two)),
    # settlements
    ("settlements", "id", lambda w: {"date_from": "2026-03-01"}, lambda w: pks(w.statement_one, w.statement_two)),
    ("settlements", "id", lambda w: {"date_to": "2026-02-28"}, lambda w: pks(w.statement_feb)),
    ("settlements", "id", lambda w: {"state": "approved"}, lambda w: pks(w.statement_two)),
    (
        "settlements",
        "id",
        lambda w: {"provider": w.provider_one.organisation.uscc},
        lambda w: pks(w.statement_one, w.statement_feb),
    ),
    # assessments (AUD-B scored at MID, AUD-A at NOW)
    ("assessments", "application__reference", lambda w: {"program": "AUD-B"}, lambda w: refs(w.app_b, w.app_rejected)),
    (
        "assessments",
        "application__reference",
        lambda w: {"date_to": "2026-03-20"},
        lambda w: refs(w.app_b, w.app_rejected),
    ),
    (
        "assessments",
        "application__reference",
        lambda w: {"date_from": "2026-03-21"},
        lambda w: refs(w.app_hefei, w.app_wuhu, w.app_pending),
    ),
    ("assessments", "application__reference", lambda w: {"risk_band": "medium"}, lambda w: by_band("medium")),
    ("assessments", "application__reference", lambda w: {"region": WUHU}, lambda w: refs(w.app_wuhu, w.app_b)),
    (
        "assessments",
        "application__reference",
        lambda w: {"industry": "I6513"},
        lambda w: refs(w.app_hefei, w.app_pending, w.app_rejected),
    ),
    (
        "assessments",
        "application__reference",
        lambda w: {"provider": w.provider_two.organisation.uscc},
        lambda w: refs(w.app_wuhu, w.app_pending),
    ),
    (
        "assessments",
        "application__reference",
        lambda w: {"enterprise": w.wuhu.uscc},
        lambda w: refs(w.app_wuhu, w.app_b),
    ),
    (
        "assessments",
        "application__reference",
        lambda w: {"amount_min": "50"},
        lambda w: {a.reference for a in Application.objects.filter(risk_score__gte=50)},
    ),
    (
        "assessments",
        "application__reference",
        lambda w: {"amount_max": "49"},
        lambda w: {a.reference for a in Application.objects.filter(risk_score__lte=49)},
    ),
    # cases
    ("cases", "id", lambda w: {"program": "AUD-A"}, lambda w: pks(w.case_closed)),
    ("cases", "id", lambda w: {"date_to": "2026-03-20"}, lambda w: pks(w.case_open)),
    ("cases", "id", lambda w: {"state": "closed"}, lambda w: pks(w.case_closed)),
    ("cases", "id", lambda w: {"enterprise": w.wuhu.uscc}, lambda w: pks(w.case_open)),
    ("cases", "id", lambda w: {"amount_min": "800"}, lambda w: pks(w.case_closed)),
    ("cases", "id", lambda w: {"amount_max": "0"}, lambda w: pks(w.case_open)),
    # the audit trail
    ("audit-trail", "object_repr", lambda w: {"state": "case.open"}, lambda w: {str(w.case_open), str(w.case_closed)}),
    (
        "audit-trail",
        "object_repr",
        lambda w: {"state": "redemption.reverse", "date_from": "2026-03-25"},
        lambda w: {str(w.redemption_three)},
    ),
    (
        "audit-trail",
        "object_repr",
        # 1 March in Shanghai: the programmes and the first two applications, made at 00:30.
        lambda w: {"date_to": "2026-03-01"},
        lambda w: {str(w.program_a), str(w.program_b), w.app_hefei.reference, w.app_wuhu.reference},
    ),
]


@pytest.mark.parametrize("kind", sorted({case[0] for case in FILTER_CASES}))
def test_each_filter_narrows_the_rows(auditor_client, world, kind):
    """Every filter of ``FILTER_CASES`` for this list keeps exactly the rows it names, fewer
    than the whole list (one world per list, every case checked, every failure reported)."""
    everything = shown(auditor_client, kind)
    failures = []
    for case_kind, key, params, expected in FILTER_CASES:
        if case_kind != kind:
            continue
        rows = shown(auditor_client, kind, **params(world))
        if column(rows, key) != expected(world) or len(rows) >= len(everything):
            failures.append(f"{params(world)}: got {sorted(column(rows, key))}, expected {sorted(expected(world))}")
    assert not failures, "\n".join(failures)


def test_the_risk_bands_in_the_world_differ(world):
    """The band filters above only narrow if the scoring gave more than one band."""
    bands = set(Application.objects.values_list("risk_band", flat=True))
    assert {RiskBand.LOW, RiskBand.MEDIUM} <= bands


LEDGER_CASES = [
    # (params, expected (kind, programme, amount) of each entry)
    ({"program": "AUD-B", "state": "fund"}, [("fund", "AUD-B", "-1000000.00"), ("fund", "AUD-B", "1000000.00")]),
    ({"state": "revoke"}, [("revoke", "AUD-A", "-19200.00"), ("revoke", "AUD-A", "19200.00")]),
    (
        {"date_to": "2026-03-01"},
        [
            ("fund", "AUD-A", "-1000000.00"),
            ("fund", "AUD-A", "1000000.00"),
            ("fund", "AUD-B", "-1000000.00"),
            ("fund", "AUD-B", "1000000.00"),
        ],
    ),
    (
        {"date_from": "2026-03-10", "date_to": "2026-03-10"},
        [("issue", "AUD-B", "-60000.00"), ("issue", "AUD-B", "60000.00")],
    ),
    (
        {"amount_min": "60000"},
        [("fund", "AUD-A", "1000000.00"), ("fund", "AUD-B", "1000000.00"), ("issue", "AUD-B", "60000.00")],
    ),
    (
        {"amount_max": "-60000"},
        [("fund", "AUD-A", "-1000000.00"), ("fund", "AUD-B", "-1000000.00"), ("issue", "AUD-B", "-60000.00")],
    ),
]


def test_each_filter_narrows_the_ledger(auditor_client, world):
    failures = []
    for params, expected in LEDGER_CASES:
        rows = shown(auditor_client, "ledger", **params)
        entries = sorted(
            (row["transaction__kind"], row["transaction__program__code"], f"{row['amount']:.2f}") for row in rows
        )
        if entries != sorted(expected):
            failures.append(f"{params}: got {entries}")
    assert not failures, "\n".join(failures)


def test_an_empty_filter_is_no_filter(auditor_client, world):
    assert len(shown(auditor_client, "applications", program="", state="", amount_min="")) == 5


def test_an_invalid_filter_is_shown_as_an_error(auditor_client, world):
    response = auditor_client.get(url("applications"), {"state": "no-such-state"})

    assert response.status_code == 200
    assert response.context["filterset"].errors
    assert b'class="errorlist"' in response.content


def test_the_filter_form_keeps_what_was_asked(auditor_client, world):
    response = auditor_client.get(url("applications"), {"program": "AUD-B", "sort": "-claimed_amount"})

    body = response.content.decode()
    assert 'value="AUD-B"' in body
    assert '<input type="hidden" name="sort" value="-claimed_amount">' in body
    # The export link carries the same filters.
    assert 'id="export-csv" href="/audit/applications/export.csv?program=AUD-B&amp;sort=-claimed_amount"' in body


# --- sorting ---------------------------------------------------------------------------------

SORT_CASES = [
    ("applications", "claimed_amount"),
    ("applications", "reference"),
    ("applications", "submitted_at"),
    ("coupons", "face_value"),
    ("ledger", "amount"),
    ("usage", "started_at"),
    ("usage", "amount"),
    ("redemptions", "subsidy"),
    ("settlements", "month"),
    ("settlements", "subsidy_total"),
    ("assessments", "score"),
    ("cases", "receivable"),
    ("audit-trail", "action"),
]


def test_columns_sort_ascending_and_descending(auditor_client, world):
    failures = []
    for kind, key in SORT_CASES:
        ascending = [row[key] for row in shown(auditor_client, kind, sort=key)]
        descending = [row[key] for row in shown(auditor_client, kind, sort=f"-{key}")]
        assert len(set(ascending)) > 1, f"{kind} {key}: a sort over equal values proves nothing"
        if ascending != sorted(ascending) or descending != sorted(descending, reverse=True):
            failures.append(f"{kind} by {key}: {ascending} / {descending}")
    assert not failures, "\n".join(failures)


def test_sorting_by_claimed_amount_gives_the_applications_in_order(auditor_client, world):
    w = world
    rows = shown(auditor_client, "applications", sort="claimed_amount")

    assert [row["reference"] for row in rows] == [
        w.app_rejected.reference,  # 40,000
        w.app_wuhu.reference,  # 50,000
        w.app_pending.reference,  # 80,000
        w.app_hefei.reference,  # 100,000
        w.app_b.reference,  # 300,000
    ]


def test_the_sort_link_of_the_sorted_column_turns_it_around(auditor_client, world):
    body = auditor_client.get(url("applications"), {"sort": "claimed_amount", "program": "AUD-A"}).content.decode()

    assert 'href="?program=AUD-A&amp;sort=-claimed_amount"' in body
    assert "▲" in body


def test_an_unsortable_or_unknown_sort_key_falls_back_to_the_default_order(auditor_client, world):
    expected = list(Application.objects.order_by("-id").values_list("reference", flat=True))

    for sort in ["risk_reasons", "no_such_column", "-password", "organisation__bank_account", "-"]:
        rows = shown(auditor_client, "applications", sort=sort)
        assert [row["reference"] for row in rows] == expected, sort


# --- pagination ------------------------------------------------------------------------------


@pytest.fixture
def two_a_page(monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)


def test_pages_split_the_rows_in_order(auditor_client, world, two_a_page):
    pages = [shown(auditor_client, "applications", sort="claimed_amount", page=n) for n in (1, 2, 3)]

    assert [len(page) for page in pages] == [2, 2, 1]
    seen = [row["reference"] for page in pages for row in page]
    assert seen == list(Application.objects.order_by("claimed_amount").values_list("reference", flat=True))


def test_the_page_links_keep_the_filters_and_the_sort(auditor_client, world, two_a_page):
    response = auditor_client.get(url("applications"), {"program": "AUD-A", "sort": "reference", "page": "1"})

    body = response.content.decode()
    assert "page 1 of 2" in body
    assert 'href="?program=AUD-A&amp;sort=reference&amp;page=2"' in body


def test_an_out_of_range_or_odd_page_number_still_shows_a_page(auditor_client, world, two_a_page):
    for page, number in [("99", 3), ("0", 3), ("abc", 1), ("", 1), ("-1", 3)]:
        response = auditor_client.get(url("applications"), {"page": page})
        assert response.status_code == 200
        assert response.context["page"].number == number, page


# --- query-count guard -----------------------------------------------------------------------


@pytest.fixture
def grow(clock, reviewer, auditor, officer):
    """``grow(n)``: ``n`` units, each one enterprise with its own provider, an approved
    application, a coupon, a usage record, a posted redemption (on the provider's own March
    statement), an assessment and an open case; so that every list has at least ``n`` rows."""
    clock.move_to(NOW, tick=False)
    program = make_program(code="AUD-GROW")
    made: list[Application] = []

    def grow_to(n: int) -> None:
        new = []
        while len(made) < n:
            clock.move_to(NOW, tick=False)
            i = len(made)
            enterprise = factories.make_organisation(region_code="340100" if i % 2 else WUHU)
            provider = factories.make_provider()
            application = make_application(
                organisation=enterprise,
                provider=provider,
                program=program,
                claimed_amount=Decimal("10000.00"),
                claimed_card_hours=Decimal("1000.0000"),
            )
            coupon = review_approve(application=application, reviewer=reviewer).coupon
            start = NOW + dt.timedelta(hours=1)
            clock.move_to(NOW + dt.timedelta(hours=3), tick=False)
            ingest(provider, [record(f"grow-{i}", enterprise=enterprise, start=start, hours=1)])
            claim(provider, coupon, key=f"grow-{i}")
            case_open(application=application, actor=auditor)
            made.append(application)
            new.append(application.pk)
        score_program(program, application_ids=new)

    return grow_to


def count_queries(client, path: str) -> tuple[int, int | None]:
    with CaptureQueriesContext(connection) as context:
        response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    rows = response.context.get("rows")
    return len(context.captured_queries), None if rows is None else len(rows)


def test_no_workspace_page_costs_more_queries_with_more_rows(auditor_client, grow):
    """GIVEN every list with 3 units, then with 30
    WHEN an auditor opens each list page, a filtered and sorted one, the index and the dashboards
    THEN each page costs the same number of queries both times (no query per row)."""
    lists = [url(kind) for kind in KINDS] + [url("applications") + "?program=AUD-GROW&sort=-claimed_amount"]
    pages = [*lists, "/audit/", "/audit/dashboards/"]
    grow(3)
    few = {page: count_queries(auditor_client, page) for page in pages}
    grow(30)
    many = {page: count_queries(auditor_client, page) for page in pages}

    for page in lists:
        assert few[page][1] >= 3, page
        assert many[page][1] >= 30, page
    grown = {page: (few[page][0], many[page][0]) for page in pages if few[page][0] != many[page][0]}
    assert not grown, f"queries (3 units, 30 units) per page: {grown}"
    assert max(many[page][0] for page in lists) <= 8


# --- what the rows hold ----------------------------------------------------------------------


def test_the_coupon_rows_show_the_ledger_balance(auditor_client, world):
    rows = {row["code"]: row for row in shown(auditor_client, "coupons")}

    wuhu = rows[world.coupon_wuhu.code]
    assert wuhu["face_value"] == Decimal("10000.00")
    assert wuhu["account__balance"] == Decimal("9900.00")  # 100.00 redeemed
    hefei = rows[world.coupon_hefei.code]
    assert hefei["state"] == Coupon.State.REVOKED
    assert hefei["account__balance"] == Decimal("0.00")
    assert hefei["returned_amount"] == Decimal("19200.00")


def test_the_settlement_rows_total_only_posted_redemptions(auditor_client, world):
    rows = {row["id"]: row["subsidy_total"] for row in shown(auditor_client, "settlements")}

    # Provider one's March statement: 800.00 posted; the 400.00 redemption was reversed.
    assert rows == {
        world.statement_one.pk: Decimal("800.00"),
        world.statement_two.pk: Decimal("100.00"),
        world.statement_feb.pk: Decimal("0.00"),
    }


def test_the_audit_trail_shows_who_did_what_and_why(auditor_client, world):
    rows = shown(auditor_client, "audit-trail", state="application.reject")

    assert len(rows) == 1
    row = rows[0]
    assert (row["actor_label"], row["from_state"], row["to_state"], row["reason"]) == (
        "reviewer",
        "submitted",
        "rejected",
        "合同金额与用量不符",
    )
    assert timezone.localtime(row["at"]).astimezone(SHANGHAI).date() == dt.date(2026, 3, 10)


def test_the_lists_only_read(auditor_client, world):
    before = (AuditEntry.objects.count(), RiskAssessment.objects.count(), Application.objects.count())

    for kind in KINDS:
        shown(auditor_client, kind)

    assert (AuditEntry.objects.count(), RiskAssessment.objects.count(), Application.objects.count()) == before


# --- languages -------------------------------------------------------------------------------


def test_the_workspace_speaks_chinese(auditor_client, world):
    body = auditor_client.get(url("applications"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert '<html lang="zh-hans">' in body
    for text in ("申请编号", "审计工作台", "筛选"):
        assert text in body


def test_the_dashboard_charts_are_labelled_in_chinese(auditor_client, world):
    body = auditor_client.get("/audit/dashboards/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert '<html lang="zh-hans">' in body
    english = [label for label in ('"granted (yuan)"', '"high-risk share"', '"claimed card-hours"') if label in body]
    assert not english, english
