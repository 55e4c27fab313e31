"""The review actions through the API: the outcome on success, and the one error shape for every
refusal (400 with the field names, 403, 404, 409), with nothing written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coupons.models import Application, ApplicationMessage, Coupon, Review
from coupons.services.review import review_approve
from enterprises.models import StaffAffiliation
from tests.coupons.conftest import assert_error_shape, assert_ledger_ok, make_application, make_program, snapshot

S = Application.Status


def url(application, action: str) -> str:
    return f"/api/v1/applications/{application.reference}/{action}/"


def post(client, application, action: str, body: dict | None = None):
    return client.post(url(application, action), body or {}, content_type="application/json")


def refused(client, application, action, body, status, code) -> dict:
    before = snapshot()
    error = assert_error_shape(post(client, application, action, body), status, code)
    assert snapshot() == before
    return error


@pytest.fixture
def as_reviewer(client, reviewer):
    client.force_login(reviewer)
    return client


# --- success --------------------------------------------------------------------------------


def test_approve_returns_the_outcome_with_the_coupon(as_reviewer, application):
    response = post(as_reviewer, application, "approve", {"amount": "18000.00", "note": "looks right"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["awaiting_second_review"] is False
    assert (body["application"]["status"], body["application"]["granted_amount"]) == ("approved", "18000.00")
    coupon = Coupon.objects.get(application=application)
    assert (body["coupon"]["code"], body["coupon"]["face_value"]) == (coupon.code, "18000.00")
    assert Review.objects.get(application=application).reason == "looks right"
    assert_ledger_ok()


def test_approve_shows_the_coupons_balance(as_reviewer, application):
    response = post(as_reviewer, application, "approve", {"amount": "18000.00"})

    assert response.json()["coupon"]["balance"] == "18000.00"


def test_approve_without_an_amount_grants_the_limit(as_reviewer, application):
    response = post(as_reviewer, application, "approve")

    assert response.json()["coupon"]["face_value"] == "20000.00"


def test_a_first_approval_above_the_threshold_waits_in_the_api(
    client, reviewer, second_reviewer, organisation, provider
):
    program = make_program(second_review_amount=Decimal("10000.00"))
    application = make_application(organisation=organisation, provider=provider, program=program)
    client.force_login(reviewer)

    first = post(client, application, "approve", {"amount": "15000.00"})

    assert first.status_code == 200
    assert (first.json()["awaiting_second_review"], first.json()["coupon"]) == (True, None)
    assert first.json()["application"]["status"] == "under_review"
    refused(client, application, "approve", {}, 403, "permission_denied")  # the same reviewer again

    client.force_login(second_reviewer)
    refused(client, application, "approve", {"amount": "15000.01"}, 400, "validation_failed")
    second = post(client, application, "approve")
    assert second.json()["coupon"]["face_value"] == "15000.00"
    assert_ledger_ok()


@pytest.mark.parametrize(("action", "status"), [("reject", "rejected"), ("return", "returned")])
def test_reject_and_return_with_a_reason(as_reviewer, application, action, status):
    response = post(as_reviewer, application, action, {"reason": "The contract is missing."})

    assert response.status_code == 200
    assert response.json()["status"] == status
    assert ApplicationMessage.objects.get(application=application).body == "The contract is missing."


# --- 400: validation, with the fields named -------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "field_reason"),
    [
        ("abc", "A valid number is required."),
        ("0.00", "Ensure this value is greater than or equal to 0.01."),
        ("-5", "Ensure this value is greater than or equal to 0.01."),
        ("1.001", "Ensure that there are no more than 2 decimal places."),
    ],
)
def test_a_malformed_amount_is_a_400_naming_the_field(as_reviewer, application, amount, field_reason):
    error = refused(as_reviewer, application, "approve", {"amount": amount}, 400, "validation_failed")

    assert error["details"] == [{"field": "amount", "reason": field_reason}]


def test_an_amount_above_the_limit_is_a_400_naming_the_field_and_the_limit(as_reviewer, application):
    error = refused(as_reviewer, application, "approve", {"amount": "20000.01"}, 400, "validation_failed")

    assert error["message"] == "At most 20000.00 yuan can be granted (limited by claimed amount × rate)."
    assert error["details"] == [{"field": "amount", "reason": "above the limit of 20000.00"}]


@pytest.mark.parametrize("action", ["reject", "return"])
@pytest.mark.parametrize("body", [{}, {"reason": ""}])
def test_reject_and_return_without_a_reason_are_a_400_naming_the_field(as_reviewer, application, action, body):
    error = refused(as_reviewer, application, action, body, 400, "validation_failed")

    assert [d["field"] for d in error["details"]] == ["reason"]


@pytest.mark.parametrize("action", ["reject", "return"])
def test_a_blank_reason_is_refused_by_the_service_too(as_reviewer, application, action):
    error = refused(as_reviewer, application, action, {"reason": "   "}, 400, "validation_failed")

    assert [d["field"] for d in error["details"]] == ["reason"]


# --- 403 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["auditor", "officer", "owner", "outsider", "provider_user"])
@pytest.mark.parametrize("action", ["approve", "reject", "return"])
def test_someone_who_is_not_a_reviewer_gets_a_403(request, client, application, who, action):
    client.force_login(request.getfixturevalue(who))

    refused(client, application, action, {"reason": "x"}, 403, "permission_denied")


@pytest.mark.parametrize("action", ["approve", "reject", "return"])
def test_a_linked_reviewer_gets_a_403_with_the_reason(as_reviewer, reviewer, application, organisation, action):
    StaffAffiliation.objects.create(user=reviewer, organisation=organisation)

    error = refused(as_reviewer, application, action, {"reason": "x"}, 403, "permission_denied")

    assert error["message"] == f"You are linked to {organisation.name} and may not review its applications."


def test_anonymous_gets_a_401(client, application):
    refused(client, application, "approve", {}, 401, "not_authenticated")


# --- 404 and 409 ----------------------------------------------------------------------------


def test_an_unknown_reference_is_a_404(as_reviewer, db):
    before = snapshot()

    response = as_reviewer.post("/api/v1/applications/NOPE-000001/approve/", {}, content_type="application/json")

    assert_error_shape(response, 404, "not_found")
    assert snapshot() == before


def test_approving_an_approved_application_is_a_409(as_reviewer, second_reviewer, application):
    review_approve(application=application, reviewer=second_reviewer)

    error = refused(as_reviewer, application, "approve", {}, 409, "transition_not_allowed")

    assert error["message"] == "An application that is approved cannot be approved."


@pytest.mark.parametrize("action", ["approve", "reject", "return"])
@pytest.mark.parametrize("status", [S.DRAFT, S.WITHDRAWN, S.RETURNED])
def test_reviewing_an_application_that_is_not_waiting_is_a_409(as_reviewer, application, action, status):
    Application.objects.filter(pk=application.pk).update(status=status)

    refused(as_reviewer, application, action, {"reason": "x"}, 409, "transition_not_allowed")
