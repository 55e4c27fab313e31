"""Reading the reference CSVs kept in ``fixtures/`` (copied from the department's shared data).
The data migrations of ``enterprises`` and ``coupons`` load them; staff edit them afterwards in
the admin, because they are policy data that change."""

from __future__ import annotations

import csv
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def read_fixture(name: str) -> list[dict]:
    with (FIXTURES / name).open(encoding="utf-8-sig", newline="") as handle:
        return [{key: (value or "").strip() for key, value in row.items()} for row in csv.DictReader(handle)]
