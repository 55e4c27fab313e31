"""Query results as pandas DataFrames, fast: on PostgreSQL through ``COPY (query) TO STDOUT``
read by pandas' CSV parser (no Python object per value), elsewhere through the cursor.

For numeric and key columns (cast to ``float8`` in the query where a float is wanted: a
``numeric`` would arrive as text); text columns are read where NULL and the empty string must
be told apart with the ORM."""

from __future__ import annotations

import contextlib
import io

from django.db import connection


def read_frame(sql: str, params: list | tuple | dict, columns: list[str], dtypes: dict | None = None):
    """The rows of ``sql`` (with ``%s`` placeholders) as a DataFrame with ``columns``."""
    import pandas as pd

    def empty():
        return pd.DataFrame({name: pd.Series(dtype=(dtypes or {}).get(name, "int64")) for name in columns})

    if connection.vendor == "postgresql":
        import psycopg

        buffer = io.BytesIO()
        connection.ensure_connection()
        # COPY takes no parameters through Django's cursor: bind them on the client.
        query = psycopg.ClientCursor(connection.connection).mogrify(sql, params)
        with connection.cursor() as cursor, cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buffer.write(chunk)
        if not buffer.tell():
            return empty()
        buffer.seek(0)
        return pd.read_csv(buffer, names=columns, header=None, dtype=dtypes, engine="c")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return empty()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    # Text stays as the driver gives it (None for NULL, as the CSV parser's NaN on PostgreSQL).
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
