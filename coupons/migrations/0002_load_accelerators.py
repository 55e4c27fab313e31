from django.db import migrations


def load(apps, schema_editor):
    from coupons.reference import load_accelerators

    load_accelerators(apps.get_model("coupons", "Accelerator"))


class Migration(migrations.Migration):
    dependencies = [("coupons", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
