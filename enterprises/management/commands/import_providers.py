from core.management.importing import ImportCommand
from enterprises.imports import ProviderImport


class Command(ImportCommand):
    help = "Import compute providers (CSV); each must be in the registry. Upsert by USCC, all or nothing."
    importer = ProviderImport
