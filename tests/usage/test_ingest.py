"""Usage ingestion (design.md invariant 3 and the usage format): every validation reported with
its index and field, all or nothing, replays and duplicates, conflicts, the CSV paths, the
``import_usage`` command, the derived fields, and who may report and read usage."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from coupons.models import UsageBatch, UsageRecord
from coupons.services.usage import MAX_BATCH
from tests import factories
from tests.usage.conftest import NOW, USAGE, assert_error, db_state, ingest, march, record, where

pytestmark = pytest.mark.usefixtures("later")

CSV_HEADER = "record_id,enterprise_uscc,gpu_model,gpu_count,started_at,ended_at,card_hours,amount"


def post(client, records: list[dict]):
    return client.post(USAGE, {"records": records}, format="json")


def csv_of(records: list[dict], header: str = CSV_HEADER) -> bytes:
    columns = header.split(",")
    lines = [header] + [",".join(str(r[c]) for c in columns) for r in records]
    return ("\n".join(lines) + "\n").encode()


# --- a valid batch ----------------------------------------------------------------------------


def test_it_stores_a_valid_batch_with_the_derived_fields(provider_api, provider, organisation):
    """GIVEN an A100 record (312 dense FP16 TFLOPS) and a 910B3 record (TFLOPS unknown)
    WHEN the provider posts them THEN both are stored with price = amount / card-hours and
    standard units = card-hours × TFLOPS / 1000, null for the 910B3."""
    records = [
        record("job-1", enterprise=organisation, gpu_model="A100-80G", gpu_count=8, hours=10, amount="960.00"),
        record("job-2", enterprise=organisation, gpu_model="910B3", gpu_count=3, hours=7, amount="100.00"),
    ]

    response = post(provider_api, records)

    assert response.status_code == 201, response.content
    batch = UsageBatch.objects.get()
    assert response.json() == {"batch": batch.pk, "records": 2, "created": 2, "duplicates": 0, "replayed": False}
    a100, ascend = UsageRecord.objects.order_by("record_id")
    assert (a100.provider, a100.enterprise, a100.accelerator.name) == (provider, organisation, "NVIDIA A100 80GB")
    assert (a100.gpu_count, a100.card_hours, a100.amount) == (8, Decimal("80.0000"), Decimal("960.00"))
    assert a100.started_at == march(5) and a100.ended_at == march(5, 20)
    assert a100.price_per_card_hour == Decimal("12.0000")
    assert a100.standard_units == Decimal("24.960000")  # 80 × 312 / 1000
    assert a100.provider_unit == "card_hour"
    assert a100.batch == batch and a100.redemption is None
    assert ascend.accelerator.name == "Huawei Ascend 910B3"
    assert ascend.price_per_card_hour == Decimal("4.7619")  # 100 / 21
    assert ascend.standard_units is None


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("a100-80g", "NVIDIA A100 80GB"),
        ("A100 80GB", "NVIDIA A100 80GB"),
        ("910b", "Huawei Ascend 910B (variant unspecified)"),
        ("RTX4090", "NVIDIA GeForce RTX 4090"),
        ("nvidia-a100 80gb", "NVIDIA A100 80GB"),
    ],
)
def test_card_models_match_without_regard_to_case_spaces_or_hyphens(provider, organisation, sent, stored):
    ingest(provider, [record("job-1", enterprise=organisation, gpu_model=sent)])

    assert UsageRecord.objects.get().accelerator.name == stored


def test_card_hours_within_one_percent_of_gpu_count_times_duration_are_accepted(provider_api, organisation):
    """8 cards × 10 h = 80 card-hours; 1% is 0.8."""
    records = [
        record("low", enterprise=organisation, card_hours="79.2100"),
        record("high", enterprise=organisation, card_hours="80.7900"),
    ]

    response = post(provider_api, records)

    assert response.status_code == 201, response.content
    assert sorted(UsageRecord.objects.values_list("card_hours", flat=True)) == [Decimal("79.21"), Decimal("80.79")]


def test_an_end_within_the_five_minutes_of_clock_skew_is_accepted(provider_api, organisation):
    start = NOW - dt.timedelta(hours=1)
    response = post(
        provider_api,
        [
            record(
                "job-1",
                enterprise=organisation,
                gpu_count=1,
                start=start,
                ended_at=(NOW + dt.timedelta(minutes=4)).isoformat(),
                card_hours="1.0667",
            )
        ],
    )

    assert response.status_code == 201, response.content


def test_a_batch_of_the_maximum_size_is_accepted(provider, organisation):
    records = [record(f"job-{i}", enterprise=organisation) for i in range(MAX_BATCH)]

    result = ingest(provider, records)

    assert (result.records, result.created) == (MAX_BATCH, MAX_BATCH)
    assert UsageRecord.objects.count() == MAX_BATCH


# --- validation: every error with its index and field; nothing written -------------------------


def _unknown_enterprise(r):
    r["enterprise_uscc"] = factories.make_uscc(987654)


def _without_amount(r):
    del r["amount"]


INVALID = [
    pytest.param(_unknown_enterprise, "enterprise_uscc", id="unknown enterprise"),
    pytest.param({"gpu_model": "Quantum QPU-9"}, "gpu_model", id="unknown card model"),
    pytest.param({"ended_at": march(5).isoformat()}, "ended_at", id="ended_at equals started_at"),
    pytest.param({"ended_at": march(4).isoformat()}, "ended_at", id="ended_at before started_at"),
    pytest.param({"started_at": "5 March 2026"}, "started_at", id="started_at not ISO 8601"),
    pytest.param({"card_hours": "80.8100"}, "card_hours", id="card_hours 1% too high"),
    pytest.param({"card_hours": "79.1900"}, "card_hours", id="card_hours 1% too low"),
    pytest.param({"card_hours": "80.00001"}, "card_hours", id="card_hours more than 4 decimals"),
    pytest.param({"amount": "-1.00"}, "amount", id="negative amount"),
    pytest.param({"amount": "10.001"}, "amount", id="amount with 3 decimals"),
    pytest.param({"amount": "ten"}, "amount", id="amount not a number"),
    pytest.param({"gpu_count": 0}, "gpu_count", id="gpu_count 0"),
    pytest.param({"gpu_count": "abc"}, "gpu_count", id="gpu_count abc"),
    pytest.param({"gpu_count": True}, "gpu_count", id="gpu_count true"),
    pytest.param({"gpu_count": 2.5}, "gpu_count", id="gpu_count 2.5"),
    pytest.param({"record_id": "job 1 with spaces"}, "record_id", id="record_id with spaces"),
    pytest.param(_without_amount, "amount", id="missing field"),
    pytest.param({"region": "340100"}, "region", id="unknown field"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
def test_an_invalid_record_is_reported_with_its_index_and_field_and_nothing_is_written(
    provider_api, organisation, change, field
):
    """GIVEN a batch of two good records around a bad one WHEN posted THEN 400 names index 1
    and the field, and no record or batch is stored."""
    before = db_state()
    bad = record("job-1", enterprise=organisation)
    if callable(change):
        change(bad)
    else:
        bad.update(change)
    records = [record("job-0", enterprise=organisation), bad, record("job-2", enterprise=organisation)]

    response = post(provider_api, records)

    error = assert_error(response, 400, "validation_failed")
    assert where(error) == {(1, field)}
    assert db_state() == before


def test_an_end_beyond_the_five_minutes_of_clock_skew_is_refused(provider_api, organisation):
    before = db_state()
    start = NOW - dt.timedelta(hours=1)
    bad = record(
        "job-1",
        enterprise=organisation,
        gpu_count=1,
        start=start,
        ended_at=(NOW + dt.timedelta(minutes=6)).isoformat(),
        card_hours="1.1000",
    )

    response = post(provider_api, [bad])

    error = assert_error(response, 400, "validation_failed")
    assert where(error) == {(0, "ended_at")}
    assert "future" in error["details"][0]["reason"]
    assert db_state() == before


def test_every_problem_of_the_batch_is_reported_at_once(provider_api, organisation):
    before = db_state()
    records = [
        record("job-0", enterprise=organisation, gpu_count=0, card_hours="80.0000"),
        record("job-1", enterprise=organisation),
        record("job-2", enterprise=organisation, amount="-5", gpu_model="nope"),
    ]

    error = assert_error(post(provider_api, records), 400, "validation_failed")

    assert where(error) == {(0, "gpu_count"), (2, "amount"), (2, "gpu_model")}
    assert [d["index"] for d in error["details"]] == sorted(d["index"] for d in error["details"])
    assert db_state() == before


def test_a_batch_above_the_maximum_size_is_refused(provider, provider_api, organisation):
    before = db_state()
    one = record("job-1", enterprise=organisation)

    error = assert_error(post(provider_api, [one] * (MAX_BATCH + 1)), 400, "validation_failed")

    assert where(error) == {(None, "records")}
    assert str(MAX_BATCH) in error["details"][0]["reason"]
    assert db_state() == before


@pytest.mark.parametrize("body", [b"not json", b'{"rows": []}', b'{"records": "abc"}', b"[1, 2]"])
def test_a_body_that_is_not_a_batch_is_refused(provider_api, body):
    before = db_state()

    response = provider_api.post(USAGE, body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"validation_failed", "parse_error"}
    assert db_state() == before


def test_a_gpu_count_of_unicode_digits_is_a_field_error_not_a_server_error(provider_api, organisation):
    """'²'.isdigit() is True but int('²') fails: this once ended in a 500."""
    before = db_state()

    error = assert_error(
        post(provider_api, [record("job-1", enterprise=organisation, gpu_count="²", card_hours="80.0000")]), 400
    )

    assert where(error) == {(0, "gpu_count")}
    assert db_state() == before


def test_a_price_per_card_hour_too_large_to_store_is_a_field_error(provider_api, organisation):
    """1,000,000 yuan for 0.01 card-hours (one card for 36 seconds) is 10^8 yuan per card-hour,
    more than the NUMERIC(12, 4) column holds: this once was a 500 from COPY on PostgreSQL and an
    unreadable row on SQLite."""
    before = db_state()
    bad = record("job-1", enterprise=organisation, gpu_count=1, amount="1000000.00", card_hours="0.0100")
    bad["ended_at"] = (march(5) + dt.timedelta(seconds=36)).isoformat()

    error = assert_error(post(provider_api, [bad]), 400, "validation_failed")

    assert where(error) == {(0, "amount")}
    assert db_state() == before


def test_card_hours_too_large_to_store_are_a_field_error(provider_api, organisation):
    """100,000 cards from 1900 to 2026 agree with gpu_count × duration but are 1.1 × 10^11
    card-hours, more than the NUMERIC(14, 4) column holds."""
    before = db_state()
    start = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    card_hours = Decimal(100_000) * Decimal((end - start).total_seconds()) / 3600
    bad = record(
        "job-1",
        enterprise=organisation,
        gpu_count=100_000,
        started_at=start.isoformat(),
        ended_at=end.isoformat(),
        card_hours=f"{card_hours:.4f}",
        amount="0.00",
    )

    error = assert_error(post(provider_api, [bad]), 400, "validation_failed")

    assert where(error) == {(0, "card_hours")}
    assert db_state() == before


# --- replays, duplicates and conflicts ------------------------------------------------------


def test_a_replayed_batch_returns_the_original_result_and_stores_nothing(provider_api, organisation):
    records = [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)]
    first = post(provider_api, records)
    assert first.status_code == 201
    after_first = db_state()

    again = post(provider_api, records)

    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "replayed": True}
    assert db_state() == after_first


def test_a_new_batch_counts_already_stored_identical_records_as_duplicates(provider_api, organisation):
    """The repeat spells the card model differently: it is the same card, so the same record."""
    post(provider_api, [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)])
    stored = list(UsageRecord.objects.order_by("pk").values_list("pk", "payload_hash", "batch_id"))

    response = post(
        provider_api,
        [
            record("job-1", enterprise=organisation, gpu_model="a100 80gb"),
            record("job-2", enterprise=organisation),
            record("job-3", enterprise=organisation),
        ],
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["records"], body["created"], body["duplicates"], body["replayed"]) == (3, 1, 2, False)
    assert UsageBatch.objects.count() == 2
    assert list(UsageRecord.objects.order_by("pk").values_list("pk", "payload_hash", "batch_id"))[:2] == stored
    assert UsageRecord.objects.get(record_id="job-3").batch_id == body["batch"]


def test_a_stored_record_sent_again_with_another_payload_is_a_conflict(provider_api, organisation):
    post(provider_api, [record("job-1", enterprise=organisation)])
    before = db_state()

    error = assert_error(
        post(provider_api, [record("job-1", enterprise=organisation, amount="999.00")]), 409, "conflict"
    )

    assert where(error) == {(0, "record_id")}
    assert db_state() == before


def test_in_a_batch_each_conflicting_record_is_listed_by_index_and_nothing_is_written(provider_api, organisation):
    post(provider_api, [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)])
    before = db_state()
    records = [
        record("job-new", enterprise=organisation),
        record("job-1", enterprise=organisation, gpu_count=4, card_hours="40.0000"),
        record("job-2", enterprise=organisation),
        record("job-2b", enterprise=organisation),
        record("job-2", enterprise=organisation, start=march(6)),
    ]

    error = assert_error(post(provider_api, records), 409, "conflict")

    assert where(error) == {(1, "record_id"), (4, "record_id")}
    assert db_state() == before


def test_a_record_id_twice_in_one_batch_with_another_payload_is_a_conflict(provider_api, organisation):
    before = db_state()
    records = [record("job-1", enterprise=organisation), record("job-1", enterprise=organisation, amount="1.00")]

    error = assert_error(post(provider_api, records), 409, "conflict")

    assert where(error) == {(1, "record_id")}
    assert db_state() == before


def test_a_record_id_twice_in_one_batch_with_the_same_payload_is_stored_once(provider_api, organisation):
    records = [record("job-1", enterprise=organisation), record("job-1", enterprise=organisation)]

    response = post(provider_api, records)

    assert response.status_code == 201, response.content
    assert (response.json()["created"], response.json()["duplicates"]) == (1, 1)
    assert UsageRecord.objects.count() == 1


def test_two_providers_may_use_the_same_record_id(provider, rival, organisation):
    ingest(provider, [record("job-1", enterprise=organisation)])

    result = ingest(rival, [record("job-1", enterprise=organisation, amount="5.00")])

    assert result.created == 1
    assert UsageRecord.objects.filter(record_id="job-1").count() == 2


# --- CSV: body, upload, command -------------------------------------------------------------


def test_a_csv_body_is_stored_and_replayed(provider_api, organisation):
    data = csv_of(
        [record("job-1", enterprise=organisation), record("job-2", enterprise=organisation, gpu_model="910B")]
    )

    first = provider_api.post(USAGE, data, content_type="text/csv")
    again = provider_api.post(USAGE, data, content_type="text/csv; charset=utf-8")

    assert first.status_code == 201, first.content
    assert first.json()["created"] == 2
    assert UsageBatch.objects.get().source == "csv"
    assert again.status_code == 200 and again.json() == {**first.json(), "replayed": True}
    assert UsageRecord.objects.count() == 2


def test_a_multipart_upload_with_a_bom_and_any_column_order_is_stored(provider_api, organisation):
    header = "amount,record_id,gpu_count,gpu_model,enterprise_uscc,started_at,ended_at,card_hours"
    data = "\ufeff".encode() + csv_of([record("job-1", enterprise=organisation, amount="12.50")], header)

    response = provider_api.post(USAGE, {"file": SimpleUploadedFile("usage.csv", data, "text/csv")}, format="multipart")

    assert response.status_code == 201, response.content
    assert UsageRecord.objects.get().amount == Decimal("12.50")


def test_a_csv_row_error_names_the_record_index_and_the_field(provider_api, organisation):
    before = db_state()
    data = csv_of(
        [
            record("job-1", enterprise=organisation),
            record("job-2", enterprise=organisation, gpu_count="abc", card_hours="80.0000"),
        ]
    )

    error = assert_error(provider_api.post(USAGE, data, content_type="text/csv"), 400, "validation_failed")

    assert where(error) == {(1, "gpu_count")}
    assert db_state() == before


def test_a_csv_with_an_unknown_or_missing_column_is_refused(provider_api, organisation):
    before = db_state()
    header = CSV_HEADER.replace("amount", "price")
    data = csv_of([{**record("job-1", enterprise=organisation), "price": "1.00"}], header)

    error = assert_error(provider_api.post(USAGE, data, content_type="text/csv"), 400, "validation_failed")

    assert {d.get("field") for d in error["details"]} == {"amount", "price"}
    assert db_state() == before


def test_a_multipart_request_without_the_file_field_is_refused(provider_api):
    before = db_state()

    error = assert_error(provider_api.post(USAGE, {"other": "x"}, format="multipart"), 400)

    assert where(error) == {(None, "file")}
    assert db_state() == before


def test_import_usage_stores_a_file_and_a_second_run_is_a_replay(tmp_path, provider, organisation):
    path = tmp_path / "usage.csv"
    path.write_bytes(csv_of([record("job-1", enterprise=organisation), record("job-2", enterprise=organisation)]))
    out = io.StringIO()

    call_command("import_usage", "--provider", provider.organisation.uscc, str(path), stdout=out)
    call_command("import_usage", "--provider", provider.organisation.uscc, str(path), stdout=out)

    first, second = out.getvalue().strip().splitlines()
    assert first == "usage: 2 records: 2 created, 0 already stored"
    assert second == "usage: 2 records: 2 created, 0 already stored (replay of an earlier import)"
    assert UsageRecord.objects.count() == 2
    assert UsageBatch.objects.get().source == "file"


def test_import_usage_refuses_a_bad_file_reports_each_problem_and_stores_nothing(tmp_path, provider, organisation):
    path = tmp_path / "usage.csv"
    path.write_bytes(
        csv_of([record("job-1", enterprise=organisation), record("job-2", enterprise=organisation, amount="-3.00")])
    )
    before = db_state()
    err = io.StringIO()

    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_usage", "--provider", provider.organisation.uscc, str(path), stderr=err)

    assert "line 1, column amount" in err.getvalue()
    assert db_state() == before


def test_import_usage_refuses_a_missing_file_and_an_unknown_provider(tmp_path, organisation):
    path = tmp_path / "usage.csv"
    path.write_bytes(csv_of([record("job-1", enterprise=organisation)]))
    before = db_state()

    with pytest.raises(CommandError, match="no such file"):
        call_command("import_usage", "--provider", "x", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="No provider"):
        call_command("import_usage", "--provider", organisation.uscc, str(path))

    assert db_state() == before


# --- who may report, who sees what ------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("owner", 403), ("provider_user", 403), ("reviewer", 403), (None, 401)])
def test_only_a_provider_key_may_report_usage(request, organisation, who, status):
    client = APIClient()
    if who:
        client.force_login(request.getfixturevalue(who))
    before = db_state()

    response = post(client, [record("job-1", enterprise=organisation)])

    assert_error(response, status)
    assert db_state() == before


@pytest.fixture
def usage_of_two_providers(provider, rival, organisation, other_organisation):
    ingest(provider, [record("p-mine", enterprise=organisation), record("p-other", enterprise=other_organisation)])
    ingest(rival, [record("r-mine", enterprise=organisation), record("r-other", enterprise=other_organisation)])


def record_ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["record_id"] for item in response.json()["results"]}


@pytest.mark.usefixtures("usage_of_two_providers")
def test_a_provider_key_reads_its_own_records_only(provider_api, rival_api):
    assert record_ids(provider_api.get(USAGE)) == {"p-mine", "p-other"}
    assert record_ids(rival_api.get(USAGE)) == {"r-mine", "r-other"}


@pytest.mark.usefixtures("usage_of_two_providers")
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", {"p-mine", "r-mine"}),
        ("outsider", {"p-other", "r-other"}),
        ("provider_user", {"p-mine", "p-other"}),
        ("reviewer", {"p-mine", "p-other", "r-mine", "r-other"}),
        ("officer", {"p-mine", "p-other", "r-mine", "r-other"}),
        ("auditor", {"p-mine", "p-other", "r-mine", "r-other"}),
    ],
)
def test_a_signed_in_user_reads_the_usage_of_its_organisation_and_staff_with_the_permission_all(
    request, client, who, expected
):
    client.force_login(request.getfixturevalue(who))

    assert record_ids(client.get(USAGE)) == expected


def test_an_anonymous_visitor_reads_nothing(client):
    assert_error(client.get(USAGE), 401)


def test_the_usage_list_takes_the_same_number_of_queries_for_more_records(provider, provider_api, organisation):
    ingest(provider, [record(f"a-{i}", enterprise=organisation) for i in range(2)])
    provider_api.get(USAGE)  # the key's last use is written at most once a minute
    with CaptureQueriesContext(connection) as few:
        assert len(provider_api.get(USAGE).json()["results"]) == 2
    ingest(provider, [record(f"b-{i}", enterprise=organisation) for i in range(10)])
    with CaptureQueriesContext(connection) as many:
        assert len(provider_api.get(USAGE).json()["results"]) == 12

    assert len(many) == len(few)


def test_the_json_body_is_read_as_sent(provider_api, organisation):
    """Numbers may come as JSON numbers too (a provider's serializer's choice)."""
    body = orjson.dumps(
        {"records": [record("job-1", enterprise=organisation, gpu_count=8, card_hours=80, amount=12.5)]}
    )

    response = provider_api.post(USAGE, body, content_type="application/json")

    assert response.status_code == 201, response.content
    assert UsageRecord.objects.get().amount == Decimal("12.50")
