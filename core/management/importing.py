"""The shell every import command shares: read the file, run the import with a progress bar
on a terminal, print every problem or the summary line, exit non-zero on failure."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError


def terminal_progress(stream):
    """A tqdm progress bar when ``stream`` is a terminal, nothing otherwise."""
    if not getattr(stream, "isatty", lambda: False)():
        return lambda iterable, **kwargs: iterable
    from tqdm import tqdm

    return partial(tqdm, file=stream, leave=False, mininterval=0.5)


def report_failure(command: BaseCommand, error: ApplicationError) -> None:
    for problem in error.details:
        command.stderr.write(f"  {problem}")
    raise CommandError(error.message)


class ImportCommand(BaseCommand):
    importer = None  # a core.csvimport.CsvImport subclass

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8 with or without BOM, or GB18030); - for stdin")

    def read(self, name: str) -> tuple[bytes, str]:
        if name == "-":
            return sys.stdin.buffer.read(), "stdin"
        path = Path(name)
        if not path.is_file():
            raise CommandError(f"{name}: no such file")
        return path.read_bytes(), path.name

    def handle(self, *args, **options):
        data, file_name = self.read(options["file"])
        importer = self.importer(actor="cli", progress=terminal_progress(self.stderr._out))
        try:
            summary = importer.run(data, file_name=file_name)
        except ApplicationError as error:
            report_failure(self, error)
        self.stdout.write(f"{importer.label}: {summary}")
