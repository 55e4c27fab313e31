"""On PostgreSQL, the database itself refuses to edit or delete ledger entries and
transactions: a correction is a reversing transaction (design.md, invariant 2)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION coupons_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger % is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER coupons_ledgerentry_append_only BEFORE UPDATE OR DELETE ON coupons_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION coupons_ledger_append_only();
CREATE TRIGGER coupons_ledgertransaction_append_only BEFORE UPDATE OR DELETE ON coupons_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION coupons_ledger_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS coupons_ledgerentry_append_only ON coupons_ledgerentry;
DROP TRIGGER IF EXISTS coupons_ledgertransaction_append_only ON coupons_ledgertransaction;
DROP FUNCTION IF EXISTS coupons_ledger_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("coupons", "0003_application_applicationmessage_program_and_more")]
    operations = [migrations.RunPython(forwards, backwards)]
