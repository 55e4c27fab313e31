from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from core.management.importing import report_failure
from coupons.services.usage import parse_csv_records, usage_ingest
from enterprises.services import provider_get_by_uscc


class Command(BaseCommand):
    help = "Import a provider's metered usage (CSV, the usage format) through the same code path as the API."

    def add_arguments(self, parser):
        parser.add_argument("--provider", required=True, help="the provider's USCC")
        parser.add_argument("file")

    def handle(self, *args, provider, file, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file")
        try:
            the_provider = provider_get_by_uscc(uscc=provider)
            data = path.read_bytes()
            records = parse_csv_records(data)
            result = usage_ingest(provider=the_provider, records=records, body=data, source="file", max_records=None)
        except ApplicationError as error:
            report_failure(self, error)
        replay = " (replay of an earlier import)" if result.replayed else ""
        self.stdout.write(
            f"usage: {result.records} records: {result.created} created, {result.duplicates} already stored{replay}"
        )
