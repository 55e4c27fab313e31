"""Query results as pandas DataFrames, fast: on PostgreSQL through ``COPY (query) TO STDOUT``
read by pandas' CSV parser (no Python object per value), elsewhere through the cursor.

For numeric and key columns (cast to ``float8`` in the query where a float is wanted: a
``numeric`` would arrive as text); text columns are read where NULL and the empty string must
be told apart with the ORM."""

from __future__ import annotations

import io

from django.db import connection


def read_frame(sql: str, params: list | tuple | dict, columns: list[str], dtypes: dict | None = None):
    """The rows of ``sql`` (with ``%s`` placeholders) as a DataFrame with ``columns``."""
    import pandas as pd

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
            return pd.DataFrame({name: pd.Series(dtype=(dtypes or {}).get(name, float)) for name in columns})
        buffer.seek(0)
        return pd.read_csv(buffer, names=columns, header=None, dtype=dtypes, engine="c")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
    return frame.astype(dtypes) if dtypes and len(frame) else frame
