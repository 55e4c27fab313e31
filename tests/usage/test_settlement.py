"""Monthly settlement: a provider's statement totals its posted redemptions by programme; staff
approve it (closing the month) and mark it paid, which moves each programme's total from
provider payable to provider paid; the CSV; who sees statements."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from coupons.models import Account, LedgerTransaction, Redemption, Statement
from coupons.services.ledger import provider_account
from coupons.services.redemptions import redemption_reverse
from coupons.services.review import review_approve
from coupons.services.settlement import STATEMENT_COLUMNS, statement_totals
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.usage.conftest import (
    APPROVED_AT,
    NOW,
    STATEMENTS,
    assert_error,
    assert_ledger_ok,
    balance,
    claim,
    db_state,
    ingest,
    march,
    record,
)

K = Account.Kind
MONEY = re.compile(r"\d+\.\d{2}")


@pytest.fixture
def second_program_coupon(clock, other_organisation, provider, reviewer):
    """A coupon of another enterprise, in another programme, naming the same provider."""
    clock.move_to(APPROVED_AT, tick=False)
    program = make_program(rate=Decimal("0.500"))
    application = make_application(organisation=other_organisation, provider=provider, program=program)
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    clock.move_to(NOW, tick=False)
    return coupon


@pytest.fixture
def statement(provider, organisation, other_organisation, coupon, second_program_coupon):
    """March: two redemptions in the first programme, one in the second."""
    ingest(
        provider,
        [
            record("a-1", enterprise=organisation, start=march(5), amount="1000.00"),
            record("a-2", enterprise=organisation, start=march(6), amount="250.50"),
            record("b-1", enterprise=other_organisation, start=march(5), amount="1234.56"),
        ],
    )
    claim(provider, coupon, records=["a-1"], key="a-1")  # 200.00
    claim(provider, coupon, records=["a-2"], key="a-2")  # 50.10
    claim(provider, second_program_coupon, records=["b-1"], key="b-1")  # × 0.50 = 617.28
    return Statement.objects.get(provider=provider, month=dt.date(2026, 3, 1))


def test_a_statement_totals_its_posted_redemptions_by_programme(statement, coupon, second_program_coupon):
    assert statement_totals(statement) == {
        coupon.program.code: {"redemptions": 2, "metered": Decimal("1250.50"), "subsidy": Decimal("250.10")},
        second_program_coupon.program.code: {
            "redemptions": 1,
            "metered": Decimal("1234.56"),
            "subsidy": Decimal("617.28"),
        },
    }
    assert_ledger_ok()


def test_approving_then_paying_moves_each_programmes_total_from_payable_to_paid(
    statement, settler_api, provider, coupon, second_program_coupon
):
    approve = settler_api.post(f"{STATEMENTS}{statement.pk}/approve/")
    assert approve.status_code == 200, approve.content
    assert approve.json()["state"] == "approved"
    assert_ledger_ok()

    pay = settler_api.post(f"{STATEMENTS}{statement.pk}/pay/")

    assert pay.status_code == 200, pay.content
    assert pay.json()["state"] == "paid"
    statement.refresh_from_db()
    assert statement.paid_at is not None and statement.approved_at is not None
    for program, paid in ((coupon.program, Decimal("250.10")), (second_program_coupon.program, Decimal("617.28"))):
        assert balance(provider_account(program, provider, K.PROVIDER_PAYABLE)) == 0
        assert balance(provider_account(program, provider, K.PROVIDER_PAID)) == paid
        txn = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.PAY, program=program)
        assert sorted(txn.entries.values_list("amount", flat=True)) == [-paid, paid]
    assert_ledger_ok()


def test_paying_twice_and_approving_a_paid_statement_are_refused(statement, settler_api):
    settler_api.post(f"{STATEMENTS}{statement.pk}/approve/")
    settler_api.post(f"{STATEMENTS}{statement.pk}/pay/")
    before = db_state()

    assert_error(settler_api.post(f"{STATEMENTS}{statement.pk}/pay/"), 409, "conflict")
    assert_error(settler_api.post(f"{STATEMENTS}{statement.pk}/approve/"), 409, "conflict")
    assert db_state() == before
    assert_ledger_ok()


def test_an_open_statement_cannot_be_paid(statement, settler_api):
    before = db_state()

    assert_error(settler_api.post(f"{STATEMENTS}{statement.pk}/pay/"), 409, "conflict")
    assert db_state() == before


@pytest.mark.parametrize("who", ["provider_api", "reviewer"])
def test_only_staff_with_the_permission_approve_and_pay(request, statement, who):
    if who == "provider_api":
        client = request.getfixturevalue("provider_api")
    else:
        client = APIClient()
        client.force_login(request.getfixturevalue(who))
    before = db_state()

    for step in ("approve", "pay"):
        response = client.post(f"{STATEMENTS}{statement.pk}/{step}/")
        assert_error(response, 403)
    assert db_state() == before


def test_a_reversed_redemption_stays_on_the_csv_but_leaves_the_totals(
    statement, provider, provider_api, organisation, coupon, settler
):
    ingest(provider, [record("a-3", enterprise=organisation, start=march(7), amount="99.99")])
    reversed_one = claim(provider, coupon, records=["a-3"], key="a-3")
    redemption_reverse(redemption=reversed_one, actor=settler, reason="wrong enterprise")

    rows = parse_csv(provider_api.get(f"{STATEMENTS}{statement.pk}/csv/"))

    (line,) = [row for row in rows if row[0] == str(reversed_one.pk)]
    assert (line[1], line[9], line[10]) == ("reversed", "99.99", "19.99")
    assert statement_totals(statement)[coupon.program.code]["redemptions"] == 2
    assert [row[8] for row in rows if row[0] == "total" and row[5] == coupon.program.code] == ["2"]
    assert_ledger_ok()


def parse_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_the_csv_has_the_header_one_line_per_redemption_and_totals_in_plain_decimals(
    statement, provider_api, coupon, second_program_coupon, organisation
):
    rows = parse_csv(provider_api.get(f"{STATEMENTS}{statement.pk}/csv/"))

    header, *lines = rows
    assert header == STATEMENT_COLUMNS
    assert header[:3] == ["redemption", "state", "coupon"] and header[9:11] == ["metered_amount", "subsidy"]
    redemptions = [line for line in lines if line[0] != "total"]
    totals = [line for line in lines if line[0] == "total"]
    assert [int(line[0]) for line in redemptions] == list(
        statement.redemptions.order_by("created_at", "pk").values_list("pk", flat=True)
    )
    assert [line[1] for line in redemptions] == ["posted", "posted", "posted"]
    assert redemptions[0][2:7] == [coupon.code, organisation.uscc, organisation.name, coupon.program.code, "2026-03-01"]
    assert [(line[9], line[10]) for line in redemptions] == [
        ("1000.00", "200.00"),
        ("250.50", "50.10"),
        ("1234.56", "617.28"),
    ]
    assert sorted((line[5], line[8], line[9], line[10]) for line in totals) == sorted(
        [
            (coupon.program.code, "2", "1250.50", "250.10"),
            (second_program_coupon.program.code, "1", "1234.56", "617.28"),
        ]
    )
    for line in lines:
        assert MONEY.fullmatch(line[9]) and MONEY.fullmatch(line[10]), line


def test_the_provider_portal_lists_its_statements_and_downloads_the_csv(client, provider_user, statement):
    client.force_login(provider_user)

    page = client.get("/portal/statements/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "2026-03" in html
    assert f"/portal/statements/{statement.pk}/csv/" in html
    assert "250.10" in html and "617.28" in html
    rows = parse_csv(client.get(f"/portal/statements/{statement.pk}/csv/"))
    assert rows[0] == STATEMENT_COLUMNS
    assert len(rows) == 1 + 3 + 2


def test_another_provider_sees_none_of_it(client, rival, rival_api, statement):
    rival_user = factories.make_portal_user(rival.organisation, role="provider")
    client.force_login(rival_user)

    assert f"/portal/statements/{statement.pk}/csv/" not in client.get("/portal/statements/").content.decode()
    assert client.get(f"/portal/statements/{statement.pk}/csv/").status_code == 404
    assert_error(rival_api.get(f"{STATEMENTS}{statement.pk}/csv/"), 404)
    assert rival_api.get(STATEMENTS).json()["results"] == []


@pytest.mark.parametrize("who", ["owner", "outsider"])
def test_enterprise_users_see_no_statements(request, client, statement, who):
    """The owner's and the outsider's enterprises both have redemptions on it."""
    client.force_login(request.getfixturevalue(who))

    assert "No statements yet." in client.get("/portal/statements/").content.decode()
    assert client.get(f"/portal/statements/{statement.pk}/csv/").status_code == 404
    assert client.get(STATEMENTS).json()["results"] == []
    assert_error(client.get(f"{STATEMENTS}{statement.pk}/csv/"), 404)


def test_the_provider_and_the_enterprise_see_their_redemptions_on_the_portal(
    client, provider_user, owner, outsider, statement, coupon, second_program_coupon
):
    client.force_login(provider_user)
    html = client.get("/portal/redemptions/").content.decode()
    assert coupon.code in html and second_program_coupon.code in html

    client.force_login(owner)
    html = client.get("/portal/redemptions/").content.decode()
    assert coupon.code in html and second_program_coupon.code not in html

    client.force_login(outsider)
    html = client.get("/portal/redemptions/").content.decode()
    assert coupon.code not in html and second_program_coupon.code in html
    assert Redemption.objects.count() == 3
