from django.core.management.base import BaseCommand, CommandError

from coupons.ledger_check import check_ledger


class Command(BaseCommand):
    help = "Verify every ledger invariant; print a summary; exit non-zero on any violation."

    def handle(self, *args, **options):
        report = check_ledger()
        for name, count in report.checks.items():
            self.stdout.write(f"{'ok  ' if count == 0 else 'FAIL'} {name}" + (f" ({count})" if count else ""))
        for line in report.violations:
            self.stderr.write(f"  {line}")
        figures = ", ".join(f"{key} {value}" for key, value in report.figures.items())
        if not report.ok:
            raise CommandError(f"ledger: {sum(report.checks.values())} violation(s); {figures}")
        self.stdout.write(f"ledger ok: {figures}")
