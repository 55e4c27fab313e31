import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from coupons.models import Program
from fraud.scoring import score_programs


class Command(BaseCommand):
    help = "Score applications now (the same scoring the Celery tasks run); optionally write a CSV of the results."

    def add_arguments(self, parser):
        parser.add_argument("--program", help="a programme code (default: every programme)")
        parser.add_argument("--output", help="write reference, risk_score, band, reasons to this CSV")
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="score the programmes in this many forked processes at once (PostgreSQL; default 1)",
        )

    def handle(self, *args, program=None, output=None, processes=1, **options):
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        programs = Program.objects.order_by("opens")
        if program:
            programs = programs.filter(code=program)
            if not programs.exists():
                raise CommandError(f"no programme {program}")
        from core.management.importing import terminal_progress

        progress = terminal_progress(self.stderr._out)
        results = score_programs(
            programs, progress=lambda items: progress(items, desc="scoring", unit="programme"), processes=processes
        )
        for result in results:
            bands = ", ".join(f"{count} {band}" for band, count in sorted(result.bands.items()))
            self.stdout.write(
                f"{result.program}: {result.scored} applications scored with {result.model_version} ({bands})"
            )
        if output:
            self.write_csv(Path(output), [r.program for r in results])

    def write_csv(self, path: Path, codes: list[str]) -> None:
        from coupons.models import Application

        rows = (
            Application.objects.filter(program__code__in=codes)
            .order_by("-risk_score", "reference")
            .values_list("pk", "reference", "risk_score", "risk_band")
        )
        from fraud.models import RiskAssessment

        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["reference", "risk_score", "band", "reasons"])
            for chunk_start in range(0, len(rows), 5000):
                chunk = list(rows[chunk_start : chunk_start + 5000])
                latest = {}
                for application_id, reasons in (
                    RiskAssessment.objects.filter(application_id__in=[r[0] for r in chunk])
                    .order_by("application_id", "-created_at", "-id")
                    .values_list("application_id", "reasons")
                ):
                    latest.setdefault(application_id, reasons)
                for pk, reference, score, band in chunk:
                    writer.writerow([reference, score, band, "; ".join(r["en"] for r in latest.get(pk, []))])
        self.stdout.write(f"wrote {path}")
