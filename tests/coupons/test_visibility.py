"""Who sees which applications and coupons, in the API and the portal. The owner and a teammate
see their organisation's; an outsider gets a 404 and changes nothing; a provider user sees what
names its provider but cannot act as the applicant; staff see all; anonymous users nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coupons.models import Application, Coupon
from tests import factories
from tests.coupons.conftest import assert_error_shape, make_application, snapshot

S = Application.Status
APPLICATIONS = "/api/v1/applications/"
COUPONS = "/api/v1/coupons/"


@pytest.fixture
def others(other_organisation, program):
    """An application of another organisation with another provider."""
    return make_application(organisation=other_organisation, provider=factories.make_provider(), program=program)


def references(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["reference"] for item in response.json()["results"]}


def codes(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["code"] for item in response.json()["results"]}


# --- API: applications ----------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "teammate"])
def test_the_owner_and_a_teammate_see_their_organisations_applications_only(request, client, application, others, who):
    client.force_login(request.getfixturevalue(who))

    assert references(client.get(APPLICATIONS)) == {application.reference}
    response = client.get(f"{APPLICATIONS}{application.reference}/")
    assert response.status_code == 200
    assert response.json()["organisation"] == application.organisation.uscc


def test_a_teammate_may_withdraw_the_organisations_application(client, teammate, application):
    client.force_login(teammate)

    response = client.post(f"{APPLICATIONS}{application.reference}/withdraw/", {"reason": "duplicate"})

    assert response.status_code == 200
    application.refresh_from_db()
    assert application.status == S.WITHDRAWN


def test_an_outsider_sees_none_of_them(client, outsider, application):
    client.force_login(outsider)

    assert references(client.get(APPLICATIONS)) == set()
    assert_error_shape(client.get(f"{APPLICATIONS}{application.reference}/"), 404, "not_found")


@pytest.mark.parametrize("endpoint", ["submit", "withdraw"])
def test_an_outsider_cannot_act_on_an_application_and_nothing_changes(client, outsider, application, endpoint):
    if endpoint == "submit":
        Application.objects.filter(pk=application.pk).update(status=S.DRAFT)
    client.force_login(outsider)
    before = snapshot()

    response = client.post(f"{APPLICATIONS}{application.reference}/{endpoint}/")

    assert_error_shape(response, 404, "not_found")
    assert snapshot() == before


def test_an_outsider_cannot_edit_an_application(client, outsider, organisation, provider, program):
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    client.force_login(outsider)
    before = snapshot()

    response = client.patch(
        f"{APPLICATIONS}{draft.reference}/", {"claimed_amount": "1.00"}, content_type="application/json"
    )

    assert_error_shape(response, 404, "not_found")
    assert snapshot() == before


def test_a_provider_user_sees_the_applications_naming_its_provider(client, provider_user, application, others):
    client.force_login(provider_user)

    assert references(client.get(APPLICATIONS)) == {application.reference}
    assert client.get(f"{APPLICATIONS}{application.reference}/").status_code == 200
    assert_error_shape(client.get(f"{APPLICATIONS}{others.reference}/"), 404, "not_found")


@pytest.mark.parametrize("endpoint", ["submit", "withdraw"])
def test_a_provider_user_cannot_act_as_the_applicant(client, provider_user, application, endpoint):
    client.force_login(provider_user)
    before = snapshot()

    response = client.post(f"{APPLICATIONS}{application.reference}/{endpoint}/")

    assert_error_shape(response, 403, "permission_denied")
    assert snapshot() == before


def test_a_provider_user_cannot_create_an_application(client, provider_user, program, provider):
    client.force_login(provider_user)
    before = snapshot()

    response = client.post(
        APPLICATIONS,
        {
            "program": program.code,
            "provider": provider.organisation.uscc,
            "accelerator": "NVIDIA A100 80GB",
            "claimed_card_hours": "1.0000",
            "claimed_amount": "1.00",
            "scenario": "training",
            "project_summary": "x",
        },
        content_type="application/json",
    )

    assert_error_shape(response, 403, "permission_denied")
    assert snapshot() == before


@pytest.mark.parametrize("who", ["reviewer", "officer", "auditor"])
def test_staff_with_the_view_permission_see_every_application(request, client, application, others, who):
    client.force_login(request.getfixturevalue(who))

    assert references(client.get(APPLICATIONS)) == {application.reference, others.reference}


@pytest.mark.parametrize("who", ["reviewer", "officer"])
def test_staff_cannot_submit_or_withdraw_for_an_enterprise(request, client, application, who):
    client.force_login(request.getfixturevalue(who))
    before = snapshot()

    response = client.post(f"{APPLICATIONS}{application.reference}/withdraw/")

    assert_error_shape(response, 403, "permission_denied")
    assert snapshot() == before


def test_staff_without_the_view_permission_see_nothing(client, application):
    client.force_login(factories.make_user("clerk", staff=True))

    assert references(client.get(APPLICATIONS)) == set()


def test_anonymous_users_are_refused(client, application, coupon):
    for url in (APPLICATIONS, f"{APPLICATIONS}{application.reference}/", COUPONS, f"{COUPONS}{coupon.code}/"):
        error = assert_error_shape(client.get(url), 401, "not_authenticated")
        assert error["message"]
    before = snapshot()

    assert_error_shape(client.post(f"{APPLICATIONS}{application.reference}/withdraw/"), 401, "not_authenticated")
    assert_error_shape(client.post(f"{COUPONS}{coupon.code}/revoke/", {"reason": "x"}), 401, "not_authenticated")
    assert snapshot() == before


def test_the_owner_creates_a_draft_for_their_own_organisation(client, owner, organisation, provider, program):
    client.force_login(owner)

    response = client.post(
        APPLICATIONS,
        {
            "program": program.code,
            "provider": provider.organisation.uscc,
            "accelerator": "NVIDIA A100 80GB",
            "claimed_card_hours": "100.0000",
            "claimed_amount": "5000.00",
            "scenario": "training",
            "project_summary": "推理服务",
        },
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    application = Application.objects.get(reference=response.json()["reference"])
    assert (application.organisation, application.status, application.created_by) == (organisation, S.DRAFT, owner)
    submitted = client.post(f"{APPLICATIONS}{application.reference}/submit/")
    assert submitted.json()["status"] == S.SUBMITTED


# --- API: coupons ---------------------------------------------------------------------------


@pytest.fixture
def other_coupon(others, reviewer):
    from coupons.services.review import review_approve

    return review_approve(application=others, reviewer=reviewer).coupon


@pytest.mark.parametrize("who", ["owner", "teammate"])
def test_the_owner_sees_the_organisations_coupons_only(request, client, coupon, other_coupon, who):
    client.force_login(request.getfixturevalue(who))

    assert codes(client.get(COUPONS)) == {coupon.code}
    body = client.get(f"{COUPONS}{coupon.code}/").json()
    assert (body["face_value"], body["balance"], body["state"]) == ("20000.00", "20000.00", "active")


def test_an_outsider_gets_a_404_for_a_coupon(client, outsider, coupon):
    client.force_login(outsider)

    assert codes(client.get(COUPONS)) == set()
    assert_error_shape(client.get(f"{COUPONS}{coupon.code}/"), 404, "not_found")


def test_a_provider_user_sees_the_coupons_naming_its_provider(client, provider_user, coupon, other_coupon):
    client.force_login(provider_user)

    assert codes(client.get(COUPONS)) == {coupon.code}
    assert_error_shape(client.get(f"{COUPONS}{other_coupon.code}/"), 404, "not_found")


@pytest.mark.parametrize("who", ["reviewer", "officer", "auditor"])
def test_staff_see_every_coupon(request, client, coupon, other_coupon, who):
    client.force_login(request.getfixturevalue(who))

    assert codes(client.get(COUPONS)) == {coupon.code, other_coupon.code}


@pytest.mark.parametrize("who", ["owner", "provider_user", "outsider", "reviewer", "auditor"])
@pytest.mark.parametrize("action", ["freeze", "revoke"])
def test_only_staff_with_the_change_permission_change_a_coupons_state(request, client, coupon, who, action):
    client.force_login(request.getfixturevalue(who))
    before = snapshot()

    response = client.post(f"{COUPONS}{coupon.code}/{action}/", {"reason": "x"}, content_type="application/json")

    assert_error_shape(response, 403, "permission_denied")
    assert snapshot() == before


def test_an_officer_freezes_and_revokes_a_coupon(client, officer, coupon):
    client.force_login(officer)

    frozen = client.post(f"{COUPONS}{coupon.code}/freeze/", {"reason": "case opened"}, content_type="application/json")
    revoked = client.post(f"{COUPONS}{coupon.code}/revoke/", {"reason": "confirmed"}, content_type="application/json")

    assert frozen.json()["state"] == "frozen"
    assert (revoked.json()["state"], revoked.json()["returned_amount"]) == ("revoked", "20000.00")
    coupon.refresh_from_db()
    assert (coupon.state, coupon.account.balance) == (Coupon.State.REVOKED, Decimal("0.00"))
    assert client.get(f"{COUPONS}{coupon.code}/").json()["balance"] == "0.00"


def test_the_revoke_response_shows_the_balance_after_the_revocation(client, officer, coupon):
    client.force_login(officer)

    revoked = client.post(f"{COUPONS}{coupon.code}/revoke/", {"reason": "confirmed"}, content_type="application/json")

    assert revoked.json()["balance"] == "0.00"


def test_a_coupon_state_change_without_a_reason_is_a_400_naming_the_field(client, officer, coupon):
    client.force_login(officer)
    before = snapshot()

    response = client.post(f"{COUPONS}{coupon.code}/freeze/", {"reason": ""}, content_type="application/json")

    error = assert_error_shape(response, 400, "validation_failed")
    assert [d["field"] for d in error["details"]] == ["reason"]
    assert snapshot() == before


def test_unfreezing_an_active_coupon_is_a_409(client, officer, coupon):
    client.force_login(officer)
    before = snapshot()

    response = client.post(f"{COUPONS}{coupon.code}/unfreeze/", {"reason": "x"}, content_type="application/json")

    assert_error_shape(response, 409, "coupon_state")
    assert snapshot() == before


# --- portal ---------------------------------------------------------------------------------


def portal_references(response) -> set[str]:
    assert response.status_code == 200
    return {application.reference for application in response.context["applications"]}


@pytest.mark.parametrize("who", ["owner", "teammate"])
def test_the_portal_lists_the_organisations_applications(request, client, application, others, who):
    client.force_login(request.getfixturevalue(who))

    response = client.get("/portal/applications/")

    assert portal_references(response) == {application.reference}
    assert application.reference in response.content.decode()
    assert others.reference not in response.content.decode()
    detail = client.get(f"/portal/applications/{application.reference}/")
    assert detail.status_code == 200
    assert "withdraw" in detail.context["actions"]


def test_the_portal_gives_an_outsider_a_404_and_changes_nothing(client, outsider, application):
    client.force_login(outsider)
    before = snapshot()

    assert portal_references(client.get("/portal/applications/")) == set()
    assert client.get(f"/portal/applications/{application.reference}/").status_code == 404
    assert client.get(f"/portal/applications/{application.reference}/edit/").status_code == 404
    assert client.post(f"/portal/applications/{application.reference}/withdraw/").status_code == 404
    assert client.post(f"/portal/applications/{application.reference}/submit/").status_code == 404
    assert snapshot() == before


def test_the_portal_lets_the_owner_withdraw(client, owner, application):
    client.force_login(owner)

    response = client.post(f"/portal/applications/{application.reference}/withdraw/", {"reason": "no longer needed"})

    assert response.status_code == 302
    application.refresh_from_db()
    assert application.status == S.WITHDRAWN


def test_the_portal_shows_a_provider_user_its_applications_without_actions(client, provider_user, application, others):
    client.force_login(provider_user)
    before = snapshot()

    assert portal_references(client.get("/portal/applications/")) == {application.reference}
    detail = client.get(f"/portal/applications/{application.reference}/")
    assert detail.status_code == 200
    assert detail.context["actions"] == []
    assert client.post(f"/portal/applications/{application.reference}/withdraw/").status_code == 403
    assert client.get(f"/portal/applications/{others.reference}/").status_code == 404
    assert snapshot() == before


def test_the_portal_sends_anonymous_users_to_log_in(client, application):
    for url in ("/portal/applications/", f"/portal/applications/{application.reference}/", "/portal/coupons/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    before = snapshot()
    assert client.post(f"/portal/applications/{application.reference}/withdraw/").status_code == 302
    assert snapshot() == before


def test_the_portal_lists_coupons_for_the_owner_and_the_provider_only(
    client, owner, outsider, provider_user, coupon, other_coupon
):
    for user, expected in ((owner, {coupon.code}), (provider_user, {coupon.code}), (outsider, {other_coupon.code})):
        client.force_login(user)
        response = client.get("/portal/coupons/")
        assert response.status_code == 200
        assert {c.code for c in response.context["coupons"]} == expected


def test_the_portal_detail_shows_the_coupon_of_an_approved_application(client, owner, application, coupon):
    client.force_login(owner)

    response = client.get(f"/portal/applications/{application.reference}/")

    assert response.context["coupon"] == coupon
    assert coupon.code in response.content.decode()
    assert Coupon.objects.get().face_value == Decimal("20000.00")


# --- admin coupon state ---------------------------------------------------------------------


def test_the_admin_coupon_state_form_refuses_staff_without_the_change_permission(client, reviewer, coupon):
    client.force_login(reviewer)
    before = snapshot()

    response = client.post(f"/admin/coupons/coupon/{coupon.pk}/state/", {"action": "revoke", "reason": "x"})

    assert response.status_code == 403
    assert snapshot() == before


def test_the_admin_coupon_state_form_freezes_with_a_reason(client, officer, coupon):
    client.force_login(officer)

    refused = client.post(f"/admin/coupons/coupon/{coupon.pk}/state/", {"action": "freeze", "reason": ""})
    coupon.refresh_from_db()
    assert (refused.status_code, coupon.state) == (302, Coupon.State.ACTIVE)
    response = client.post(f"/admin/coupons/coupon/{coupon.pk}/state/", {"action": "freeze", "reason": "case opened"})

    assert response.status_code == 302
    coupon.refresh_from_db()
    assert coupon.state == Coupon.State.FROZEN
