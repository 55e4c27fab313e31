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
# Application bugs the simulation found that are not fixed yet, each reproduced deterministically
# (and strictly xfailed) in test_found_races. The run below hits them only when threads happen to
# interleave so, hence a runtime xfail here rather than a strict marker. Fixed ones are removed:
# their return is then a failure like any other violation.
KNOWN: dict[str, str] = {
    # pattern of the violation's text → the bug's name; none open (the stale balance after waiting
    # for a coupon's lock is fixed: coupons.services.coupons.locked_coupon)
}


def known(text: str) -> bool:
    return any(re.search(pattern, text) for pattern in KNOWN)


def test_four_workers_keep_every_invariant():
    result = run(SEED, workers=4, operations=60, check_every=1, race_every=6)

    if not (result.operations == 240 and result.accepted > 40 and result.refused > 40 and result.races):
        pytest.fail(f"the simulation exercised too little: {result.counts}, races {result.races}")
    unknown = [v.describe() for v in result.details if not known(v.text)]
    assert not unknown, "\n".join(unknown)
    if result.details:
        pytest.xfail(
            "known bug: " + "; ".join(sorted({KNOWN[p] for v in result.details for p in KNOWN if re.search(p, v.text)}))
        )


def test_one_worker_replays_a_seed_exactly(tmp_path):
    log = tmp_path / "first.log"
    first = run(SEED, workers=1, operations=40, check_every=0, race_every=6, log_path=str(log))
    second = run(SEED, workers=1, operations=40, check_every=0, race_every=6)

    assert first.operation_log() == second.operation_log()
    assert first.violations == second.violations == 0, [v.describe() for v in first.details + second.details]
    assert len(log.read_text().splitlines()) == 1 + 40  # the header, then every operation
