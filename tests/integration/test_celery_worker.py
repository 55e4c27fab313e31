"""Queued work on the real parts: a Celery worker process on Redis, against the PostgreSQL test
database, runs the tasks the beat schedule sends. Needs CELERY_BROKER_URL=redis://… (CI sets it)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from coupons.ledger_check import check_ledger
from coupons.models import Coupon
from coupons.services.review import review_approve
from fraud.models import RiskAssessment
from tests.coupons.conftest import make_application, make_program

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("CELERY_BROKER_URL", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not BROKER.startswith("redis://"), reason="needs CELERY_BROKER_URL=redis://…"),
]


@pytest.fixture
def worker(tmp_path):
    """A worker process consuming a queue of its own, on the test database."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "FRAUD_MODEL_PATH": str(tmp_path / "model.pickle"),
        "DEBUG": "false",
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield queue
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        print(output[-4000:])  # shown when the test fails


def send(name: str, queue: str, *args):
    with celery_app.connection_for_write(BROKER) as conn:
        celery_app.send_task(name, args=args, queue=queue, connection=conn)


def wait_for(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def test_a_worker_on_redis_expires_coupons_and_returns_the_money_once(worker, organisation, provider, reviewer):
    program = make_program(code="AH-WORKER")
    coupon = review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program), reviewer=reviewer
    ).coupon
    now = timezone.now()
    Coupon.objects.filter(pk=coupon.pk).update(
        valid_from=now - dt.timedelta(days=2), valid_until=now - dt.timedelta(minutes=1)
    )

    send("coupons.tasks.expire_coupons", worker)
    send("coupons.tasks.expire_coupons", worker)  # delivered twice: the second changes nothing

    assert wait_for(lambda: Coupon.objects.get(pk=coupon.pk).state == Coupon.State.EXPIRED)
    time.sleep(1.0)  # let the second delivery run too
    coupon.refresh_from_db()
    assert coupon.returned_amount == Decimal("20000.00")
    assert coupon.account.balance == Decimal("0.00")
    assert check_ledger().ok


def test_a_worker_on_redis_scores_a_chunk_of_a_programme(worker, organisation, provider):
    program = make_program(code="AH-SCORE")
    application = make_application(organisation=organisation, provider=provider, program=program)
    RiskAssessment.objects.all().delete()

    send("fraud.tasks.score_chunk", worker, program.pk, [application.pk])

    assert wait_for(lambda: RiskAssessment.objects.filter(application=application).exists())
    assessment = RiskAssessment.objects.get(application=application)
    application.refresh_from_db()
    assert application.risk_score == assessment.score
    assert assessment.model_version == "rules-only"
    assert settings.CELERY_TASK_ALWAYS_EAGER  # this process kept its eager setting; the worker did the work
