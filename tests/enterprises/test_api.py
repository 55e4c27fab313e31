"""The registry API: staff with the view permission see the registry; a portal user sees only
their own organisation; everyone else sees nothing; errors come in the one error shape."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from enterprises.models import Organisation
from tests import factories

pytestmark = pytest.mark.django_db

ORGANISATIONS = "/api/v1/organisations/"
ME = "/api/v1/me/"


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return body["error"]


def usccs(response) -> list[str]:
    assert response.status_code == 200
    return [item["uscc"] for item in response.json()["results"]]


def test_an_officer_sees_every_organisation(client, officer, organisation, other_organisation):
    third = factories.make_organisation()
    client.force_login(officer)

    response = client.get(ORGANISATIONS)

    assert response.json()["count"] == 3
    assert sorted(usccs(response)) == sorted([organisation.uscc, other_organisation.uscc, third.uscc])


def test_an_organisation_is_serialised_with_its_industry_and_data_quality(client, officer):
    org = factories.make_organisation(uscc="91350100M0001TGQXM", uscc_checksum_ok=False, data_quality_note="USCC: x")
    client.force_login(officer)

    body = client.get(f"{ORGANISATIONS}{org.pk}/").json()

    assert body["uscc"] == "91350100M0001TGQXM"
    assert body["industry_code"] == "I6513"
    assert body["industry_name"] == "应用软件开发"
    assert body["digital_core"] is True
    assert body["registered_capital"] == "1000000.00"
    assert body["data_quality_flag"] is True
    assert body["data_quality_note"] == "USCC: x"


def test_the_data_quality_filter(client, officer, organisation):
    flagged = factories.make_organisation(uscc="91350211M0000XUF46", uscc_checksum_ok=False)
    factories.make_organisation(uscc="91350203M0001FUE2P", uscc_checksum_ok=False, data_quality_resolved=True)
    client.force_login(officer)

    assert usccs(client.get(ORGANISATIONS, {"data_quality_flag": "true"})) == [flagged.uscc]
    assert flagged.uscc not in usccs(client.get(ORGANISATIONS, {"data_quality_flag": "false"}))


def test_a_reviewer_and_an_auditor_may_read_the_registry(client, reviewer, auditor, organisation):
    for user in (reviewer, auditor):
        client.force_login(user)
        assert usccs(client.get(ORGANISATIONS)) == [organisation.uscc]


def test_staff_without_the_view_permission_see_nothing(client, organisation):
    clerk = factories.make_user("clerk", staff=True)
    client.force_login(clerk)

    response = client.get(ORGANISATIONS)

    assert response.json()["count"] == 0
    assert_error_shape(client.get(f"{ORGANISATIONS}{organisation.pk}/"), 404, "not_found")


def test_the_owner_sees_only_their_own_organisation(client, owner, organisation, other_organisation):
    client.force_login(owner)

    response = client.get(ORGANISATIONS)

    assert response.json()["count"] == 1
    assert usccs(response) == [organisation.uscc]
    assert client.get(f"{ORGANISATIONS}{organisation.pk}/").json()["uscc"] == organisation.uscc


def test_the_owner_gets_404_for_another_organisation(client, owner, other_organisation):
    """404, not 403: a portal user must not learn which organisation ids exist."""
    client.force_login(owner)

    response = client.get(f"{ORGANISATIONS}{other_organisation.pk}/")

    error = assert_error_shape(response, 404, "not_found")
    assert error["details"] == []
    assert other_organisation.name not in response.content.decode()


def test_filtering_cannot_widen_the_owners_view(client, owner, other_organisation):
    client.force_login(owner)

    response = client.get(ORGANISATIONS, {"uscc": other_organisation.uscc})

    assert response.json()["count"] == 0


def test_a_provider_user_sees_the_providers_organisation(client, provider_user, provider, organisation):
    client.force_login(provider_user)

    assert usccs(client.get(ORGANISATIONS)) == [provider.organisation.uscc]


@pytest.mark.parametrize("url", [ORGANISATIONS, f"{ORGANISATIONS}1/", ME])
def test_anonymous_requests_get_401_in_the_error_shape(client, organisation, url):
    response = client.get(url)

    error = assert_error_shape(response, 401, "not_authenticated")
    assert error["details"] == []
    assert response["WWW-Authenticate"] == 'Api-Key realm="api"'


def test_the_api_is_read_only(client, officer, organisation):
    client.force_login(officer)

    response = client.post(
        ORGANISATIONS, {"uscc": factories.make_uscc(), "name": "新公司"}, content_type="application/json"
    )

    assert_error_shape(response, 405, "method_not_allowed")
    assert Organisation.objects.count() == 1


def test_me_describes_the_caller(client, owner, officer, organisation):
    client.force_login(owner)
    body = client.get(ME).json()
    assert (body["kind"], body["role"], body["username"]) == ("enterprise", "enterprise", "owner")
    assert body["organisation"]["uscc"] == organisation.uscc

    client.force_login(officer)
    body = client.get(ME).json()
    assert (body["kind"], body["organisation"]) == ("staff", None)


# --- query-count guard --------------------------------------------------------------------


def count_list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(ORGANISATIONS)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("persona", ["officer", "owner"])
def test_the_list_costs_the_same_queries_for_3_and_for_30_organisations(
    request, client, django_assert_max_num_queries, persona
):
    """GIVEN a list endpoint WHEN the registry grows tenfold THEN the number of queries does not
    (the industry is select_related, the serializer touches no other relation)."""
    user = request.getfixturevalue(persona)
    client.force_login(user)
    for _ in range(3):
        factories.make_organisation()
    with_three = count_list_queries(client)

    for _ in range(27):
        factories.make_organisation()
    with django_assert_max_num_queries(7):  # +1: the permission check for personal data
        response = client.get(ORGANISATIONS)

    assert response.json()["count"] == (30 if persona == "officer" else 1)
    assert count_list_queries(client) == with_three
