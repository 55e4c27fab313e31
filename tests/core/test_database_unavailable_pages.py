"""A page that fails because the database is away answers 503 with ``Retry-After`` (as the API
does: ``core.middleware.DatabaseUnavailableMiddleware``), in the user's language; a bug stays a
500."""

import pytest
from django.db import OperationalError, ProgrammingError
from django.test import Client, override_settings
from django.urls import path

from tests.faults.test_database_lost_during_ingest import lost_connection

FAILURE: list[Exception] = []


def failing_page(request):
    raise FAILURE[0]


urlpatterns = [path("page/", failing_page), path("api/v1/thing/", failing_page)]


@pytest.fixture
def failing(monkeypatch):
    def set_failure(error):
        monkeypatch.setattr(f"{__name__}.FAILURE", [error])

    with override_settings(ROOT_URLCONF=__name__):
        yield set_failure


@pytest.mark.parametrize(
    ("error", "status"),
    [(lost_connection(), 503), (OperationalError("database is locked"), 503), (ProgrammingError("a bug"), 500)],
)
def test_a_page_that_loses_the_database_answers_503_to_retry(failing, error, status):
    failing(error)

    response = Client(raise_request_exception=False).get("/page/", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == status
    if status == 503:
        assert response["Retry-After"] == "10"
        assert b"please try again shortly" in response.content


def test_the_page_speaks_the_users_language(failing):
    failing(lost_connection())

    response = Client(raise_request_exception=False).get("/page/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 503
    assert "请稍后重试" in response.content.decode()


def test_under_api_the_answer_is_the_one_error_shape(failing):
    failing(lost_connection())

    response = Client(raise_request_exception=False).get("/api/v1/thing/")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
