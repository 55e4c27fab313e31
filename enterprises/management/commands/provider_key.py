from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from enterprises.services import provider_get_by_uscc, provider_key_create, provider_key_revoke


class Command(BaseCommand):
    help = "Create (printed once) or revoke a provider's API key, or list a provider's keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print it once")
        create.add_argument("uscc")
        create.add_argument("--name", default="")
        revoke = sub.add_parser("revoke", help="revoke a key by its prefix")
        revoke.add_argument("prefix")
        revoke.add_argument("--reason", default="")
        listing = sub.add_parser("list", help="list a provider's keys (prefixes only)")
        listing.add_argument("uscc")

    def handle(self, *args, action, **options):
        try:
            if action == "create":
                provider = provider_get_by_uscc(uscc=options["uscc"])
                new = provider_key_create(provider=provider, name=options["name"])
                self.stderr.write(
                    f"API key for {provider.organisation.name} (prefix {new.api_key.prefix}); it is shown only now:"
                )
                self.stdout.write(new.raw_key)
            elif action == "revoke":
                api_key = provider_key_revoke(prefix=options["prefix"], reason=options["reason"])
                self.stdout.write(f"revoked {api_key.prefix} of {api_key.provider.organisation.name}")
            else:
                provider = provider_get_by_uscc(uscc=options["uscc"])
                for api_key in provider.api_keys.all():
                    state = f"revoked {api_key.revoked_at:%Y-%m-%d}" if api_key.revoked_at else "active"
                    self.stdout.write(f"{api_key.prefix}\t{api_key.name}\t{api_key.created_at:%Y-%m-%d}\t{state}")
        except ApplicationError as error:
            raise CommandError(error.message) from None
