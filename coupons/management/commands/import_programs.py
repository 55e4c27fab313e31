from core.management.importing import ImportCommand
from coupons.imports import ProgramImport


class Command(ImportCommand):
    help = "Import programmes (CSV); upsert by code, budgets posted to the ledger; all or nothing."
    importer = ProgramImport
