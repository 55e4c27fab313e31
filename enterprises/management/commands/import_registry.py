from core.management.importing import ImportCommand
from enterprises.imports import RegistryImport


class Command(ImportCommand):
    help = "Import the organisation registry extract (CSV); upsert by USCC, all or nothing."
    importer = RegistryImport
