"""The OpenAPI schema drives a property-based fuzzer (schemathesis) over every operation, as
every kind of caller: whatever arrives, the API answers below 500, and every 4xx is in the one
error shape ``{"error": {"code", "message", "details"}}``.

The application runs in-process behind Django's WSGI handler, on the test database, in a small
world where every kind of object exists (programme, applications in several states, coupons,
usage, a redemption, a statement). Generated cases sometimes carry the references of that world
(path ids, coupon codes, USCCs, card models) so that they get past the 404 into the services.
Each case runs in a savepoint that is rolled back: every case sees the same world.

Bounded for CI (``FUZZ_EXAMPLES`` examples per operation, generation mode and role, reproducible:
Hypothesis is derandomised). Locally, for a longer and random search, with the statuses seen::

    FUZZ_EXAMPLES=100 FUZZ_RANDOM=1 FUZZ_STATS=1 .venv/bin/pytest tests/hostile/test_fuzz_api.py -q -s -k every

500s already reported are listed in ``KNOWN_BUGS`` and pinned by the regression tests at the end
of this file (each the exact request, ``xfail`` where the bug shows); ``FUZZ_STRICT=1`` fails on
them too. Requests the schema does not describe (unknown methods, unparseable bodies, Django's
own 400s) have their own tests at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import traceback
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, transaction
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.test import APIClient
from schemathesis import GenerationMode

from core.parsers import MAX_DEPTH
from coupons.models import Accelerator, Application, UsageRecord
from coupons.services.coupons import coupon_freeze
from coupons.services.review import review_approve
from enterprises.services import provider_key_create
from tests.coupons.conftest import make_application, make_program
from tests.hostile.conftest import assert_error_shape, error_shape_problems
from tests.usage.conftest import claim, ingest, record

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"
STATS = os.environ.get("FUZZ_STATS") == "1"  # print the statuses seen per operation (with -s)
STRICT = os.environ.get("FUZZ_STRICT") == "1"  # fail on the known bugs below too
ON_POSTGRES = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")

# 500s already reported, each with its regression test below (``test_a_fuzz_finding_...``): the
# fuzzer counts them instead of failing on them, so that it keeps looking for new ones. Matched
# on the exception's type and message. Remove an entry once its bug is fixed.
KNOWN_BUGS: dict[str, str] = {}
# 4xx not in the error shape, already reported likewise, matched on the body.
KNOWN_SHAPE_BUGS: dict[bytes, str] = {}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
ROLES = ["anonymous", "owner", "provider_key", "reviewer", "officer", "auditor"]

USAGE = "/api/v1/usage/"
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
APPROVED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
NOW = dt.datetime(2026, 3, 25, 12, 0, tzinfo=SHANGHAI)


def march(day: int) -> dt.datetime:
    return dt.datetime(2026, 3, day, 10, 0, tzinfo=SHANGHAI)


# --- the world every case runs in -----------------------------------------------------------


@dataclass
class World:
    """References that exist, by the name a path parameter, query parameter or body field
    gives them."""

    values: dict[str, list] = field(default_factory=dict)
    raw_key: str = ""
    users: dict = field(default_factory=dict)


# The kind of object an operation's path parameter names, by the path's collection.
PATH_KINDS = {
    "/api/v1/applications/": "reference",
    "/api/v1/coupons/": "coupon",
    "/api/v1/programs/": "program",
    "/api/v1/organisations/": "organisation_id",
    "/api/v1/redemptions/": "redemption_id",
    "/api/v1/statements/": "statement_id",
    "/api/v1/usage/": "usage_id",
}
# Query parameters and body fields (also inside usage records) that name an existing object.
FIELD_KINDS = {
    "coupon": "coupon",
    "program": "program",
    "program_code": "program",
    "enterprise": "uscc",
    "enterprise_uscc": "uscc",
    "uscc": "uscc",
    "provider": "provider_uscc",
    "accelerator": "accelerator",
    "gpu_model": "accelerator",
    "reference": "reference",
    "records": "record_ids",
    "Idempotency-Key": "idempotency_key",
}


@pytest.fixture
def world(time_machine, organisation, other_organisation, provider, owner, outsider, reviewer, officer, auditor):
    time_machine.move_to(APPROVED_AT, tick=False)
    program = make_program(code="FUZZ-2026", opens=dt.date(2026, 2, 1), closes=dt.date(2026, 6, 30))
    coupon = review_approve(
        application=make_application(organisation=organisation, provider=provider, program=program),
        reviewer=reviewer,
    ).coupon
    frozen = review_approve(
        application=make_application(organisation=other_organisation, provider=provider, program=program),
        reviewer=reviewer,
    ).coupon
    time_machine.move_to(NOW, tick=False)
    coupon_freeze(coupon=frozen, actor=officer, reason="fuzz world")
    closed = make_program(code="FUZZ-2025", opens=dt.date(2025, 1, 1), closes=dt.date(2025, 12, 31))
    submitted = make_application(
        organisation=organisation, provider=provider, program=program, claimed_amount=Decimal("50000.00")
    )
    draft = make_application(organisation=organisation, provider=provider, program=program, submit=False)
    ingest(
        provider,
        [
            record("fz-1", enterprise=organisation, start=march(5)),
            record("fz-2", enterprise=organisation, start=march(6)),
            record("fz-3", enterprise=other_organisation, start=march(7)),
        ],
    )
    redemption = claim(provider, coupon, records=["fz-1"], key="fuzz-1")
    raw_key = provider_key_create(provider=provider).raw_key
    # From here the clock runs: sessions made now are fresh, usage up to now is not "future".
    time_machine.move_to(NOW, tick=True)
    return World(
        values={
            "reference": [
                submitted.reference,
                draft.reference,
                coupon.application.reference,
                frozen.application.reference,
            ],
            "coupon": [coupon.code, frozen.code],
            "program": [program.code, closed.code],
            "organisation_id": [organisation.pk, other_organisation.pk, provider.organisation.pk],
            "redemption_id": [redemption.pk],
            "statement_id": [redemption.statement_id],
            "usage_id": list(UsageRecord.objects.order_by("pk").values_list("pk", flat=True)),
            "uscc": [organisation.uscc, other_organisation.uscc],
            "provider_uscc": [provider.organisation.uscc],
            "accelerator": list(Accelerator.objects.order_by("pk").values_list("name", flat=True)[:5]),
            "record_ids": [["fz-1"], ["fz-2"], ["fz-2", "fz-3"], []],
            "idempotency_key": ["fuzz-1", "fuzz-2"],
        },
        raw_key=raw_key,
        users={"owner": owner, "reviewer": reviewer, "officer": officer, "auditor": auditor},
    )


# --- calling the application in-process -------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema():
    return schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture
def wsgi_app():
    """Django's WSGI handler, on the test database's connection: like Django's test client, it
    must not close the connection (and the test's transaction) at the end of each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    request_logger = logging.getLogger("django.request")
    level = request_logger.level
    request_logger.setLevel(logging.CRITICAL)  # every 4xx and 500 is checked here, not logged
    try:
        yield WSGIHandler()
    finally:
        request_logger.setLevel(level)
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def server_errors():
    """Exceptions the views raised (Django answers them with a 500): the exception's own line
    and the end of its traceback."""
    caught: list[tuple[str, str]] = []

    def remember(sender, request=None, **kwargs):
        error = sys.exc_info()[1]
        caught.append((f"{type(error).__name__}: {error}", traceback.format_exc()))

    signals.got_request_exception.connect(remember, weak=False)
    yield caught
    signals.got_request_exception.disconnect(remember)


@dataclass
class Credentials:
    role: str
    headers: dict = field(default_factory=dict)
    cookies: dict = field(default_factory=dict)


def credentials(role: str, world: World) -> Credentials:
    if role == "anonymous":
        return Credentials(role)  # whatever the fuzzer puts in Authorization and sessionid
    if role == "provider_key":
        return Credentials(role, headers={"Authorization": f"Api-Key {world.raw_key}"})
    client = Client()
    client.force_login(world.users[role])
    request = HttpRequest()
    token = get_token(request)  # a masked token for the header, its secret for the cookie
    return Credentials(
        role,
        headers={"X-CSRFToken": token},
        cookies={"sessionid": client.cookies["sessionid"].value, "csrftoken": request.META["CSRF_COOKIE"]},
    )


def use_known_references(case, data, world: World) -> None:
    """Now and then, swap a generated value for a reference that exists."""

    def maybe(kind: str, current):
        if data.draw(st.booleans(), label=f"known {kind}"):
            return data.draw(st.sampled_from(world.values[kind]), label=kind)
        return current

    def swap(container: dict, skip: tuple = ()) -> None:
        for name in list(container):
            if name in FIELD_KINDS and name not in skip:
                container[name] = maybe(FIELD_KINDS[name], container[name])

    for prefix, kind in PATH_KINDS.items():
        if case.path.startswith(prefix):
            for name in list(case.path_parameters or {}):
                case.path_parameters[name] = quote(str(maybe(kind, case.path_parameters[name])), safe="")
    if isinstance(case.query, dict):
        swap(case.query, skip=("records",))
    if isinstance(case.headers, dict):
        swap(case.headers)
    if isinstance(case.body, dict):
        if case.path == USAGE:  # {"records": [{...}]}: the fields of each record
            records = case.body.get("records")
            for item in records if isinstance(records, list) else []:
                if isinstance(item, dict):
                    swap(item)
        else:
            swap(case.body)


def authorise(case, who: Credentials) -> None:
    """Send the role's credentials instead of the generated ones (anonymous keeps them)."""
    if who.role == "anonymous":
        return
    if case.headers:
        case.headers.pop("Authorization", None)
    if case.cookies:
        case.cookies.pop("sessionid", None)


def describe(case, who: Credentials, response, tracebacks: list) -> str:
    body = case.body if not isinstance(case.body, schemathesis.core.NotSet) else None
    lines = [
        f"role={who.role} {case.method} {case.formatted_path}",
        f"  query={case.query!r}",
        f"  headers={ {k: v for k, v in (case.headers or {}).items() if k != 'X-Schemathesis-TestCaseId'}!r}",
        f"  cookies={case.cookies!r} media_type={case.media_type!r}",
        f"  body={body!r}"[:1500],
        f"  -> {response.status_code} {response.content[:800]!r}",
    ]
    if tracebacks:
        error, formatted = tracebacks[-1]
        frames = [line.strip() for line in formatted.splitlines() if line.strip().startswith("File ")]
        ours = [frame for frame in frames if "site-packages" not in frame] or frames
        lines += [f"  raised {error}"[:600], *(f"    {frame}" for frame in ours[-4:])]
    return "\n".join(lines)


def exchange(case, who: Credentials, app, tracebacks: list):
    """One request in a savepoint that is rolled back, so that the next case sees the same world
    (and a database error in one case cannot abort the test's transaction)."""
    tracebacks.clear()
    cache.clear()  # the provider key's rate limit starts afresh for every case
    with transaction.atomic():
        response = case.call(app=app, headers=dict(who.headers), cookies=dict(who.cookies))
        transaction.set_rollback(True)
    return response


def known_bug(tracebacks: list[tuple[str, str]]) -> str | None:
    if STRICT or not tracebacks:
        return None
    error = tracebacks[-1][0]
    return next((name for signature, name in KNOWN_BUGS.items() if signature in error), None)


def known_shape_bug(content: bytes) -> str | None:
    if STRICT:
        return None
    return next((name for signature, name in KNOWN_SHAPE_BUGS.items() if signature in content), None)


def check(case, who: Credentials, response, tracebacks: list, seen: Counter) -> None:
    status = response.status_code
    seen[(case.operation.label, status)] += 1
    if status == 500 and (bug := known_bug(tracebacks)):
        seen[("known bug", bug)] += 1
        return
    assert status < 500, "server error\n" + describe(case, who, response, tracebacks)
    if 400 <= status < 500:
        problems = error_shape_problems(status, response.content)
        if problems and (bug := known_shape_bug(response.content)):
            seen[("known bug", bug)] += 1
            return
        assert not problems, f"{problems}\n" + describe(case, who, response, tracebacks)


def failure_text(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "\n".join(failure_text(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def can_be_invalid(operation) -> bool:
    """Whether the schema lets a request to ``operation`` be invalid at all: a free-form string
    in the path and nothing else has no invalid value, and Hypothesis would search in vain."""
    raw = operation.schema.raw_schema["paths"][operation.path][operation.method.lower()]
    for parameter in raw.get("parameters", []):
        if parameter["in"] != "path" or parameter.get("schema", {}) != {"type": "string"}:
            return True
    return "requestBody" in raw


def fuzz_operation(operation, mode, who: Credentials, world: World, app, tracebacks, seen) -> str | None:
    if mode == GenerationMode.NEGATIVE and not can_be_invalid(operation):
        return None
    strategy = operation.as_strategy(generation_mode=mode)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
        report_multiple_bugs=True,
    )
    @given(data=st.data())
    def run(data):
        case = data.draw(strategy, label="case")
        use_known_references(case, data, world)
        authorise(case, who)
        response = exchange(case, who, app, tracebacks)
        check(case, who, response, tracebacks, seen)

    try:
        run()
    except Unsatisfiable:
        return None  # e.g. no invalid value exists for a free-form string path parameter
    except Exception as error:
        return f"{operation.label} [{mode.value}]\n{failure_text(error)}"
    return None


@pytest.mark.fuzz
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_below_500_and_every_4xx_in_the_error_shape(
    role, world, api_schema, wsgi_app, server_errors
):
    who = credentials(role, world)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a stub

    seen: Counter = Counter()
    failures = [
        failure
        for operation in operations
        for mode in MODES
        if (failure := fuzz_operation(operation, mode, who, world, wsgi_app, server_errors, seen))
    ]

    if STATS:
        for label in [operation.label for operation in operations] + ["known bug"]:
            statuses = sorted((status, n) for (seen_label, status), n in seen.items() if seen_label == label)
            print(f"{role:12} {label:55} {statuses}")

    assert not failures, f"{len(failures)} operation(s) failed for {role}:\n\n" + "\n\n".join(failures)


# --- the fixed points the fuzzer relies on ------------------------------------------------------


def test_the_schema_served_is_the_schema_fuzzed(client, api_schema):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    served = json.loads(response.content)
    assert set(served["paths"]) == set(api_schema.raw_schema["paths"])


@pytest.mark.parametrize("role", ["owner", "officer"])
def test_a_session_write_without_the_csrf_token_is_a_403_in_the_error_shape(role, world, wsgi_app, api_schema):
    who = credentials(role, world)
    operation = api_schema["/api/v1/coupons/{code}/freeze/"]["POST"]
    case = operation.Case(
        path_parameters={"code": world.values["coupon"][0]}, body={"reason": "x"}, media_type="application/json"
    )

    response = case.call(app=wsgi_app, cookies={"sessionid": who.cookies["sessionid"]})

    assert response.status_code == 403
    assert not error_shape_problems(403, response.content)
    assert "CSRF" in json.loads(response.content)["error"]["message"]


def test_the_world_has_every_kind_of_object(world):
    assert Application.objects.filter(status=Application.Status.DRAFT).exists()
    assert Application.objects.filter(status=Application.Status.SUBMITTED).exists()
    assert all(world.values[kind] for kind in world.values)


# --- regression tests: the exact requests behind the 500s the fuzzer found ---------------------------


def on(database: str, reason: str):
    """xfail where the bug shows (``postgresql`` or ``sqlite``); elsewhere a plain regression test."""
    return pytest.mark.xfail(ON_POSTGRES == (database == "postgresql"), reason=f"BUG: {reason}", strict=True)


@pytest.mark.parametrize(
    ("role", "url"),
    [
        pytest.param(
            "officer",
            "/api/v1/usage/?started_after=2000-01-01T00:00:00%2B16:00",
            id="usage-started_after-offset+16h",
        ),
        pytest.param(
            "provider_key",
            "/api/v1/usage/?started_before=2026-03-01T00:00:00-16:30",
            id="usage-started_before-offset-16h30",
        ),
        pytest.param(
            "officer",
            "/api/v1/applications/?submitted_after=2000-01-01T00:00:00%2B16:00",
            id="applications-submitted_after-offset+16h",
        ),
        pytest.param(
            "officer",
            "/api/v1/usage/?started_before=0001-01-01T00:00:00%2B01:00",
            id="usage-started_before-year-1",
        ),
        pytest.param(
            "officer",
            "/api/v1/applications/?submitted_before=9999-12-31T23:59:59-01:00",
            id="applications-submitted_before-year-9999",
        ),
        pytest.param("officer", "/api/v1/coupons/%00/", id="coupon-nul"),
        pytest.param("provider_key", "/api/v1/applications/%00/", id="application-nul"),
        pytest.param("officer", "/api/v1/programs/a%00b/budget/", id="program-nul"),
    ],
)
def test_a_fuzz_finding_read_is_answered_below_500(role, url, officer, provider):
    client = APIClient(raise_request_exception=False)
    if role == "officer":
        client.force_login(officer)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=provider).raw_key}")

    response = client.get(url)

    assert response.status_code < 500, response.content
    assert not error_shape_problems(response.status_code, response.content) or response.status_code < 400


def usage_record(organisation, **overrides) -> dict:
    return {
        "record_id": "job-1",
        "enterprise_uscc": organisation.uscc,
        "gpu_model": "A100-80G",
        "gpu_count": 1,
        "started_at": "2026-01-05T10:00:00+08:00",
        "ended_at": "2026-01-05T11:00:00+08:00",
        "card_hours": "1.0000",
        "amount": "10.00",
        **overrides,
    }


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {"started_at": "2026-01-05T10:00:00+16:00", "ended_at": "2026-01-05T11:00:00+16:00"},
            id="offset+16h",
        ),
        pytest.param(
            {"started_at": "0001-01-01T00:00:00", "ended_at": "0001-01-01T01:00:00"},
            id="year-1",
        ),
        pytest.param(
            {"enterprise_uscc": "91340100\x00"},
            id="nul-in-uscc",
        ),
    ],
)
def test_a_fuzz_finding_usage_batch_is_answered_below_500(overrides, provider, organisation):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=provider).raw_key}")

    response = client.post(USAGE, {"records": [usage_record(organisation, **overrides)]}, format="json")

    assert response.status_code < 500, response.content
    assert not error_shape_problems(response.status_code, response.content) or response.status_code < 400


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/usage/?started_after=2000-01-01T00:00:00%2B16:00", "started_after"),
        ("/api/v1/usage/?started_before=0001-01-01T00:00:00%2B01:00", "started_before"),
        ("/api/v1/applications/?submitted_before=9999-12-31T23:59:59-01:00", "submitted_before"),
        ("/api/v1/applications/?submitted_after=2026-01-01T00:00:00-15:59", None),  # the last offset taken
    ],
)
def test_a_filter_date_time_the_database_cannot_take_is_a_400_naming_the_parameter(url, field, officer):
    response = session_client(officer).get(url)

    if field is None:
        assert response.status_code == 200, response.content
        return
    error = assert_error_shape(response, 400, "validation_failed")
    assert [detail["field"] for detail in error["details"]] == [field]


@pytest.mark.parametrize(
    ("started_at", "ended_at"),
    [
        ("2026-01-05T10:00:00+16:00", "2026-01-05T11:00:00+16:00"),
        ("0001-01-01T00:00:00", "0001-01-01T01:00:00"),
        ("0001-01-01T00:00:00-02:00", "0001-01-01T01:00:00-02:00"),
    ],
    ids=["offset+16h", "year-1-shanghai", "year-1-minus-2h"],
)
def test_a_usage_date_time_the_database_cannot_take_is_a_400_naming_the_record_and_field(
    started_at, ended_at, provider, organisation
):
    before = UsageRecord.objects.count()

    response = key_client(provider).post(
        USAGE, {"records": [usage_record(organisation, started_at=started_at, ended_at=ended_at)]}, format="json"
    )

    error = assert_error_shape(response, 400, "validation_failed")
    assert [(d["index"], d["field"]) for d in error["details"]] == [(0, "started_at"), (0, "ended_at")]
    assert UsageRecord.objects.count() == before


@pytest.mark.parametrize(
    "url", ["/api/v1/programs/?limit=9223372036854775808", "/api/v1/statements/?limit=99999999999999999999999"]
)
def test_a_fuzz_finding_page_limit_beyond_64_bits_is_answered_below_500(url, world):
    client = APIClient(raise_request_exception=False)
    client.force_login(world.users["auditor"])

    response = client.get(url)

    assert response.status_code < 500, response.content


# --- hostile requests outside what the schema describes ---------------------------------------------


def key_client(provider) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=provider).raw_key}")
    return client


def session_client(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/applications/X/"),
        ("delete", "/api/v1/coupons/X/"),
        ("trace", "/api/v1/me/"),
        ("get", "/api/v1/no-such-thing/"),
        ("get", "/api/v1/applications/a/b/c/"),
    ],
)
def test_an_unknown_method_or_path_under_the_api_is_a_4xx_in_the_error_shape(method, path, officer):
    response = session_client(officer).generic(method.upper(), path)

    assert response.status_code in (404, 405), response.content
    assert not error_shape_problems(response.status_code, response.content)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"{", 400),
        ("application/json", b'{"coupon": "\xff"}', 400),
        ("application/xml", b"<claim/>", 415),
        ("multipart/form-data", b"--x\r\n", 400),
        ("text/csv", b"coupon\nX\n", 415),
    ],
    ids=["truncated-json", "invalid-utf8-json", "xml", "multipart-without-boundary", "csv"],
)
def test_a_body_the_api_cannot_parse_is_a_4xx_in_the_error_shape(content_type, body, status, provider):
    response = key_client(provider).generic(
        "POST", "/api/v1/redemptions/", body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert response.status_code == status, response.content
    assert not error_shape_problems(status, response.content)


@pytest.mark.parametrize("who", ["owner", "provider_key"])
def test_deeply_nested_json_is_a_400_in_the_error_shape(who, owner, provider):
    client, path = (
        (session_client(owner), "/api/v1/applications/")
        if who == "owner"
        else (
            key_client(provider),
            "/api/v1/redemptions/",
        )
    )
    body = b"[" * 100_000 + b"]" * 100_000

    response = client.generic("POST", path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400, response.content
    assert not error_shape_problems(400, response.content)


def nested(depth: int) -> dict:
    """A redemption claim whose ``records`` list holds lists ``depth`` levels deep in all."""
    records: list = []
    for _ in range(depth - 2):
        records = [records]
    return {"coupon": "X", "period_start": "2026-11-01", "period_end": "2026-11-30", "records": records}


@pytest.mark.parametrize(("depth", "refused"), [(MAX_DEPTH, False), (MAX_DEPTH + 1, True), (900, True)])
def test_json_nested_beyond_the_limit_is_refused_before_any_view_code(depth, refused, provider):
    body = json.dumps(nested(depth)).encode()

    response = key_client(provider).generic(
        "POST", "/api/v1/redemptions/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    error = assert_error_shape(response)
    if refused:
        assert response.status_code == 400
        assert error["code"] == "parse_error"
        assert f"nested deeper than {MAX_DEPTH} levels" in error["message"]
    else:
        assert response.status_code in (400, 404), response.content  # the claim's own checks answer
        assert error["code"] != "parse_error"


APPLICATION_BODY = {
    "accelerator": "NVIDIA A100 80GB",
    "claimed_card_hours": "12000.0000",
    "claimed_amount": "108000.00",
    "scenario": "training",
    "project_summary": "训练工业质检视觉模型",
}


NUL_VALUES = [
    ("provider", "91340100\x00", "provider"),  # a provider named by its USCC: a query with the value as sent
    ("program", "FUZZ\x00", "program"),
    ("accelerator", "A100\x00", "accelerator"),
]


@pytest.mark.parametrize(
    ("field", "value", "path", "content_type"),
    [
        *[(*case, content_type) for case in NUL_VALUES for content_type in ("json", "multipart", "urlencoded")],
        ("project_summary", {"nested": ["ok", "a\x00b"]}, "project_summary.nested[1]", "json"),
    ],
)
def test_a_nul_in_a_body_value_is_a_400_naming_the_field(field, value, path, content_type, owner, provider):
    body = {**APPLICATION_BODY, "program": "AH-2026", "provider": provider.organisation.uscc, field: value}
    client = session_client(owner)
    before = Application.objects.count()

    if content_type == "urlencoded":
        response = client.generic(
            "POST", "/api/v1/applications/", urlencode(body), content_type=f"application/x-www-form-{content_type}"
        )
    else:
        response = client.post("/api/v1/applications/", body, format=content_type)

    error = assert_error_shape(response, 400, "validation_failed")
    assert error["details"] == [{"field": path, "reason": "holds a NUL character (\\u0000)"}]
    assert Application.objects.count() == before


@pytest.mark.parametrize(
    "case", ["empty-host", "unknown-host", "1200-query-parameters", "1200-form-fields", "120-uploaded-files"]
)
def test_a_django_level_400_under_the_api_is_in_the_error_shape(case, officer, provider):
    from django.core.files.uploadedfile import SimpleUploadedFile

    many = "&".join(f"p{i}=1" for i in range(1200))
    if case == "empty-host":  # found by the fuzzer, as the officer: a Host header, empty
        response = session_client(officer).post(
            "/api/v1/redemptions/",
            {"coupon": "FUZZ2026-EUW5-2SM7", "period_start": "2026-11-01", "period_end": "2026-11-30"},
            format="json",
            HTTP_HOST="",
        )
    elif case == "unknown-host":
        response = session_client(officer).get("/api/v1/me/", HTTP_HOST="evil.example")
    elif case == "1200-query-parameters":
        response = session_client(officer).get(f"/api/v1/applications/?{many}")
    elif case == "1200-form-fields":
        response = session_client(officer).generic(
            "POST", "/api/v1/coupons/X/freeze/", many, content_type="application/x-www-form-urlencoded"
        )
    else:
        files = {f"f{i}": SimpleUploadedFile(f"usage-{i}.csv", b"x") for i in range(120)}
        response = key_client(provider).post(USAGE, files, format="multipart")

    assert response.status_code == 400
    assert not error_shape_problems(400, response.content), response.content[:200]


@pytest.mark.parametrize(
    ("path", "host", "code"),
    [
        ("/api/v1/me/", "evil.example", "bad_host"),
        ("/api/v1/redemptions/", "127.0.0.1", "too_large"),
        ("/portal/", "evil.example", None),  # outside the API: Django's page
    ],
)
def test_a_django_level_400_says_what_is_wrong_without_naming_settings(path, host, code, provider, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"coupon": "X" * 2048}).encode()

    response = key_client(provider).generic(
        "POST", path, body, content_type="application/json", HTTP_HOST=host, HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert response.status_code == 400
    if code is None:
        assert b"<title>Bad Request (400)</title>" in response.content
        return
    error = assert_error_shape(response, 400, code)
    assert "ALLOWED_HOSTS" not in error["message"] and "DATA_UPLOAD" not in error["message"]
