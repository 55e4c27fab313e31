"""Middleware of our own."""

from __future__ import annotations

import logging

from django.http import HttpResponse, JsonResponse
from django.utils.html import escape
from django.utils.translation import gettext as _

from core.api import DATABASE_RETRY_AFTER, database_unavailable, error_body

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """A page (or any view) that fails because the database is away or busy answers 503 with
    ``Retry-After``, as the API does (``core.api.exception_handler``), rather than a 500: the
    user is told to try again, the proxy and the logs see an outage, not a bug. The page is plain
    HTML that needs no database (no session, no user, no template)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not database_unavailable(exception):
            return None
        logger.error("database unavailable: %s", exception, exc_info=exception)
        if request.path.startswith("/api/"):
            response = JsonResponse(
                error_body("database_unavailable", "The database is unavailable; try again shortly."), status=503
            )
        else:
            title = escape(_("The service is briefly unavailable"))
            text = escape(_("The database cannot be reached just now; please try again shortly."))
            response = HttpResponse(
                f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                f"<body><h1>{title}</h1><p>{text}</p></body></html>",
                status=503,
            )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
