"""A demo world for the fault tests, loaded through the operators' import path (what
``seed_demo`` does, without the logins, the training and the first scoring): the demo
generator's organisations, providers, programmes, applications and metered usage."""

from __future__ import annotations

import datetime as dt
import io
import itertools

import orjson
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from coupons.imports import ApplicationImport, ProgramImport
from coupons.models import Accelerator, UsageBatch, UsageRecord
from coupons.services.usage import usage_ingest
from enterprises.imports import ProviderImport, RegistryImport
from enterprises.models import Organisation, Provider
from fixtures.demo.generator import (
    APPLICATION_COLUMNS,
    PROGRAM_COLUMNS,
    PROVIDER_COLUMNS,
    REGISTRY_COLUMNS,
    DemoConfig,
    DemoData,
    generate,
    write_csv,
)


def demo_data(applications: int, usage_per_application: int = 20, seed: int = 7) -> DemoData:
    return generate(DemoConfig(applications=applications, seed=seed, usage_per_application=usage_per_application))


def busiest_provider_usage() -> tuple[str, list[dict]]:
    """Loads a demo world of 1,500 applications without its usage; returns the USCC of the
    provider with the most usage in it and that usage (the records of a big batch to send)."""
    data = demo_data(1500, usage_per_application=60)
    load_world(data, usage=False)  # an upsert: a second call changes nothing
    by_provider: dict[str, list[dict]] = {}
    for uscc, row in data.iter_usage():
        by_provider.setdefault(uscc, []).append(row)
    uscc, records = max(by_provider.items(), key=lambda item: len(item[1]))
    return uscc, records


def as_csv(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    write_csv(buffer, columns, rows)
    return buffer.getvalue().encode()


def registry_csv(data: DemoData) -> bytes:
    return as_csv(REGISTRY_COLUMNS, data.registry)


def load_world(data: DemoData, *, usage: bool = True) -> None:
    steps = [
        (RegistryImport, registry_csv(data)),
        (ProviderImport, as_csv(PROVIDER_COLUMNS, data.providers)),
        (ProgramImport, as_csv(PROGRAM_COLUMNS, data.programs)),
        (ApplicationImport, as_csv(APPLICATION_COLUMNS, data.applications)),
    ]
    # No rescore on usage here: the tests score the world themselves.
    with override_settings(FRAUD_RESCORE_ON_USAGE=False), transaction.atomic():
        for importer_class, payload in steps:
            importer_class(actor="faults").run(payload, file_name=f"faults-{importer_class.label}.csv")
        if usage:
            providers = {p.organisation.uscc: p for p in Provider.objects.select_related("organisation")}
            for uscc, rows in itertools.groupby(data.iter_usage(), key=lambda item: item[0]):
                records = [row for _uscc, row in rows]
                usage_ingest(
                    provider=providers[uscc],
                    records=records,
                    body=orjson.dumps(records),
                    source="file",
                    max_records=None,
                )


def hold_record(provider: Provider, record: dict) -> None:
    """Insert (uncommitted, in the caller's transaction) a record with the same provider and
    record id as ``record``."""
    now = timezone.now()
    batch = UsageBatch.objects.create(
        provider=provider, sha256="0" * 64, source="api", records=1, created=1, duplicates=0
    )
    UsageRecord.objects.create(
        provider=provider,
        record_id=record["record_id"],
        enterprise=Organisation.objects.get(uscc=record["enterprise_uscc"]),
        accelerator=Accelerator.objects.first(),
        gpu_count=1,
        started_at=now,
        ended_at=now + dt.timedelta(hours=1),
        card_hours=1,
        amount=1,
        price_per_card_hour=1,
        payload_hash="0" * 32,
        batch=batch,
        received_at=now,
    )
