"""On PostgreSQL, the database itself refuses to edit or delete ledger entries and
transactions: a correction is a reversing transaction (design.md, invariant 2)."""

from django.db import migrations

from core.db import append_only


class Migration(migrations.Migration):
    dependencies = [("coupons", "0003_application_applicationmessage_program_and_more")]
    operations = [append_only("coupons_ledger_append_only", ["coupons_ledgerentry", "coupons_ledgertransaction"])]
