from django.db import migrations


def seed(apps, schema_editor):
    from fraud.rules import seed_rules

    seed_rules(apps.get_model("fraud", "RiskRule"))


class Migration(migrations.Migration):
    dependencies = [("fraud", "0002_risk_rules_assessments_cases")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
