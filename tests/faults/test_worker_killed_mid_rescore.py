"""A Celery worker killed with SIGKILL in the middle of the nightly full rescore
(``fraud.tasks.rescore_all`` → chunks of ``score_chunk``, acknowledged late): once a worker is
back, every application has exactly one assessment from the run and its current score is that
assessment's; nothing lost, nothing written twice.

What happens underneath: a chunk writes its assessments and the applications' scores in one
transaction, so the killed chunk leaves nothing (PostgreSQL rolls it back when the connection
drops). Its message was taken and never acknowledged: Redis hands it to the next worker after
the visibility timeout (``CELERY_VISIBILITY_TIMEOUT``, a few seconds here, an hour by default).

What the code did before the fix these tests pin (``fraud/tasks.py``): a chunk delivered a second
time — its worker killed after the commit and before the acknowledgement, a chunk that outlived
the visibility timeout and was handed to a second worker while still running, or
``rescore_all`` itself redelivered after its fan-out — scored its applications again: two
assessments from one run (counted twice in the assessments list, export and dashboards). Now a
run carries a watermark (the highest assessment id when it began; the same for a redelivered
``rescore_all``, by its task id), a chunk skips what was assessed since, and two deliveries
running at once queue on an advisory lock of the chunk.

Needs PostgreSQL and CELERY_BROKER_URL=redis://… (as tests/integration); the eager test at the
end runs everywhere.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import redis
from django.db import connection
from django.db.models import Max

from coupons.models import Application, Program
from fraud import model as fraud_model
from fraud import tasks
from fraud.models import RiskAssessment
from tests import factories
from tests.coupons.conftest import make_application, make_program
from tests.faults.workers import BROKER, VISIBILITY_TIMEOUT, Workers, wait_for
from tests.faults.world import demo_data, load_world


def needs_worker(test):
    """PostgreSQL (real commits: ``transaction=True``) and a Redis broker for real workers."""
    for mark in (
        pytest.mark.skipif(not BROKER.startswith("redis://"), reason="needs CELERY_BROKER_URL=redis://…"),
        pytest.mark.django_db(transaction=True, serialized_rollback=True),
        pytest.mark.postgres,
    ):
        test = mark(test)
    return test


APPLICATIONS = 3000  # two programmes (1,686 and 1,314 applications); a chunk takes ~0.5 s to score
CHUNK = 150  # 20 chunks: the run lasts ~10-20 s on one worker, long enough to kill it mid-way
RECOVERY_SECONDS = 120  # the visibility timeout, the workers' 10 s restore check, the rest of the run


@pytest.fixture(autouse=True)
def own_model_file(settings, tmp_path):
    """No model: rules-only scoring, and never the project's own model file."""
    settings.FRAUD_MODEL_PATH = tmp_path / "model.pickle"
    fraud_model._cache.update(key=None, model=None)
    yield
    fraud_model._cache.update(key=None, model=None)


@pytest.fixture
def workers(tmp_path):
    workers = Workers(tmp_path)
    yield workers
    workers.stop_all()


@pytest.fixture
def broker_db():
    """The broker's Redis database: no message of these tests may be left behind."""
    client = redis.Redis.from_url(BROKER)
    yield client
    client.close()


def last_assessment() -> int:
    return RiskAssessment.objects.aggregate(last=Max("pk"))["last"] or 0


def chunks_of_the_run() -> list[list[int]]:
    """The chunks ``rescore_all`` cuts (programme by programme, by primary key)."""
    chunks = []
    for program in Program.objects.all():
        ids = list(Application.objects.filter(program=program).order_by("pk").values_list("pk", flat=True))
        chunks += [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]
    return chunks


def assessed_since(watermark: int) -> Counter:
    return Counter(RiskAssessment.objects.filter(pk__gt=watermark).values_list("application_id", flat=True))


def chunk_locks_held() -> int:
    """Advisory locks held in this database: a chunk of the run is in its transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def queue_drained(client: redis.Redis, queue: str) -> bool:
    """Nothing waiting in the queue and nothing of it taken and unacknowledged (kombu keeps
    those in the ``unacked`` hash as ``[message, exchange, routing key]``)."""
    taken = [json.loads(value)[2] for value in client.hvals("unacked")]
    return client.llen(queue) == 0 and queue not in taken


def assert_one_current_assessment_each(watermark: int) -> int:
    counts = assessed_since(watermark)
    applications = dict(Application.objects.values_list("pk", "risk_score"))
    missing = sorted(set(applications) - set(counts))
    twice = sorted(pk for pk, count in counts.items() if count > 1)
    assert not missing, f"{len(missing)} applications never scored by the run: {missing[:10]}"
    assert not twice, f"{len(twice)} applications scored twice by the run: {twice[:10]}"
    latest = dict(RiskAssessment.objects.filter(pk__gt=watermark).values_list("application_id", "score"))
    assert applications == latest, "an application's current score is not its assessment's"
    return len(counts)


# --- a worker killed mid-chunk -----------------------------------------------------------------


@needs_worker
def test_a_worker_killed_mid_rescore_leaves_one_assessment_per_application_once_another_runs(
    monkeypatch, workers, broker_db
):
    load_world(demo_data(APPLICATIONS, usage_per_application=10))
    monkeypatch.setattr(tasks, "RESCORE_CHUNK", CHUNK)
    chunks = chunks_of_the_run()
    watermark = last_assessment()
    first = workers.start()
    started = time.monotonic()

    with workers.publish():
        # The beat's task, run here so that its chunks are cut small; they go to the workers.
        assert tasks.rescore_all.apply().get() == f"queued {len(chunks)} chunks"

    # Kill when two chunks are written and another is inside its transaction.
    assert wait_for(
        lambda: len(assessed_since(watermark)) >= 2 * CHUNK and chunk_locks_held(), seconds=90, interval=0.05
    )
    workers.kill(first)
    killed_at = time.monotonic() - started
    assert wait_for(lambda: chunk_locks_held() == 0, seconds=30), "PostgreSQL kept the killed chunk's lock"

    counts = assessed_since(watermark)
    done = [chunk for chunk in chunks if all(pk in counts for pk in chunk)]
    half = [chunk for chunk in chunks if any(pk in counts for pk in chunk) and chunk not in done]
    print(f"killed after {killed_at:.1f}s: {len(done)} of {len(chunks)} chunks written, {len(half)} half-written")
    assert not half, "a chunk was half-written"
    assert 0 < len(done) < len(chunks), "the kill did not land in the middle of the run"
    assert max(counts.values()) == 1

    workers.start()
    restarted = time.monotonic()
    assert wait_for(
        lambda: len(assessed_since(watermark)) == APPLICATIONS and queue_drained(broker_db, workers.queue),
        seconds=RECOVERY_SECONDS,
        interval=0.5,
    ), f"the run did not finish after the restart: {len(assessed_since(watermark))} of {APPLICATIONS} scored"
    print(
        f"the second worker finished the run in {time.monotonic() - restarted:.1f}s "
        f"(visibility timeout {VISIBILITY_TIMEOUT}s)"
    )

    assert assert_one_current_assessment_each(watermark) == APPLICATIONS
    assert RiskAssessment.objects.filter(pk__gt=watermark).count() == APPLICATIONS


# --- a chunk delivered twice -------------------------------------------------------------------


@needs_worker
def test_a_chunk_delivered_twice_at_once_to_two_worker_processes_scores_each_application_once(workers, broker_db):
    """GIVEN a chunk of a run sent twice with the same task id (what Redis does with a message
    taken and not acknowledged in time: a worker killed after its commit, or a chunk outliving
    the visibility timeout) WHEN two worker processes take both copies at once THEN the copy
    that waits for the chunk's lock finds the work done."""
    load_world(demo_data(600, usage_per_application=10), usage=False)
    program = Program.objects.order_by("pk").first()
    ids = list(Application.objects.filter(program=program).order_by("pk").values_list("pk", flat=True))
    watermark = last_assessment()
    workers.start(concurrency=2)

    with workers.publish():
        for _ in range(2):
            tasks.score_chunk.apply_async(args=[program.pk, ids, watermark], task_id="the-same-chunk")

    assert wait_for(
        lambda: len(assessed_since(watermark)) == len(ids) and queue_drained(broker_db, workers.queue),
        seconds=60,
        interval=0.25,
    )
    counts = assessed_since(watermark)
    assert sum(counts.values()) == len(ids), f"{sum(counts.values()) - len(ids)} assessments written twice"
    assert set(counts) == set(ids)


# --- rescore_all delivered twice (in-process: runs on SQLite too) ------------------------------


@pytest.mark.django_db
def test_rescore_all_delivered_twice_fans_out_with_one_watermark_and_scores_once(monkeypatch, organisation, provider):
    """GIVEN ``rescore_all`` whose worker died after the fan-out and before the acknowledgement
    WHEN the same task (same id) runs again THEN its chunks skip what the first fan-out scored;
    a new run (another id) scores everything again."""
    program = make_program()
    applications = [
        make_application(organisation=factories.make_organisation(), provider=provider, program=program)
        for _ in range(3)
    ]
    monkeypatch.setattr(tasks, "RESCORE_CHUNK", 2)
    watermark = last_assessment()

    assert tasks.rescore_all.apply(task_id="nightly-1").get() == "queued 2 chunks"
    assert tasks.rescore_all.apply(task_id="nightly-1").get() == "queued 2 chunks"

    assert assessed_since(watermark) == Counter({a.pk: 1 for a in applications})
    assert_one_current_assessment_each(watermark)

    tasks.rescore_all.apply(task_id="nightly-2")
    assert assessed_since(watermark) == Counter({a.pk: 2 for a in applications})
