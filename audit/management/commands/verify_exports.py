from django.core.management.base import BaseCommand, CommandError

from audit.exports import verify_chain
from audit.models import ExportRecord


class Command(BaseCommand):
    help = "Check the chain of export records; exit non-zero on a missing or altered record."

    def handle(self, *args, **options):
        problems = verify_chain()
        for problem in problems:
            self.stderr.write(f"  {problem}")
        if problems:
            raise CommandError(f"export chain broken: {len(problems)} problem(s)")
        self.stdout.write(f"export chain ok: {ExportRecord.objects.count()} records")
