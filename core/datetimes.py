"""The date-times the database can take. Python reads ISO 8601 that the databases refuse: a UTC
offset up to ±23:59 (PostgreSQL stops at ±15:59, "time zone displacement out of range") and
any time in years 1-9999, which Django converts to UTC before a query or a write (on SQLite a
time a few hours from either end then overflows). Every date-time from outside — API filters
(``core.api.FilterBackend``), usage records (``coupons.services.usage``), import cells
(``core.csvimport.aware_datetime``) — is checked here, so that it is refused as invalid input
rather than failing in the database."""

from __future__ import annotations

import datetime as dt

MAX_UTC_OFFSET = dt.timedelta(hours=15, minutes=59)
# A day inside Python's range at each end: no conversion between zones can leave it.
EARLIEST = dt.datetime(1, 1, 2)
LATEST = dt.datetime(9999, 12, 30)


def unstorable_reason(moment: dt.datetime) -> str | None:
    """Why the aware ``moment`` cannot go to the database, or ``None`` when it can."""
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        return "has a UTC offset beyond ±15:59"
    if not EARLIEST <= moment.replace(tzinfo=None) <= LATEST:
        return f"is outside {EARLIEST.date().isoformat()} to {LATEST.date().isoformat()}"
    return None
