"""Fast, deterministic test settings. DATABASE_URL selects PostgreSQL (CI) or the SQLite
default; Celery runs eagerly unless a test starts a real worker itself."""

from .base import *  # noqa: F403
from .base import env_str

DEBUG = False
SECRET_KEY = env_str("SECRET_KEY", "test-only-key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests run tasks in-process; tests/integration starts a real worker on Redis itself.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
LANGUAGE_CODE = "en"
# Sign-in lockout is tested with it switched on (tests/security); elsewhere tests sign in freely.
AXES_ENABLED = False
WHITENOISE_USE_FINDERS = True
# Tests exercise the usage-triggered rescore (in-process).
FRAUD_RESCORE_ON_USAGE = True
