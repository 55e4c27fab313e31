from django.core.management.base import BaseCommand, CommandError

from coupons.services import usage_weeks


class Command(BaseCommand):
    help = (
        "Recompute the weekly usage sums (coupons.UsageWeek) from the usage records, holding off ingestion "
        "meanwhile; for a repair after check_ledger reports that the two disagree."
    )

    def handle(self, *args, **options):
        weeks = usage_weeks.rebuild()
        left = usage_weeks.differences()
        if left:
            raise CommandError(f"{len(left)} weeks still disagree after the rebuild: {left[0]}")
        self.stdout.write(f"weekly usage rebuilt: {weeks} weeks, in step with the records")
