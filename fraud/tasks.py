"""Celery tasks of the fraud module: thin shells over ``fraud.scoring`` and ``fraud.training``.
Idempotent (an assessment more is harmless; training skips unchanged data) and acknowledged
late, so a worker killed mid-task leaves the work to another."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

RESCORE_CHUNK = 5000
DEBOUNCE_SECONDS = 60
PENDING = "fraud:rescore-pending"
PENDING_ENTERPRISES = "fraud:rescore-enterprises"

TASK_OPTIONS = {"acks_late": True, "autoretry_for": (Exception,), "retry_backoff": True, "max_retries": 3}


@shared_task(**TASK_OPTIONS)
def score_application(application_id: int) -> str:
    from fraud.scoring import score_applications

    results = score_applications([application_id])
    return f"scored {sum(r.scored for r in results)}"


@shared_task(**TASK_OPTIONS)
def score_chunk(program_id: int, application_ids: list[int]) -> str:
    from coupons.models import Program
    from fraud.scoring import score_program

    result = score_program(Program.objects.get(pk=program_id), application_ids=application_ids)
    return f"{result.program}: scored {result.scored}"


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


@shared_task(**TASK_OPTIONS)
def rescore_all() -> str:
    """The nightly full rescore: fans out in chunks over however many workers are running."""
    from celery import group

    from coupons.models import Application, Program

    jobs = []
    for program in Program.objects.all():
        ids = list(Application.objects.filter(program=program).order_by("pk").values_list("pk", flat=True))
        jobs += [score_chunk.s(program.pk, ids[i : i + RESCORE_CHUNK]) for i in range(0, len(ids), RESCORE_CHUNK)]
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
