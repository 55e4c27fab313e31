from core.management.importing import ImportCommand
from coupons.imports import ApplicationImport


class Command(ImportCommand):
    help = "Import applications for bulk and historical migration (CSV); all or nothing."
    importer = ApplicationImport
