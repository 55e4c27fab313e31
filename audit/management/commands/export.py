import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from audit.exports import export_stream
from audit.lists import LISTS, filtered, ordered


class Command(BaseCommand):
    help = "Export an audit list as CSV with the same filters as the web (e.g. program=AH-2026 state=approved)."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=sorted(LISTS))
        parser.add_argument("filters", nargs="*", help="name=value, as on the web page (program, date_from, state, …)")
        parser.add_argument("--output", help="a file (default: standard output)")
        parser.add_argument("--sort", default="")
        parser.add_argument("--plain-utf8", action="store_true", help="no BOM (the default has one, for Excel)")

    def handle(self, *args, kind, filters, output=None, sort="", plain_utf8=False, **options):
        audit_list = LISTS[kind]
        params = QueryDict(mutable=True)
        for item in filters:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"{item!r}: write filters as name=value")
            params.appendlist(name, value)
        queryset, filterset = filtered(audit_list, params)
        known = set(filterset.filters)
        unknown = [name for name in params if name not in known]
        if unknown:
            raise CommandError(f"unknown filter(s) {', '.join(unknown)}; {kind} takes {', '.join(sorted(known))}")
        if params and not filterset.is_valid():
            raise CommandError(f"invalid filters: {filterset.errors.as_text()}")
        stream = export_stream(
            audit_list=audit_list,
            queryset=ordered(audit_list, queryset, sort),
            actor="cli",
            filters=dict(params.items()),
            bom=not plain_utf8,
        )
        target = Path(output).open("wb") if output else sys.stdout.buffer
        try:
            for chunk in stream:
                target.write(chunk)
        finally:
            if output:
                target.close()
        if output:
            self.stderr.write(f"wrote {output}")
