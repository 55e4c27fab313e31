import pytest


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/login/", "/api/schema/", "/api/docs/", "/accounts/login/"])
def test_public_pages_answer(client, url):
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_portal_needs_a_sign_in(client):
    response = client.get("/portal/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_portal_shows_the_users_organisation(client, owner, organisation):
    client.force_login(owner)
    response = client.get("/portal/")
    assert response.status_code == 200
    assert organisation.name in response.content.decode()
