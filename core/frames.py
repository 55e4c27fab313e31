"""Query results as pandas DataFrames, and temporary tables filled from them.

``read_frame`` fetches the rows with the driver's C loaders: cast ``numeric`` columns to
``float8`` where a float is wanted (a ``Decimal`` per value is slow) and date-times to ``text``
(Django's time-zone-aware loader runs in Python), then parse them with pandas."""

from __future__ import annotations

import contextlib
import io

from django.db import connection


def read_frame(sql: str, params: list | tuple | dict, columns: list[str], dtypes: dict | None = None):
    """The rows of ``sql`` (with ``%s`` placeholders) as a DataFrame with ``columns``; ``dtypes``
    for numeric columns (text stays as the driver gives it, None for NULL)."""
    import pandas as pd

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=(dtypes or {}).get(name, "int64")) for name in columns})
    frame = pd.DataFrame.from_records(rows, columns=columns)
    numeric = {name: kind for name, kind in (dtypes or {}).items() if kind is not str}
    return frame.astype(numeric) if numeric else frame


@contextlib.contextmanager
def temporary_table(name: str, columns: dict[str, str], frame):
    """A temporary table ``name`` (``columns``: name → SQL type) holding the rows of ``frame``
    for the queries inside the block, on this connection; dropped at its end. On PostgreSQL it
    is filled with COPY."""
    definition = ", ".join(f"{column} {kind}" for column, kind in columns.items())
    names = list(columns)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(f"CREATE TEMPORARY TABLE {name} ({definition})")
        try:
            if connection.vendor == "postgresql":
                buffer = io.StringIO()
                frame[names].to_csv(buffer, header=False, index=False)
                with cursor.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(buffer.getvalue())
                cursor.execute(f"ANALYZE {name}")  # the planner's estimates of the joins that read it
            else:
                placeholders = ", ".join(["%s"] * len(names))
                cursor.executemany(
                    f"INSERT INTO {name} ({', '.join(names)}) VALUES ({placeholders})",  # noqa: S608 - our names
                    frame[names].astype(object).itertuples(index=False, name=None),
                )
            yield name
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
