"""Celery tasks of the fraud module: thin shells over ``fraud.scoring`` and ``fraud.training``.
Acknowledged late, so a worker killed mid-task leaves the work to another (after the broker's
visibility timeout, ``CELERY_VISIBILITY_TIMEOUT``). A chunk of the nightly rescore is idempotent:
delivered again (its worker was killed after the commit and before the acknowledgement, or it
outlived the visibility timeout and a second worker took it) it writes no second assessment.
Training skips unchanged data."""

from __future__ import annotations

import hashlib

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

RESCORE_CHUNK = 5000
DEBOUNCE_SECONDS = 60
PENDING = "fraud:rescore-pending"
PENDING_ENTERPRISES = "fraud:rescore-enterprises"
# A rescore run's watermark, per rescore_all task id, kept as long as a run may take to be redelivered.
RUN_WATERMARK = "fraud:rescore-run:{}"
RUN_WATERMARK_SECONDS = 2 * 24 * 3600

TASK_OPTIONS = {"acks_late": True, "autoretry_for": (Exception,), "retry_backoff": True, "max_retries": 3}


@shared_task(**TASK_OPTIONS)
def score_application(application_id: int) -> str:
    from fraud.scoring import score_applications

    results = score_applications([application_id])
    return f"scored {sum(r.scored for r in results)}"


@shared_task(**TASK_OPTIONS)
def score_chunk(program_id: int, application_ids: list[int], after_assessment: int | None = None) -> str:
    """Score a chunk of a programme. Within a rescore run (``after_assessment``: the highest
    assessment id when the run began) an application already assessed since then is skipped, so a
    chunk delivered twice counts each application once. Two deliveries running at the same time
    queue on a PostgreSQL advisory lock of the chunk, held until the first one's commit (or its
    connection's end, when its worker dies), and the second then finds the work done."""
    from coupons.models import Program
    from fraud.models import RiskAssessment
    from fraud.scoring import score_program

    program = Program.objects.get(pk=program_id)
    if after_assessment is None:
        result = score_program(program, application_ids=application_ids)
        return f"{result.program}: scored {result.scored}"
    with transaction.atomic():
        _lock_chunk(program_id, application_ids, after_assessment)
        done = set(
            RiskAssessment.objects.filter(application_id__in=application_ids, pk__gt=after_assessment).values_list(
                "application_id", flat=True
            )
        )
        todo = [pk for pk in application_ids if pk not in done]
        scored = score_program(program, application_ids=todo).scored if todo else 0
    skipped = f", {len(done)} already scored in this run" if done else ""
    return f"{program.code}: scored {scored}{skipped}"


def _lock_chunk(program_id: int, application_ids: list[int], after_assessment: int) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite runs one writer at a time (and tasks in-process)
    name = f"fraud.score_chunk:{program_id}:{after_assessment}:{','.join(map(str, application_ids))}"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@shared_task(**TASK_OPTIONS)
def rescore_enterprises(enterprise_ids: list[int]) -> str:
    """Rescore the open applications of enterprises whose usage changed."""
    from coupons.models import Application
    from fraud.scoring import score_applications

    enterprise_ids = set(enterprise_ids) | cache.get(PENDING_ENTERPRISES, set())
    cache.delete_many([PENDING, PENDING_ENTERPRISES])
    ids = list(
        Application.objects.filter(organisation_id__in=list(enterprise_ids))
        .exclude(status__in=["draft", "withdrawn"])
        .values_list("pk", flat=True)
    )
    results = score_applications(ids) if ids else []
    return f"rescored {sum(r.scored for r in results)}"


def queue_rescore_of_enterprises(enterprise_ids) -> None:
    """Debounced: a burst of usage batches becomes one rescore a minute later. Without a broker
    (tasks in-process) the rescore would run inside the provider's request, so it is left to
    ``score_risk`` then (``FRAUD_RESCORE_ON_USAGE``)."""
    if not enterprise_ids or not settings.FRAUD_RESCORE_ON_USAGE:
        return
    if cache.add(PENDING, 1, timeout=DEBOUNCE_SECONDS * 2):
        rescore_enterprises.apply_async(args=[sorted(enterprise_ids)], countdown=DEBOUNCE_SECONDS)
    else:
        # A rescore is already queued: it picks these enterprises up too (best effort between
        # processes without a shared cache; the nightly rescore covers anything missed).
        pending = cache.get(PENDING_ENTERPRISES, set())
        cache.set(PENDING_ENTERPRISES, pending | set(enterprise_ids), timeout=DEBOUNCE_SECONDS * 2)


@shared_task(bind=True, **TASK_OPTIONS)
def rescore_all(self) -> str:
    """The nightly full rescore: fans out in chunks over however many workers are running. The
    run's watermark (the highest assessment id now) goes with every chunk, so that a chunk
    delivered twice writes once; it is kept in the cache under this task's id, so that this task
    delivered again (killed after the fan-out, before its acknowledgement) fans out with the same
    watermark and its chunks skip what the first fan-out already scored (with a cache shared by
    the workers: ``REDIS_CACHE_URL``)."""
    from celery import group
    from django.db.models import Max

    from coupons.models import Application, Program
    from fraud.models import RiskAssessment

    watermark = RiskAssessment.objects.aggregate(last=Max("pk"))["last"] or 0
    if self.request.id:
        key = RUN_WATERMARK.format(self.request.id)
        cache.add(key, watermark, timeout=RUN_WATERMARK_SECONDS)
        watermark = cache.get(key, watermark)
    jobs = []
    for program in Program.objects.all():
        ids = list(Application.objects.filter(program=program).order_by("pk").values_list("pk", flat=True))
        jobs += [
            score_chunk.s(program.pk, ids[i : i + RESCORE_CHUNK], watermark) for i in range(0, len(ids), RESCORE_CHUNK)
        ]
    if jobs:
        group(jobs).apply_async()
    return f"queued {len(jobs)} chunks"


@shared_task(**TASK_OPTIONS)
def retrain_if_due() -> str:
    from fraud.training import retrain_due, train_fraud_model

    if not retrain_due():
        return "not due"
    result = train_fraud_model()
    if result.trained:
        rescore_all.delay()
    return f"trained {result.version}" if result.trained else "unchanged"
