"""Who may see and do what: every role against every page and list endpoint, and the
state-changing requests each role must not make. Enterprise users see only their organisation,
providers only their own records, reviewers review but do not export the audit trail, auditors
read and export everything and change nothing but cases.

Every denial is checked twice: the status (a redirect to a login page, 401, 403) and a
database left exactly as it was. The world is described in ``tests/audit/conftest.py``; the
owner is an enterprise user of Hefei, the provider user and the API key are provider one's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from audit.lists import LISTS
from audit.models import ExportRecord
from coupons.models import Application, Coupon, Redemption, Statement
from enterprises.models import Organisation
from enterprises.services import provider_key_create
from fraud.models import Case, CaseNote, Outcome, RiskAssessment
from tests.coupons.conftest import snapshot
from tests.usage.conftest import db_state

ROLES = ["anonymous", "owner", "provider_user", "provider_key", "reviewer", "officer", "auditor"]
STAFF = ("reviewer", "officer", "auditor")
KINDS = sorted(LISTS)


@pytest.fixture
def organisation(world):
    """The owner (``tests/conftest.py``) works for Hefei."""
    return world.hefei


@pytest.fixture
def provider(world):
    """The provider user works for provider one."""
    return world.provider_one


@pytest.fixture
def client_as(world, owner, provider_user, reviewer, officer, auditor) -> Callable[[str], APIClient]:
    users = {
        "owner": owner,
        "provider_user": provider_user,
        "reviewer": reviewer,
        "officer": officer,
        "auditor": auditor,
    }

    def client_for(role: str) -> APIClient:
        client = APIClient()
        if role == "provider_key":
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {provider_key_create(provider=world.provider_one).raw_key}")
        elif role != "anonymous":
            client.force_login(users[role])
        return client

    return client_for


def everything() -> dict:
    """What no refused request may change (export records are counted apart: an allowed export
    adds one)."""
    return {
        **snapshot(),
        **{f"usage:{key}": value for key, value in db_state().items()},
        "cases": list(Case.objects.order_by("pk").values_list("pk", "state", "finding", "closed_at", "receivable")),
        "case_notes": CaseNote.objects.count(),
        "outcomes": Outcome.objects.count(),
        "assessments": RiskAssessment.objects.count(),
        "organisations": Organisation.objects.count(),
    }


# --- the read matrix -------------------------------------------------------------------------

LOGIN = "login"  # 302 to /accounts/login/
ADMIN_LOGIN = "admin-login"  # 302 to /admin/login/
OK = 200


@dataclass(frozen=True)
class Sees:
    """200, showing exactly these rows (by the identifier ``Page.rows`` extracts)."""

    rows: Callable


@dataclass(frozen=True)
class Page:
    path: Callable  # world -> path
    outcomes: dict  # role -> LOGIN, ADMIN_LOGIN, 401, 403 or OK or Sees
    rows: Callable | None = None  # response -> set of identifiers


def refs(*apps) -> set:
    return {app.reference for app in apps}


def codes(*coupons) -> set:
    return {coupon.code for coupon in coupons}


def pks(*objects) -> set:
    return {obj.pk for obj in objects}


def api_rows(field: str) -> Callable:
    return lambda response: {item[field] for item in response.json()["results"]}


def context_rows(name: str, key: Callable) -> Callable:
    return lambda response: {key(item) for item in response.context[name]}


ALL_APPS = Sees(lambda w: refs(w.app_hefei, w.app_wuhu, w.app_b, w.app_pending, w.app_rejected))
HEFEI_APPS = Sees(lambda w: refs(w.app_hefei, w.app_pending, w.app_rejected))
PROVIDER_ONE_APPS = Sees(lambda w: refs(w.app_hefei, w.app_b, w.app_rejected))
ALL_COUPONS = Sees(lambda w: codes(w.coupon_hefei, w.coupon_wuhu, w.coupon_b))
HEFEI_COUPONS = Sees(lambda w: codes(w.coupon_hefei))
PROVIDER_ONE_COUPONS = Sees(lambda w: codes(w.coupon_hefei, w.coupon_b))
ALL_REDEMPTIONS = Sees(lambda w: pks(w.redemption_one, w.redemption_two, w.redemption_three))
HEFEI_REDEMPTIONS = Sees(lambda w: pks(w.redemption_one))
PROVIDER_ONE_REDEMPTIONS = Sees(lambda w: pks(w.redemption_one, w.redemption_three))
ALL_STATEMENTS = Sees(lambda w: pks(w.statement_one, w.statement_two, w.statement_feb))
PROVIDER_ONE_STATEMENTS = Sees(lambda w: pks(w.statement_one, w.statement_feb))
NONE = Sees(lambda w: set())
ALL_USAGE = Sees(lambda w: {"one-1", "one-2", "two-1", "one-3"})
HEFEI_USAGE = Sees(lambda w: {"one-1", "one-2"})
PROVIDER_ONE_USAGE = Sees(lambda w: {"one-1", "one-2", "one-3"})
ALL_ORGANISATIONS = Sees(lambda w: set(Organisation.objects.values_list("uscc", flat=True)))
PROGRAMMES = Sees(lambda w: {"AUD-A", "AUD-B"})


def portal(**outcomes) -> dict:
    """A portal page: signing in is required; the key is for the API, web pages take none."""
    return {"anonymous": LOGIN, "provider_key": LOGIN, **outcomes}


WORKSPACE = {
    "anonymous": LOGIN,
    "provider_key": LOGIN,  # the key is for the API; web pages take no key
    "owner": 403,
    "provider_user": 403,
    "reviewer": OK,
    "officer": OK,
    "auditor": OK,
}
ADMIN = {
    "anonymous": ADMIN_LOGIN,
    "provider_key": ADMIN_LOGIN,
    "owner": ADMIN_LOGIN,
    "provider_user": ADMIN_LOGIN,
    "reviewer": OK,
    "officer": OK,
    "auditor": OK,
}


def api(all_rows: Sees, *, owner: Sees, provider: Sees, reviewer: Sees | None = None, officer: Sees | None = None):
    return {
        "anonymous": 401,
        "owner": owner,
        "provider_user": provider,
        "provider_key": provider,
        "reviewer": reviewer or all_rows,
        "officer": officer or all_rows,
        "auditor": all_rows,
    }


PAGES = [
    Page(lambda w: "/portal/", portal(owner=OK, provider_user=OK, reviewer=OK, officer=OK, auditor=OK)),
    Page(
        lambda w: "/portal/applications/",
        portal(
            owner=HEFEI_APPS,
            provider_user=PROVIDER_ONE_APPS,
            reviewer=ALL_APPS,
            officer=ALL_APPS,
            auditor=ALL_APPS,
        ),
        context_rows("applications", lambda a: a.reference),
    ),
    Page(
        lambda w: "/portal/coupons/",
        portal(
            owner=HEFEI_COUPONS,
            provider_user=PROVIDER_ONE_COUPONS,
            reviewer=ALL_COUPONS,
            officer=ALL_COUPONS,
            auditor=ALL_COUPONS,
        ),
        context_rows("coupons", lambda c: c.code),
    ),
    Page(
        lambda w: "/portal/redemptions/",
        portal(
            owner=HEFEI_REDEMPTIONS,
            provider_user=PROVIDER_ONE_REDEMPTIONS,
            reviewer=ALL_REDEMPTIONS,
            officer=ALL_REDEMPTIONS,
            auditor=ALL_REDEMPTIONS,
        ),
        context_rows("redemptions", lambda r: r.pk),
    ),
    Page(
        lambda w: "/portal/statements/",
        # Statements are between the department and a provider; reviewers do not settle.
        portal(
            owner=NONE,
            provider_user=PROVIDER_ONE_STATEMENTS,
            reviewer=NONE,
            officer=ALL_STATEMENTS,
            auditor=ALL_STATEMENTS,
        ),
        context_rows("statements", lambda pair: pair[0].pk),
    ),
    Page(lambda w: "/admin/", ADMIN),
    Page(lambda w: "/admin/coupons/application/", ADMIN),
    Page(lambda w: f"/admin/coupons/application/{w.app_pending.pk}/change/", ADMIN),
    Page(lambda w: "/admin/fraud/case/", {**ADMIN, "reviewer": 403, "officer": 403}),
    Page(lambda w: "/audit/", WORKSPACE),
    *[Page(lambda w, kind=kind: f"/audit/{kind}/", WORKSPACE) for kind in KINDS],
    Page(lambda w: "/audit/dashboards/", WORKSPACE),
    Page(
        lambda w: "/api/v1/organisations/",
        api(
            ALL_ORGANISATIONS,
            owner=Sees(lambda w: {w.hefei.uscc}),
            provider=Sees(lambda w: {w.provider_one.organisation.uscc}),
        ),
        api_rows("uscc"),
    ),
    Page(lambda w: "/api/v1/programs/", api(PROGRAMMES, owner=PROGRAMMES, provider=PROGRAMMES), api_rows("code")),
    Page(
        lambda w: "/api/v1/applications/",
        api(ALL_APPS, owner=HEFEI_APPS, provider=PROVIDER_ONE_APPS),
        api_rows("reference"),
    ),
    Page(
        lambda w: "/api/v1/coupons/",
        api(ALL_COUPONS, owner=HEFEI_COUPONS, provider=PROVIDER_ONE_COUPONS),
        api_rows("code"),
    ),
    Page(
        lambda w: "/api/v1/usage/",
        api(ALL_USAGE, owner=HEFEI_USAGE, provider=PROVIDER_ONE_USAGE),
        api_rows("record_id"),
    ),
    Page(
        lambda w: "/api/v1/redemptions/",
        api(ALL_REDEMPTIONS, owner=HEFEI_REDEMPTIONS, provider=PROVIDER_ONE_REDEMPTIONS),
        api_rows("id"),
    ),
    Page(
        lambda w: "/api/v1/statements/",
        api(ALL_STATEMENTS, owner=NONE, provider=PROVIDER_ONE_STATEMENTS, reviewer=NONE),
        api_rows("id"),
    ),
]


def check(response, expected, page: Page, world) -> str | None:
    """None when the response is what ``expected`` says, else what went wrong."""
    status = response.status_code
    if expected == LOGIN:
        if status != 302 or not response["Location"].startswith("/accounts/login/"):
            return f"expected a redirect to sign in, got {status} {response.get('Location', '')}"
    elif expected == ADMIN_LOGIN:
        if status != 302 or not response["Location"].startswith("/admin/login/"):
            return f"expected a redirect to the admin sign-in, got {status} {response.get('Location', '')}"
    elif isinstance(expected, Sees):
        if status != 200:
            return f"expected 200, got {status}"
        seen, wanted = page.rows(response), expected.rows(world)
        if seen != wanted:
            return f"sees {sorted(map(str, seen))}, should see {sorted(map(str, wanted))}"
    elif status != expected:
        return f"expected {expected}, got {status}"
    return None


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_what_it_may_and_no_more(client_as, world, role):
    client = client_as(role)
    before = everything()

    failures = []
    for page in PAGES:
        path = page.path(world)
        problem = check(client.get(path), page.outcomes[role], page, world)
        if problem:
            failures.append(f"{path}: {problem}")

    assert not failures, f"{role}:\n" + "\n".join(failures)
    assert everything() == before


def test_the_matrix_covers_every_role_on_every_page():
    for page in PAGES:
        assert set(page.outcomes) == set(ROLES), page.path


# --- exports ---------------------------------------------------------------------------------

# Reviewers and programme officers export lists but not the audit trail; auditors export all.
EXPORTS = {
    "anonymous": {kind: LOGIN for kind in KINDS},
    "provider_key": {kind: LOGIN for kind in KINDS},
    "owner": {kind: 403 for kind in KINDS},
    "provider_user": {kind: 403 for kind in KINDS},
    "reviewer": {kind: 403 if kind == "audit-trail" else OK for kind in KINDS},
    "officer": {kind: 403 if kind == "audit-trail" else OK for kind in KINDS},
    "auditor": {kind: OK for kind in KINDS},
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_exports_what_it_may(client_as, world, role):
    client = client_as(role)
    before = everything()

    failures, allowed = [], 0
    for kind in KINDS:
        response = client.get(f"/audit/{kind}/export.csv")
        if response.streaming:
            b"".join(response.streaming_content)
        expected = EXPORTS[role][kind]
        problem = check(response, expected, Page(lambda w: "", {}), world)
        if problem:
            failures.append(f"{kind}: {problem}")
        allowed += expected == OK

    assert not failures, f"{role}:\n" + "\n".join(failures)
    assert everything() == before
    assert ExportRecord.objects.count() == allowed
    assert set(ExportRecord.objects.values_list("kind", flat=True)) == {
        kind for kind, outcome in EXPORTS[role].items() if outcome == OK
    }


def test_a_reviewer_reads_the_audit_trail_but_does_not_export_it(client_as, world):
    client = client_as("reviewer")

    page = client.get("/audit/audit-trail/")
    export = client.get("/audit/audit-trail/export.csv")

    assert page.status_code == 200
    assert b'id="export-csv"' not in page.content, "no export link for what one may not export"
    assert export.status_code == 403
    assert not ExportRecord.objects.exists()
    assert b'id="export-csv"' in client.get("/audit/applications/").content


def test_an_auditor_sees_the_export_link_of_the_audit_trail(client_as, world):
    assert b'id="export-csv"' in client_as("auditor").get("/audit/audit-trail/").content


def test_staff_who_may_only_view_programmes_see_the_dashboards_but_not_the_workspace(client, staff_without_workspace):
    client.force_login(staff_without_workspace)

    assert client.get("/audit/dashboards/").status_code == 200
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/applications/").status_code == 403
    assert client.get("/audit/applications/export.csv").status_code == 403


def test_a_workspace_permission_alone_does_not_open_the_workspace_to_a_non_staff_user(client, world, owner):
    """The workspace is for staff: a portal user given the permission by mistake stays out."""
    from django.contrib.auth.models import Permission

    owner.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="audit", codename__in=["view_workspace", "export_data"])
    )
    client.force_login(owner)

    assert client.get("/audit/applications/").status_code == 403
    assert client.get("/audit/applications/export.csv").status_code == 403
    assert not ExportRecord.objects.exists()


# --- state-changing requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A state-changing request, who is refused, who may (a positive control), and how to tell
    that it happened."""

    name: str
    path: Callable  # world -> path
    data: dict
    refused: dict  # role -> expected status or LOGIN / ADMIN_LOGIN
    allowed: str  # a role that may
    allowed_status: int
    happened: Callable  # world -> bool


CHANGES = [
    Change(
        "approve an application",
        lambda w: f"/api/v1/applications/{w.app_pending.reference}/approve/",
        {"note": "ok"},
        {"anonymous": 401, "owner": 403, "provider_user": 403, "provider_key": 403, "officer": 403, "auditor": 403},
        "reviewer",
        200,
        lambda w: Application.objects.get(pk=w.app_pending.pk).status == "approved",
    ),
    Change(
        "approve an application in the admin",
        lambda w: f"/admin/coupons/application/{w.app_pending.pk}/decide/",
        {"decision": "approve", "amount": "16000.00", "reason": ""},
        {"anonymous": ADMIN_LOGIN, "owner": ADMIN_LOGIN, "provider_key": ADMIN_LOGIN, "officer": 403, "auditor": 403},
        "reviewer",
        302,
        lambda w: Application.objects.get(pk=w.app_pending.pk).status == "approved",
    ),
    Change(
        "freeze a coupon",
        lambda w: f"/api/v1/coupons/{w.coupon_wuhu.code}/freeze/",
        {"reason": "抽查"},
        {"anonymous": 401, "owner": 403, "provider_key": 403, "reviewer": 403, "auditor": 403},
        "officer",
        200,
        lambda w: Coupon.objects.get(pk=w.coupon_wuhu.pk).state == "frozen",
    ),
    Change(
        "freeze a coupon in the admin",
        lambda w: f"/admin/coupons/coupon/{w.coupon_wuhu.pk}/state/",
        {"action": "freeze", "reason": "抽查"},
        {"owner": ADMIN_LOGIN, "reviewer": 403, "auditor": 403},
        "officer",
        302,
        lambda w: Coupon.objects.get(pk=w.coupon_wuhu.pk).state == "frozen",
    ),
    Change(
        "approve a statement",
        lambda w: f"/api/v1/statements/{w.statement_one.pk}/approve/",
        {},
        {"anonymous": 401, "provider_user": 403, "provider_key": 403, "reviewer": 403, "auditor": 403},
        "officer",
        200,
        lambda w: Statement.objects.get(pk=w.statement_one.pk).state == "approved",
    ),
    Change(
        "reverse a redemption",
        lambda w: f"/api/v1/redemptions/{w.redemption_one.pk}/reverse/",
        {"reason": "重复"},
        {"provider_key": 403, "reviewer": 403, "auditor": 403},
        "officer",
        200,
        lambda w: Redemption.objects.get(pk=w.redemption_one.pk).state == "reversed",
    ),
    Change(
        "close a case",
        lambda w: f"/admin/fraud/case/{w.case_open.pk}/work/",
        {"action": "close", "finding": "cleared", "body": "核实无误"},
        {"anonymous": ADMIN_LOGIN, "owner": ADMIN_LOGIN, "provider_user": ADMIN_LOGIN, "reviewer": 403, "officer": 403},
        "auditor",
        302,
        lambda w: Case.objects.get(pk=w.case_open.pk).state == "closed",
    ),
    Change(
        "add a note to a case",
        lambda w: f"/admin/fraud/case/{w.case_open.pk}/work/",
        {"action": "note", "body": "补充材料"},
        {"reviewer": 403, "officer": 403},
        "auditor",
        302,
        lambda w: CaseNote.objects.filter(case=w.case_open, body="补充材料").exists(),
    ),
]


def _post(client, path: str, data: dict):
    if path.startswith("/api/"):
        return client.post(path, data, format="json")
    return client.post(path, data)


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.name)
def test_a_change_is_refused_to_those_who_may_not_and_leaves_the_database_as_it_was(client_as, world, change):
    clients = {role: client_as(role) for role in change.refused}  # a provider key is made (and audited) here
    before, records = everything(), ExportRecord.objects.count()

    failures = []
    for role, expected in change.refused.items():
        response = _post(clients[role], change.path(world), change.data)
        problem = check(response, expected, Page(lambda w: "", {}), world)
        if problem:
            failures.append(f"{role}: {problem}")

    assert not failures, "\n".join(failures)
    assert everything() == before
    assert ExportRecord.objects.count() == records
    assert not change.happened(world)


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.name)
def test_the_same_change_goes_through_for_the_role_that_may(client_as, world, change):
    """The positive control: without it, the refusals above could be a broken endpoint."""
    response = _post(client_as(change.allowed), change.path(world), change.data)

    assert response.status_code == change.allowed_status, getattr(response, "content", b"")[:300]
    assert change.happened(world)


def test_an_auditor_cannot_apply_for_a_coupon(client_as, world):
    before = everything()

    response = client_as("auditor").post(
        "/api/v1/applications/",
        {
            "program": "AUD-A",
            "provider": world.provider_one.organisation.uscc,
            "accelerator": "NVIDIA A100 80GB",
            "claimed_card_hours": "10.0000",
            "claimed_amount": "100.00",
            "scenario": "training",
            "project_summary": "审计员不应能申请",
        },
        format="json",
    )

    assert response.status_code == 403
    assert everything() == before


def test_the_workspace_pages_change_nothing_on_post(client_as, world):
    """The workspace reads: a POST to a list is answered like a GET and changes nothing."""
    client = client_as("auditor")
    before = everything()

    for kind in KINDS:
        assert client.post(f"/audit/{kind}/", {"state": "closed"}).status_code in (200, 405)

    assert everything() == before


def test_auditors_hold_no_write_permission_but_on_cases(auditor):
    """The rule behind the refusals above, at its source (``enterprises/roles.py``)."""
    writes = {perm for perm in auditor.get_all_permissions() if not perm.split(".", 1)[1].startswith("view_")}

    assert writes == {"fraud.change_case", "core.export_auditentry", "audit.export_data"}


def test_reviewers_may_export_lists_but_not_the_audit_trail(reviewer):
    assert reviewer.has_perm("audit.view_workspace")
    assert reviewer.has_perm("audit.export_data")
    assert not reviewer.has_perm("core.export_auditentry")
    assert not reviewer.has_perm("fraud.change_case")
