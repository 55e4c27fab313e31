"""The admin CSV upload runs the same import as the command line: a programme officer may use
it, a reviewer may not; a bad file shows every problem and writes nothing. Also the staff
groups that decide who is who."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from core.models import AuditEntry, ImportRun
from enterprises import roles
from enterprises.models import Organisation, Provider
from tests import factories
from tests.enterprises.csvdata import provider_row, registry_row, to_csv

pytestmark = pytest.mark.django_db

REGISTRY_IMPORT = "/admin/enterprises/organisation/import/"
PROVIDER_IMPORT = "/admin/enterprises/provider/import/"
REGISTRY_CHANGELIST = "/admin/enterprises/organisation/"


def upload(data: bytes, name: str = "registry.csv") -> dict:
    return {"file": SimpleUploadedFile(name, data, content_type="text/csv")}


def assert_nothing_written(organisations: int = 0) -> None:
    assert Organisation.objects.count() == organisations
    assert not ImportRun.objects.exists()
    assert not AuditEntry.objects.exists()


def test_an_officer_sees_the_import_page_with_the_columns(client, officer):
    client.force_login(officer)

    response = client.get(REGISTRY_IMPORT)

    assert response.status_code == 200
    assert "uscc, name, legal_representative" in response.content.decode()


def test_the_changelist_links_to_the_import_page_for_an_officer_only(client, officer, reviewer):
    client.force_login(officer)
    assert REGISTRY_IMPORT in client.get(REGISTRY_CHANGELIST).content.decode()

    client.force_login(reviewer)
    response = client.get(REGISTRY_CHANGELIST)
    assert response.status_code == 200  # a reviewer may look at the registry …
    assert REGISTRY_IMPORT not in response.content.decode()  # … but not import into it


def test_an_officer_uploads_a_good_registry_file(client, officer):
    client.force_login(officer)
    data = to_csv([registry_row(1), registry_row(2)])

    response = client.post(REGISTRY_IMPORT, upload(data, "registry-2025.csv"))

    assert response.status_code == 302
    assert response["Location"] == REGISTRY_CHANGELIST
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Imported registry-2025.csv: 2 rows: 2 created, 0 updated, 0 unchanged"
    ]
    assert set(Organisation.objects.values_list("uscc", flat=True)) == {
        factories.make_uscc(1),
        factories.make_uscc(2),
    }
    assert ImportRun.objects.get().file_name == "registry-2025.csv"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor) == ("import.registry", officer)


def test_a_bad_file_shows_every_problem_and_writes_nothing(client, officer):
    client.force_login(officer)
    rows = [registry_row(1), registry_row(2, registration_date="2020-13-01"), registry_row(3, industry_code="I65")]

    response = client.post(REGISTRY_IMPORT, upload(to_csv(rows)))

    assert response.status_code == 200
    html = response.content.decode()
    assert "2 problem(s) in the registry file; nothing was imported." in html
    assert 'id="import-problems"' in html
    assert "<td>3</td><td>registration_date</td><td>&#x27;2020-13-01&#x27; is not an ISO 8601 date" in html
    assert "<td>4</td><td>industry_code</td><td>&#x27;I65&#x27; is not a class (4-digit) code</td>" in html
    assert_nothing_written()


def test_a_file_with_the_wrong_extension_is_refused_by_the_form(client, officer):
    client.force_login(officer)

    response = client.post(REGISTRY_IMPORT, upload(to_csv([registry_row(1)]), "registry.xlsx"))

    assert response.status_code == 200
    assert "Upload a .csv file." in response.content.decode()
    assert_nothing_written()


def test_an_officer_uploads_providers(client, officer):
    organisation = factories.make_organisation()
    client.force_login(officer)

    response = client.post(PROVIDER_IMPORT, upload(to_csv([provider_row(organisation, whitelisted="是")]), "p.csv"))

    assert response.status_code == 302
    assert Provider.objects.get().organisation == organisation
    assert Provider.objects.get().whitelisted is True


@pytest.mark.parametrize("url", [REGISTRY_IMPORT, PROVIDER_IMPORT])
def test_a_reviewer_may_not_import(client, reviewer, url):
    client.force_login(reviewer)

    assert client.get(url).status_code == 403
    response = client.post(url, upload(to_csv([registry_row(1)])))

    assert response.status_code == 403
    assert_nothing_written()
    assert not Provider.objects.exists()


def test_an_auditor_may_not_import(client, auditor):
    client.force_login(auditor)

    response = client.post(REGISTRY_IMPORT, upload(to_csv([registry_row(1)])))

    assert response.status_code == 403
    assert_nothing_written()


def test_a_portal_user_is_sent_to_the_admin_login(client, owner, organisation):
    client.force_login(owner)

    response = client.post(REGISTRY_IMPORT, upload(to_csv([registry_row(1)])))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert_nothing_written(organisations=1)


# --- staff groups -------------------------------------------------------------------------


def group_permissions(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")
    }


def test_the_staff_groups_exist_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        roles.PROGRAMME_OFFICERS,
        roles.REVIEWERS,
        roles.AUDITORS,
    }


def test_each_group_has_the_permissions_of_its_role(officer, reviewer, auditor):
    assert officer.has_perm("enterprises.add_organisation")
    assert officer.has_perm("enterprises.change_provider")
    assert not officer.has_perm("core.export_auditentry")

    assert reviewer.has_perm("enterprises.view_organisation")
    assert not reviewer.has_perm("enterprises.add_organisation")
    assert not reviewer.has_perm("enterprises.change_organisation")
    assert not reviewer.has_perm("core.export_auditentry")

    assert auditor.has_perm("core.export_auditentry")
    assert auditor.has_perm("core.view_auditentry")
    assert not auditor.has_perm("enterprises.add_organisation")
    assert not auditor.has_perm("enterprises.change_organisation")


def test_no_group_may_delete_registry_records_or_change_the_audit_trail():
    for name in roles.GROUP_PERMISSIONS:
        granted = group_permissions(name)
        assert not {perm for perm in granted if perm.split(".")[1].startswith("delete_")}, name
        assert not granted & {"core.add_auditentry", "core.change_auditentry"}, name


def test_the_foundation_permissions_named_in_roles_all_exist():
    """A typo in ``GROUP_PERMISSIONS`` is skipped silently by the sync (to allow for apps of
    later issues), so check that every core and enterprises permission it names is real."""
    named = {
        perm
        for perms in roles.GROUP_PERMISSIONS.values()
        for perm in perms
        if perm.split(".")[0] in {"core", "enterprises"}
    }
    existing = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.filter(content_type__app_label__in=["core", "enterprises"]).values_list(
            "content_type__app_label", "codename"
        )
    }
    assert named - existing == set()
    for name, perms in roles.GROUP_PERMISSIONS.items():
        wanted = {perm for perm in perms if perm.split(".")[0] in {"core", "enterprises"}}
        assert wanted <= group_permissions(name), name


def test_sync_staff_groups_restores_a_removed_permission_and_adds_no_duplicates():
    officers = Group.objects.get(name=roles.PROGRAMME_OFFICERS)
    add_org = Permission.objects.get(content_type__app_label="enterprises", codename="add_organisation")
    officers.permissions.remove(add_org)
    before = officers.permissions.count()

    roles.sync_staff_groups()
    roles.sync_staff_groups()

    assert officers.permissions.filter(pk=add_org.pk).exists()
    assert officers.permissions.count() == before + 1
    assert Group.objects.filter(name=roles.PROGRAMME_OFFICERS).count() == 1
