"""The CI-sized simulation on PostgreSQL: four workers racing through a seeded mix of valid and
invalid operations, the invariants checked after every step; and the exactness of a one-worker
run (the same seed gives the same operation log). ``make simulate`` runs a larger one.

The tests commit for real (``transaction=True``): the workers' own connections must see the
world. ``serialized_rollback`` restores the reference data (card models, industry codes, staff
groups) that the flush after a transactional test removes."""

from __future__ import annotations

import re

import pytest

from tests.simulation.engine import run

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SEED = 20260301
# Bugs the simulation found in the application, each reproduced on its own in test_found_races.
KNOWN = {
    r"^\[error\] ingest: UniqueViolation: .*usage_record_once_per_provider": "concurrent ingest of one record: 500",
    r"^\[error\] case_open: IntegrityError: .*one_open_case_per_application": "concurrent case_open: 500",
    r"^\[simulation: settlement\] statement .* is paid": "a claim posted to a statement paid meanwhile",
    r"^\[error\] \w+: OperationalError: deadlock detected": "deadlocks of a claim with the payment of its statement or a reversal",
}


def known(text: str) -> bool:
    return any(re.search(pattern, text) for pattern in KNOWN)


def test_four_workers_keep_every_invariant():
    result = run(SEED, workers=4, operations=60, check_every=1, race_every=6)

    if not (result.operations == 240 and result.accepted > 40 and result.refused > 40 and result.races):
        pytest.fail(f"the simulation exercised too little: {result.counts}, races {result.races}")
    unknown = [v.describe() for v in result.details if not known(v.text)]
    if unknown:
        pytest.fail("\n".join(unknown))
    assert result.violations == 0, "\n".join(v.describe() for v in result.details)


def test_one_worker_replays_a_seed_exactly(tmp_path):
    log = tmp_path / "first.log"
    first = run(SEED, workers=1, operations=40, check_every=0, race_every=6, log_path=str(log))
    second = run(SEED, workers=1, operations=40, check_every=0, race_every=6)

    assert first.operation_log() == second.operation_log()
    assert first.violations == second.violations == 0, [v.describe() for v in first.details + second.details]
    assert len(log.read_text().splitlines()) == 1 + 40  # the header, then every operation
