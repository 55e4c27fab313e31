"""The Celery app. Its configuration lives in Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("coupons_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _visibility_timeout() -> None:
    """``CELERY_VISIBILITY_TIMEOUT`` (seconds): how long Redis waits before it hands a task that a
    worker took and never acknowledged (the worker was killed; tasks are acknowledged late) to
    another worker. Kombu's default is an hour, and its workers look for such tasks only every
    100 seconds (every 10th check of 10 s); with the variable set they look every quarter of the
    timeout (at most every 10 s), so a lost task runs again within the timeout and 10 s. The
    timeout must stay above the longest task (a chunk of the nightly rescore), or a task still
    running is handed out a second time (the rescore's chunks then write once, but the work is
    done twice). The fault tests set a few seconds. Read here, beside the settings' transport
    options it extends, because only the Redis transport of the workers uses it."""
    from django.conf import settings

    from config.env import env_int

    seconds = env_int("CELERY_VISIBILITY_TIMEOUT", 0, minimum=0)
    if seconds:
        options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {})
        app.conf.broker_transport_options = {
            **options,
            "visibility_timeout": seconds,
            "unacked_restore_interval": min(10, max(1, seconds // 4)),
            "unacked_restore_throttle": 1,
        }


_visibility_timeout()
