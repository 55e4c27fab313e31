"""Error pages: under /api/ every error is JSON in the one error shape; elsewhere Django's."""

from django.http import JsonResponse
from django.views import defaults

from core.api import error_body


def page_not_found(request, exception):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No such endpoint or object."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "The server failed; the error was logged."), status=500)
    return defaults.server_error(request)
