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


def health(request):
    """Liveness: the process answers. No database, so a database outage does not get healthy
    web processes killed by the orchestrator."""
    return JsonResponse({"status": "ok"})


def ready(request):
    """Readiness: the database answers and is migrated, and the broker answers when one is
    configured. 503 with the failing part otherwise, so a proxy stops sending traffic here."""
    from django.conf import settings
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    checks, healthy = {}, True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        checks["database"] = "ok" if not pending else f"{len(pending)} migrations pending"
        healthy &= not pending
    except DatabaseError as error:
        checks["database"], healthy = f"unavailable: {error.__class__.__name__}", False
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis://") and not settings.CELERY_TASK_ALWAYS_EAGER:
        try:
            import redis

            redis.Redis.from_url(broker, socket_connect_timeout=1, socket_timeout=1).ping()
            checks["broker"] = "ok"
        except Exception as error:  # any failure to reach the broker means not ready
            checks["broker"], healthy = f"unavailable: {error.__class__.__name__}", False
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )
