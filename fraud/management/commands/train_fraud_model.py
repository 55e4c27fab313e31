from django.core.management.base import BaseCommand

from fraud.training import train_fraud_model


class Command(BaseCommand):
    help = "Train the fraud model on every application and the auditors' outcomes; record the version and its held-out metrics."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="train even when the data did not change")

    def handle(self, *args, force=False, **options):
        result = train_fraud_model(force=force)
        if not result.trained:
            self.stdout.write(f"unchanged: {result.version or 'no model'} already fits these data")
            return
        kind = "anomaly + supervised" if result.supervised else "anomaly only (too few labels for the supervised model)"
        self.stdout.write(
            f"trained {result.version}: {kind}; {result.samples} applications, {result.labelled} labelled, {result.frauds} frauds"
        )
        if result.metrics:
            self.stdout.write("held-out: " + ", ".join(f"{k} {v}" for k, v in result.metrics.items()))
