"""The single DRF exception handler: every API error, ours or the framework's, leaves in the
one error shape ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import datetime as dt
import logging

from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from django_filters import utils as filter_utils
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.datetimes import unstorable_reason
from core.errors import ApplicationError

logger = logging.getLogger(__name__)
# A database that went away (restart, failover, a killed connection; tests/faults) is a 503 to
# retry, not a 500: the transaction in flight was rolled back, and the writes a provider retries
# are idempotent (usage batches by their content, claims by Idempotency-Key). Seconds in
# Retry-After: a restart takes a few.
DATABASE_RETRY_AFTER = 10
# SQLSTATE classes of a lost or refused connection, a server shutting down or starting, too many
# connections, and a transaction rolled back by the server (deadlock, serialization).
UNAVAILABLE_SQLSTATES = ("08", "57P", "53", "40")


def database_unavailable(exc) -> bool:
    """An error of the database being away or busy, not of the query (those stay 500s)."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def _flatten(detail, prefix: str = "") -> list[dict]:
    """DRF's nested ``{"field": ["msg"]}`` into a flat list of ``{"field", "reason"}``."""
    problems: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = key if key != "non_field_errors" else ""
            problems.extend(_flatten(value, f"{prefix}.{field}" if prefix and field else (field or prefix)))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                problems.extend(_flatten(value, f"{prefix}[{index}]" if prefix else f"[{index}]"))
            else:
                problems.extend(_flatten(value, prefix))
    else:
        problem = {"reason": str(detail)}
        if prefix:
            problem["field"] = prefix
        problems.append(problem)
    return problems


# A code or reference in an API path (programmes, applications, coupons): the router's default
# ``[^/.]+`` less control characters. PostgreSQL refuses NUL in text, so ``%00`` in the path must
# be a 404 at the URL rather than a DataError at the query.
TEXT_LOOKUP_REGEX = r"[^/.\x00-\x1f\x7f]+"


class Pagination(LimitOffsetPagination):
    """Pages of at most 1,000 rows: a client cannot ask the database for a page it cannot hold
    (``?limit=2**63``) or for the whole table at once."""

    max_limit = 1000


class FilterBackend(DjangoFilterBackend):
    """django-filter, and a date-time in a filter that the database cannot take
    (``core.datetimes``) is a 400 naming the parameter, like any other invalid filter value."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if filterset.is_valid():
            for name, value in list(filterset.form.cleaned_data.items()):
                if isinstance(value, dt.datetime) and (reason := unstorable_reason(value)):
                    filterset.form.add_error(name, reason)
        if not filterset.is_valid():
            raise filter_utils.translate_validation(filterset.errors)
        return filterset.qs


def error_body(code: str, message: str, details: list[dict] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or []}}


def exception_handler(exc, context):
    if database_unavailable(exc):
        logger.error("database unavailable: %s", exc, exc_info=exc)
        response = Response(
            error_body("database_unavailable", "The database is unavailable; try again shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
    if isinstance(exc, ApplicationError):
        details = []
        for problem in exc.details:
            item = problem.as_dict()
            # In the API a "column" is a field and a "line" is the index of a record.
            if "column" in item:
                item["field"] = item.pop("column")
            if "line" in item:
                item["index"] = item.pop("line")
            details.append(item)
        return Response(error_body(exc.code, exc.message, details), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real server error: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("validation_failed", "The request is not valid.", _flatten(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(exc, "default_code", "error")
        if isinstance(detail, dict | list):
            body = error_body(code, str(getattr(exc, "default_detail", "")), _flatten(detail))
        else:
            body = error_body(getattr(detail, "code", None) or code, str(detail))
    response.data = body
    if response.status_code == status.HTTP_401_UNAUTHORIZED and not response.get("WWW-Authenticate"):
        response["WWW-Authenticate"] = 'Api-Key realm="api"'
    return response


# Django's own 400s, said plainly: its messages name settings (ALLOWED_HOSTS, DATA_UPLOAD_MAX_…)
# that are no business of a client.
BAD_REQUESTS = [
    (DisallowedHost, "bad_host", "The Host header names no host this server answers to."),
    (RequestDataTooBig, "too_large", "The request body is too large."),
    (TooManyFieldsSent, "too_many_fields", "The request has too many parameters or form fields."),
    (TooManyFilesSent, "too_many_files", "The request has too many uploaded files."),
]


def bad_request(request, exception):
    """``handler400``: a request Django itself refuses before or around the view (a bad Host
    header, too many fields or files, a body too large, any ``SuspiciousOperation``) is, under
    /api/, a 400 in the one error shape; elsewhere Django's page."""
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    code, message = "bad_request", "The request is not valid."
    for kind, kind_code, kind_message in BAD_REQUESTS:
        if isinstance(exception, kind):
            code, message = kind_code, kind_message
            break
    return JsonResponse(error_body(code, message), status=400)
