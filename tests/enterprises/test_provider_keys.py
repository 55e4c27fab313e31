"""Provider API keys: only a SHA-256 digest is stored, the key is shown once, a revoked or
unknown key gets a 401 in the one error shape, and every create and revoke is audited."""

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Model

from core.errors import NotFound, ValidationFailed
from core.models import AuditEntry
from enterprises.models import ProviderApiKey
from enterprises.services import provider_key_authenticate, provider_key_create, provider_key_revoke

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"
ORGANISATIONS = "/api/v1/organisations/"


def key_header(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Api-Key {raw_key}"}


def command(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("provider_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stored_values(instance: Model) -> list[str]:
    return [str(getattr(instance, field.attname)) for field in instance._meta.concrete_fields]


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["details"] == []
    return body["error"]


# --- creating -----------------------------------------------------------------------------


def test_creating_a_key_stores_only_its_digest(provider):
    new = provider_key_create(provider=provider, name="billing")

    api_key = ProviderApiKey.objects.get()
    prefix = api_key.prefix
    assert new.raw_key.startswith(f"cpk_{prefix}_")
    assert len(new.raw_key) > len(f"cpk_{prefix}_") + 40  # a 256-bit secret follows the prefix
    assert api_key.digest == hashlib.sha256(new.raw_key.encode()).hexdigest()
    secret = new.raw_key.removeprefix(f"cpk_{prefix}_")
    for value in stored_values(api_key):
        assert secret not in value
    for entry in AuditEntry.objects.all():
        for value in stored_values(entry):
            assert secret not in value


def test_every_key_is_different(provider):
    first = provider_key_create(provider=provider)
    second = provider_key_create(provider=provider)

    assert first.raw_key != second.raw_key
    assert first.api_key.prefix != second.api_key.prefix


def test_creating_a_key_is_audited_with_who_created_it(provider, officer):
    new = provider_key_create(provider=provider, name="usage feed", created_by=officer)

    assert new.api_key.created_by == officer
    entry = AuditEntry.objects.get()
    assert entry.action == "api_key.create"
    assert entry.object_id == str(new.api_key.pk)
    assert entry.to_state == "active"
    assert entry.actor == officer


def test_the_create_command_prints_the_key_once_and_list_never_does(provider):
    out, err = command("create", provider.organisation.uscc.lower(), "--name", "usage feed")

    raw_key = out.strip()
    assert out == f"{raw_key}\n"  # stdout holds the key alone, so it can be piped into a vault
    api_key = ProviderApiKey.objects.get()
    assert api_key.digest == hashlib.sha256(raw_key.encode()).hexdigest()
    assert api_key.name == "usage feed"
    assert f"prefix {api_key.prefix}" in err
    assert "shown only now" in err
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_label) == ("api_key.create", "cli")

    listing, _ = command("list", provider.organisation.uscc)
    assert listing.startswith(f"{api_key.prefix}\tusage feed\t")
    assert listing.rstrip().endswith("\tactive")
    assert raw_key not in listing
    assert raw_key.removeprefix(f"cpk_{api_key.prefix}_") not in listing


def test_the_create_command_refuses_an_unknown_provider(organisation):
    with pytest.raises(CommandError, match=f"No provider with USCC {organisation.uscc}"):
        command("create", organisation.uscc)

    assert not ProviderApiKey.objects.exists()
    assert not AuditEntry.objects.exists()


# --- authenticating -----------------------------------------------------------------------


def test_a_key_authenticates_as_its_provider(client, provider):
    new = provider_key_create(provider=provider)

    response = client.get(ME, **key_header(new.raw_key))

    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "provider_key"
    assert body["role"] == "provider"
    assert body["username"] == f"provider:{provider.organisation.uscc}"
    assert body["organisation"]["uscc"] == provider.organisation.uscc
    new.api_key.refresh_from_db()
    assert new.api_key.last_used_at is not None


def test_a_key_sees_only_its_own_organisation(client, provider, organisation, other_organisation):
    new = provider_key_create(provider=provider)

    response = client.get(ORGANISATIONS, **key_header(new.raw_key))

    assert response.status_code == 200
    assert [org["uscc"] for org in response.json()["results"]] == [provider.organisation.uscc]
    other = client.get(f"{ORGANISATIONS}{organisation.pk}/", **key_header(new.raw_key))
    assert_error_shape(other, 404, "not_found")


@pytest.mark.parametrize(
    "raw_key",
    [
        "cpk_00000000_not-a-real-key",
        "totally-wrong",
        "cpk_",
    ],
)
def test_a_wrong_key_gets_401_in_the_error_shape(client, provider, raw_key):
    provider_key_create(provider=provider)

    response = client.get(ME, **key_header(raw_key))

    error = assert_error_shape(response, 401, "authentication_failed")
    assert error["message"] == "Unknown or revoked API key."
    assert response["WWW-Authenticate"] == 'Api-Key realm="api"'


def test_a_key_with_one_character_changed_is_refused(client, provider):
    new = provider_key_create(provider=provider)
    tampered = new.raw_key[:-1] + ("A" if new.raw_key[-1] != "A" else "B")

    response = client.get(ME, **key_header(tampered))

    assert_error_shape(response, 401, "authentication_failed")


def test_an_empty_key_gets_401(client):
    response = client.get(ME, HTTP_AUTHORIZATION="Api-Key   ")

    error = assert_error_shape(response, 401, "authentication_failed")
    assert error["message"] == "No API key given after 'Api-Key'."


def test_the_scheme_is_case_insensitive(client, provider):
    new = provider_key_create(provider=provider)

    response = client.get(ME, HTTP_AUTHORIZATION=f"api-key {new.raw_key}")

    assert response.status_code == 200


# --- revoking -----------------------------------------------------------------------------


def test_a_revoked_key_gets_401(client, provider):
    new = provider_key_create(provider=provider)
    assert client.get(ME, **key_header(new.raw_key)).status_code == 200

    provider_key_revoke(prefix=new.api_key.prefix, reason="leaked in a log")

    response = client.get(ME, **key_header(new.raw_key))
    error = assert_error_shape(response, 401, "authentication_failed")
    assert error["message"] == "Unknown or revoked API key."
    assert provider_key_authenticate(raw_key=new.raw_key) is None


def test_revoking_is_audited_with_the_reason(provider, officer):
    new = provider_key_create(provider=provider)

    provider_key_revoke(prefix=new.api_key.prefix, revoked_by=officer, reason="leaked in a log")

    new.api_key.refresh_from_db()
    assert new.api_key.revoked_at is not None
    assert not new.api_key.is_active
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert entry.object_id == str(new.api_key.pk)
    assert (entry.from_state, entry.to_state) == ("active", "revoked")
    assert entry.reason == "leaked in a log"
    assert entry.actor == officer


def test_revoking_twice_is_refused_and_changes_nothing(provider):
    new = provider_key_create(provider=provider)
    provider_key_revoke(prefix=new.api_key.prefix)
    new.api_key.refresh_from_db()
    revoked_at = new.api_key.revoked_at

    with pytest.raises(ValidationFailed, match="already revoked"):
        provider_key_revoke(prefix=new.api_key.prefix)

    new.api_key.refresh_from_db()
    assert new.api_key.revoked_at == revoked_at
    assert AuditEntry.objects.filter(action="api_key.revoke").count() == 1


def test_revoking_an_unknown_prefix_is_refused(provider):
    with pytest.raises(NotFound, match="No API key with prefix deadbeef"):
        provider_key_revoke(prefix="deadbeef")


def test_the_revoke_command_and_the_list_that_follows(provider):
    new = provider_key_create(provider=provider, name="feed")
    prefix = new.api_key.prefix

    out, _err = command("revoke", prefix, "--reason", "rotated")

    assert out == f"revoked {prefix} of {provider.organisation.name}\n"
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert (entry.actor_label, entry.reason) == ("cli", "rotated")
    listing, _ = command("list", provider.organisation.uscc)
    assert f"{prefix}\tfeed\t" in listing
    assert "\trevoked " in listing
    assert "active" not in listing

    with pytest.raises(CommandError, match=f"The key {prefix} was already revoked"):
        command("revoke", prefix)
    assert AuditEntry.objects.filter(action="api_key.revoke").count() == 1
