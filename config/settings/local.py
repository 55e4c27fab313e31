"""Development and the embedded demo: SQLite unless DATABASE_URL says otherwise, tasks
in-process unless CELERY_BROKER_URL names a broker."""

from .base import *  # noqa: F403
from .base import env_bool, env_str

DEBUG = env_bool("DEBUG", True)
# A development key only; production refuses to start without SECRET_KEY.
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
# Static files straight from the apps' folders while developing (production runs collectstatic).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
