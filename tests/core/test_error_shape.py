"""The one error shape ``{"error": {"code", "message", "details": [...]}}`` for every API
error: ours (ApplicationError), DRF's and Django's."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions

from core.api import exception_handler
from core.errors import Conflict, NotFound, NotPermitted, Problem, ValidationFailed


def handle(exc):
    return exception_handler(exc, {})


def test_an_application_error_keeps_its_code_message_and_problems_as_fields_and_indexes():
    """A CSV import reports line and column; in the API the same problem is about the index
    of a record and a field, which is what API clients look for."""
    error = ValidationFailed(
        "2 problem(s) in the usage batch; nothing was imported.",
        details=[
            Problem("is empty", line=3, column="card_hours"),
            Problem("duplicate of record 1", line=4),
            Problem("the batch is empty"),
        ],
    )

    response = handle(error)

    assert response.status_code == 400
    assert response.data == {
        "error": {
            "code": "validation_failed",
            "message": "2 problem(s) in the usage batch; nothing was imported.",
            "details": [
                {"reason": "is empty", "index": 3, "field": "card_hours"},
                {"reason": "duplicate of record 1", "index": 4},
                {"reason": "the batch is empty"},
            ],
        }
    }


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("No coupon 42."), 404, "not_found"),
        (NotPermitted("Only the owner may do that."), 403, "permission_denied"),
        (Conflict("The key was used with another payload."), 409, "conflict"),
        (ValidationFailed("Bad.", code="over_budget"), 400, "over_budget"),
    ],
)
def test_each_application_error_has_its_status_and_code(error, status, code):
    response = handle(error)

    assert response.status_code == status
    assert response.data == {"error": {"code": code, "message": error.message, "details": []}}


def test_a_drf_validation_error_is_flattened_to_fields_and_reasons():
    error = exceptions.ValidationError(
        {
            "name": ["This field is required."],
            "organisation": {"uscc": ["Not a well-formed USCC."]},
            "non_field_errors": ["The programme is closed."],
        }
    )

    response = handle(error)

    assert response.status_code == 400
    assert response.data == {
        "error": {
            "code": "validation_failed",
            "message": "The request is not valid.",
            "details": [
                {"field": "name", "reason": "This field is required."},
                {"field": "organisation.uscc", "reason": "Not a well-formed USCC."},
                {"reason": "The programme is closed."},
            ],
        }
    }


def test_a_validation_error_without_fields():
    response = handle(exceptions.ValidationError("The amount must be positive."))

    assert response.data["error"]["details"] == [{"reason": "The amount must be positive."}]


def test_errors_inside_a_list_of_records_keep_the_records_index():
    """A many=True serializer reports one dict per record ({} for a valid one); the client
    needs the record's index to find the bad one."""
    error = exceptions.ValidationError({"records": [{}, {"amount": ["Must be positive."]}]})

    response = handle(error)

    assert response.data["error"]["details"] == [{"field": "records[1].amount", "reason": "Must be positive."}]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Http404("No Organisation matches the given query."), 404, "not_found"),
        (PermissionDenied(), 403, "permission_denied"),
        (exceptions.NotFound(), 404, "not_found"),
        (exceptions.PermissionDenied(), 403, "permission_denied"),
        (exceptions.MethodNotAllowed("DELETE"), 405, "method_not_allowed"),
        (exceptions.Throttled(wait=30), 429, "throttled"),
        (exceptions.ParseError(), 400, "parse_error"),
    ],
)
def test_django_and_drf_errors_take_the_same_shape(error, status, code):
    response = handle(error)

    assert response.status_code == status
    assert set(response.data) == {"error"}
    assert response.data["error"]["code"] == code
    assert response.data["error"]["message"]
    assert response.data["error"]["details"] == []


def test_a_401_tells_the_client_how_to_authenticate():
    response = handle(exceptions.NotAuthenticated())

    assert response.status_code == 401
    assert response.data["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Api-Key realm="api"'


def test_a_real_server_error_is_left_to_django():
    assert handle(ZeroDivisionError("boom")) is None


@pytest.mark.django_db
def test_a_framework_error_raised_in_a_view_reaches_the_client_in_the_shape(client, officer):
    """End to end through DRF: an unsupported method on the read-only registry."""
    client.force_login(officer)

    response = client.delete("/api/v1/organisations/")

    assert response.status_code == 405
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": 'Method "DELETE" not allowed.', "details": []}
    }
