"""Load the demo: reference data is already there (migrate); this generates a seeded,
deterministic province of organisations, providers, programmes and applications
(``fixtures.demo.generator``) and loads it through the same import services that operators
use, then creates the demo logins. Running it twice changes nothing more."""

from __future__ import annotations

import io
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.errors import ApplicationError
from core.management.importing import report_failure, terminal_progress
from coupons.imports import ApplicationImport, ProgramImport
from enterprises import roles
from enterprises.imports import ProviderImport, RegistryImport
from enterprises.models import Organisation, PortalAccount, Provider

DEMO_PASSWORD = "demo-2026"  # noqa: S105 - printed for the local demo; never used in production settings

# The demo reviewers sign off approvals above this, so that four-eyes review shows.
DEMO_SECOND_REVIEW_AMOUNT = "100000.00"


class Command(BaseCommand):
    help = "Generate and load deterministic demo data, and create the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--scale", type=int, default=200, help="applications across the programmes (default 200)")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--usage-per-application", type=int, default=100)
        parser.add_argument(
            "--truth",
            default=str(Path(settings.BASE_DIR) / "var" / "demo" / "truth.csv"),
            help="where the ground truth is written",
        )
        parser.add_argument("--no-users", action="store_true", help="load data only")

    def handle(self, *args, scale, seed, usage_per_application, truth, no_users, **options):
        from fixtures.demo.generator import (
            APPLICATION_COLUMNS,
            PROGRAM_COLUMNS,
            PROVIDER_COLUMNS,
            REGISTRY_COLUMNS,
            DemoConfig,
            generate,
            write_csv,
        )

        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and scale > 20000:
            raise CommandError("Above 20,000 applications use PostgreSQL (set DATABASE_URL).")
        started = time.monotonic()
        data = generate(DemoConfig(applications=scale, seed=seed, usage_per_application=usage_per_application))
        self.stderr.write(
            f"generated {len(data.registry)} organisations, {len(data.applications)} applications in {time.monotonic() - started:.1f}s"
        )

        def as_csv(columns, rows) -> bytes:
            buffer = io.StringIO()
            write_csv(buffer, columns, rows)
            return buffer.getvalue().encode()

        programs = [{**row, "second_review_amount": DEMO_SECOND_REVIEW_AMOUNT} for row in data.programs]
        steps = [
            (RegistryImport, as_csv(REGISTRY_COLUMNS, data.registry)),
            (ProviderImport, as_csv(PROVIDER_COLUMNS, data.providers)),
            (ProgramImport, as_csv([*PROGRAM_COLUMNS, "second_review_amount"], programs)),
            (ApplicationImport, as_csv(APPLICATION_COLUMNS, data.applications)),
        ]
        progress = terminal_progress(self.stderr._out)
        with transaction.atomic():
            for importer_class, payload in steps:
                importer = importer_class(actor="seed_demo", progress=progress)
                try:
                    summary = importer.run(payload, file_name=f"demo-{importer.label}.csv")
                except ApplicationError as error:
                    report_failure(self, error)
                self.stdout.write(f"{importer.label}: {summary}")
            self.load_usage(data)

        self.score()
        truth_path = Path(truth)
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        with truth_path.open("w", encoding="utf-8", newline="") as handle:
            write_csv(handle, list(data.truth[0].keys()), data.truth)
        self.stdout.write(f"ground truth: {truth_path} ({len(data.truth)} applications)")
        if not no_users:
            self.create_logins(data)
        self.stdout.write(f"seed_demo done in {time.monotonic() - started:.1f}s")

    def score(self) -> None:
        """Train on the demo's audit outcomes and score every application, so the review queue
        shows risk from the first look."""
        from coupons.models import Program
        from fraud.scoring import score_programs
        from fraud.training import train_fraud_model

        trained = train_fraud_model()
        kind = "with a supervised model" if trained.supervised else "anomaly model only (few labels)"
        self.stdout.write(f"fraud model: {trained.version} {kind}")
        from coupons.models import Application

        # Programmes scored before are left alone: a second seed changes nothing more.
        unscored = Program.objects.filter(
            pk__in=Application.objects.filter(risk_score__isnull=True).values("program_id")
        ).order_by("opens")
        for result in score_programs(unscored):
            self.stdout.write(f"scored {result.program}: {result.scored} applications {result.bands}")

    def load_usage(self, data) -> None:
        """Metered usage, provider by provider, through the ingestion path the API uses."""
        import itertools

        import orjson

        from coupons.services.usage import usage_ingest

        providers = {p.organisation.uscc: p for p in Provider.objects.select_related("organisation")}
        created = duplicates = replayed = 0
        for uscc, rows in itertools.groupby(data.iter_usage(), key=lambda item: item[0]):
            records = [row for _uscc, row in rows]
            try:
                result = usage_ingest(
                    provider=providers[uscc],
                    records=records,
                    body=orjson.dumps(records),
                    source="file",
                    max_records=None,
                )
            except ApplicationError as error:
                report_failure(self, error)
            if result.replayed:
                replayed += result.records
            else:
                created += result.created
                duplicates += result.duplicates
        self.stdout.write(
            f"usage: {created} records created, {duplicates} already stored, {replayed} in batches loaded before"
        )

    def create_logins(self, data) -> None:
        User = get_user_model()

        def user(username: str, *, staff: bool, group: str | None = None, superuser: bool = False):
            account, _created = User.objects.get_or_create(username=username)
            account.is_staff, account.is_superuser = staff, superuser
            account.set_password(DEMO_PASSWORD)
            account.save()
            if group:
                account.groups.add(Group.objects.get(name=group))
            return account

        clean = {row["uscc"] for row in data.truth if row["pattern"] == "clean" and not row["lookalike"]}
        provider_usccs = {row["uscc"] for row in data.providers}
        enterprise = Organisation.objects.filter(uscc__in=clean - provider_usccs).order_by("uscc").first()
        provider = (
            Provider.objects.filter(whitelisted=True)
            .select_related("organisation")
            .order_by("organisation__uscc")
            .first()
        )
        user("officer", staff=True, group=roles.PROGRAMME_OFFICERS)
        user("reviewer1", staff=True, group=roles.REVIEWERS)
        user("reviewer2", staff=True, group=roles.REVIEWERS)
        user("auditor", staff=True, group=roles.AUDITORS)
        user("admin", staff=True, superuser=True)
        for username, organisation, role in (
            ("enterprise", enterprise, PortalAccount.Role.ENTERPRISE),
            ("provider", provider.organisation, PortalAccount.Role.PROVIDER),
        ):
            account = user(username, staff=False)
            PortalAccount.objects.update_or_create(user=account, defaults={"organisation": organisation, "role": role})

        lines = [
            ("programme officer", "officer", "/admin/"),
            ("reviewer", "reviewer1", "/admin/coupons/application/"),
            ("second reviewer", "reviewer2", "/admin/coupons/application/"),
            ("auditor", "auditor", "/admin/"),
            (f"enterprise user ({enterprise.name})", "enterprise", "/portal/"),
            (f"provider user ({provider.organisation.name})", "provider", "/portal/"),
            ("superuser", "admin", "/admin/"),
        ]
        self.stdout.write(f"\nDemo logins (password for all: {DEMO_PASSWORD}), on http://127.0.0.1:8000")
        for who, username, where in lines:
            self.stdout.write(f"  {who:<48} {username:<10} {where}")
