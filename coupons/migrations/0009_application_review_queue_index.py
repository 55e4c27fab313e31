"""An index in the review queue's order (``ApplicationAdmin.get_ordering``: risk score highest
first with unscored applications last, then oldest submission, then id), so that a page of the
queue, with or without its list filters, reads 50 rows of an index instead of sorting every
matching application (bench/load.py: 17-23 ms of PostgreSQL per request at 5,000 applications,
0.3-0.9 ms with the index).

Written as SQL per database rather than in ``Application.Meta.indexes``: the order needs
``DESC NULLS LAST`` on PostgreSQL (where DESC puts NULLs first), and SQLite refuses ``NULLS
LAST`` in an index while its DESC already puts NULLs last."""

from django.db import migrations

NAME = "application_review_queue_idx"
COLUMNS = {
    "postgresql": '"risk_score" DESC NULLS LAST, "submitted_at", "id"',
    "sqlite": '"risk_score" DESC, "submitted_at", "id"',
}


def create(apps, schema_editor):
    columns = COLUMNS.get(schema_editor.connection.vendor)
    if columns:
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NAME}" ON "coupons_application" ({columns})', params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in COLUMNS:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{NAME}"', params=None)


class Migration(migrations.Migration):
    dependencies = [("coupons", "0008_usage_weeks")]
    operations = [migrations.RunPython(create, drop)]
