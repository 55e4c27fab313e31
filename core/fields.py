"""Model fields of our own."""

from __future__ import annotations

from django.db import models


class DocumentField(models.JSONField):
    """JSON kept as written: PostgreSQL's ``json`` type rather than ``jsonb``, for documents
    written in bulk once and read whole, never queried inside (a risk assessment's reasons and
    feature values). ``json`` stores the text after a syntax check, where ``jsonb`` converts it
    (half of the database's work in a rescore's ``COPY``), and keeps the keys in their order.
    Elsewhere it is Django's ``JSONField``."""

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value, expression, connection):
        if value is not None and not isinstance(value, str | bytes | bytearray):
            return value  # psycopg decodes the json type itself
        return super().from_db_value(value, expression, connection)
