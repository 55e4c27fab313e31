"""Database helpers for migrations: append-only tables enforced by PostgreSQL triggers."""

from __future__ import annotations

from django.db import migrations


def append_only(name: str, tables: list[str]) -> migrations.RunPython:
    """A migration operation that makes ``tables`` refuse UPDATE and DELETE on PostgreSQL (a
    no-op elsewhere). ``name`` names the trigger function."""
    create = [
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
        f"RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END; $$ LANGUAGE plpgsql;"
    ] + [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();"
        for table in tables
    ]
    drop = [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in tables] + [
        f"DROP FUNCTION IF EXISTS {name}();"
    ]

    def run(statements):
        def apply(apps, schema_editor):
            if schema_editor.connection.vendor == "postgresql":
                for statement in statements:
                    schema_editor.execute(statement, params=None)

        return apply

    return migrations.RunPython(run(create), run(drop))
