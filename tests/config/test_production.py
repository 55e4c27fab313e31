"""The production settings: ``manage.py check --deploy`` clean, and the database connection
settings a restart needs. Run in a subprocess: settings load once per process."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="coupons.example.gov.cn",
        CSRF_TRUSTED_ORIGINS="https://coupons.example.gov.cn",
        DATABASE_URL=f"sqlite:///{tmp_path / 'production.sqlite3'}",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    return env


def run(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=production_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_finds_nothing_under_the_production_settings(tmp_path):
    result = run(tmp_path, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_keeps_connections_and_checks_them_before_use(tmp_path):
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])"

    result = run(tmp_path, "shell", "-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["60", "True"]


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]

    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
