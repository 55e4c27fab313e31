"""The audit trail is append-only: an entry, once written, is never changed or deleted through
the model or the admin."""

import pytest
from django.contrib.auth import get_user_model
from django.db.models import ProtectedError

from core.audit import audit_record, audit_trail_for
from core.models import AuditEntry
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(organisation, officer):
    return audit_record(
        actor=officer,
        obj=organisation,
        action="organisation.deactivate",
        from_state="active",
        to_state="inactive",
        reason="deregistered",
        data={"source": "registry"},
    )


def test_an_entry_records_who_what_when_from_to_and_why(entry, organisation, officer):
    stored = AuditEntry.objects.get(pk=entry.pk)

    assert stored.actor == officer
    assert stored.actor_label == "officer"
    assert stored.content_type.model_class() is type(organisation)
    assert stored.object_id == str(organisation.pk)
    assert stored.object_repr == str(organisation)
    assert (stored.action, stored.from_state, stored.to_state) == ("organisation.deactivate", "active", "inactive")
    assert stored.reason == "deregistered"
    assert stored.data == {"source": "registry"}
    assert stored.at is not None


@pytest.mark.parametrize(
    ("actor", "label"), [(None, "system"), ("provider:91110108551385082Q", "provider:91110108551385082Q")]
)
def test_an_actor_that_is_not_a_person_is_kept_as_a_label(organisation, actor, label):
    stored = audit_record(actor=actor, obj=organisation, action="x")

    assert stored.actor is None
    assert stored.actor_label == label


def test_saving_an_existing_entry_is_refused_and_changes_nothing(entry):
    entry.reason = "rewritten history"

    with pytest.raises(RuntimeError, match="append-only"):
        entry.save()

    assert AuditEntry.objects.get(pk=entry.pk).reason == "deregistered"


def test_deleting_an_entry_is_refused(entry):
    with pytest.raises(RuntimeError, match="append-only"):
        entry.delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_an_actor_with_entries_cannot_be_deleted(entry, officer):
    """Deleting a user must not take their trail with them (PROTECT, not CASCADE)."""
    with pytest.raises(ProtectedError):
        officer.delete()

    assert get_user_model().objects.filter(pk=officer.pk).exists()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_trail_of_an_object_is_its_own_entries_newest_first(organisation, other_organisation):
    first = audit_record(actor=None, obj=organisation, action="first")
    audit_record(actor=None, obj=other_organisation, action="elsewhere")
    second = audit_record(actor=None, obj=organisation, action="second")

    assert list(audit_trail_for(organisation)) == [second, first]


# --- the admin is read-only, even for a superuser -----------------------------------------


def test_an_auditor_reads_the_trail_in_the_admin(client, auditor, entry):
    client.force_login(auditor)

    response = client.get("/admin/core/auditentry/")

    assert response.status_code == 200
    assert "organisation.deactivate" in response.content.decode()


def test_nobody_edits_or_deletes_an_entry_in_the_admin(client, entry):
    superuser = factories.make_user("root", staff=True, is_superuser=True)
    client.force_login(superuser)

    change = client.post(f"/admin/core/auditentry/{entry.pk}/change/", {"reason": "rewritten"})
    delete = client.post(f"/admin/core/auditentry/{entry.pk}/delete/", {"post": "yes"})
    add = client.get("/admin/core/auditentry/add/")

    assert change.status_code == 403
    assert delete.status_code == 403
    assert add.status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).reason == "deregistered"


def test_the_bulk_delete_action_is_not_offered(client, entry):
    superuser = factories.make_user("root", staff=True, is_superuser=True)
    client.force_login(superuser)

    response = client.post(
        "/admin/core/auditentry/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )

    assert AuditEntry.objects.filter(pk=entry.pk).exists()
    assert response.status_code in (200, 302)
