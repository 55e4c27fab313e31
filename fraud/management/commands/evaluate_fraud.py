import csv
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from coupons.models import Program
from fraud.training import evaluate


class Command(BaseCommand):
    help = (
        "Train on one programme's audit outcomes, score another, and compare with the demo generator's ground truth; "
        "beside a rules-only score and the department's three-signal baseline."
    )

    def add_arguments(self, parser):
        parser.add_argument("--train", default="AH-2025", help="programme whose outcomes train the model")
        parser.add_argument("--test", default="AH-2026", help="programme to score")
        parser.add_argument("--truth", default=str(Path(settings.BASE_DIR) / "var" / "demo" / "truth.csv"))
        parser.add_argument(
            "--holdout",
            default="related_party",
            help="a fraud pattern whose labels are withheld from training ('' for none)",
        )
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON")

    def handle(self, *args, train, test, truth, holdout, json: bool = False, **options):
        import json as json_module

        path = Path(truth)
        if not path.is_file():
            raise CommandError(f"{truth}: no ground truth (run seed_demo first)")
        with path.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        is_fraud = {row["reference"]: str(row["is_fraud"]).lower() == "true" for row in rows}
        patterns = {row["reference"]: row["pattern"] for row in rows}
        lookalikes = {row["reference"]: row.get("lookalike", "") for row in rows}
        try:
            train_program, test_program = Program.objects.get(code=train), Program.objects.get(code=test)
        except Program.DoesNotExist as error:
            raise CommandError(str(error)) from None
        report = evaluate(
            train_program=train_program,
            test_program=test_program,
            truth=is_fraud,
            holdout_pattern=holdout,
            patterns=patterns,
            lookalikes=lookalikes,
        )
        if json:
            self.stdout.write(json_module.dumps(report, indent=2, default=str))
            return
        self.stdout.write(
            f"trained on {train} ({report['labels']['labelled']} labels, {report['labels']['frauds']} frauds; "
            f"pattern held out of the labels: {holdout or 'none'}), scored {test} against the ground truth"
        )
        self.stdout.write(f"{'':<22}{'ROC-AUC':>9}{'PR-AUC':>9}{'prec@prev':>11}")
        for name in ("model", "rules_only", "department_baseline"):
            m = report[name]
            self.stdout.write(f"{name:<22}{m['roc_auc']:>9.3f}{m['pr_auc']:>9.3f}{m['precision_at_prevalence']:>11.3f}")
        self.stdout.write(
            f"frauds {report['model']['frauds']} of {report['model']['n']}; top of the ranking: {report.get('top_of_ranking')}"
        )
        self.stdout.write(f"recall at prevalence by pattern: {report.get('recall_by_pattern')}")
        self.stdout.write(f"honest look-alikes in the top (of all): {report.get('lookalikes_in_top')}")
