"""On PostgreSQL the audit trail is append-only in the database too: UPDATE and DELETE of an
entry are refused (the model refuses them in Python; this covers bulk queries and SQL)."""

from django.db import migrations

from core.db import append_only


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [append_only("core_audit_append_only", ["core_auditentry"])]
