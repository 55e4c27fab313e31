"""Writes to the organisation registry: provider API keys. (Imports live in
``enterprises.imports``.)"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.errors import NotFound, ValidationFailed
from enterprises.models import Provider, ProviderApiKey
from enterprises.validators import normalize_uscc

KEY_PREFIX = "cpk"


def digest_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    """The only moment the raw key exists outside the provider's hands."""

    api_key: ProviderApiKey
    raw_key: str


def provider_get_by_uscc(*, uscc: str) -> Provider:
    try:
        return Provider.objects.select_related("organisation").get(organisation__uscc=normalize_uscc(uscc))
    except Provider.DoesNotExist:
        raise NotFound(f"No provider with USCC {normalize_uscc(uscc)}.") from None


@transaction.atomic
def provider_key_create(*, provider: Provider, name: str = "", created_by=None) -> NewApiKey:
    """Create an API key for a provider. The raw key is returned once and never stored."""
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ProviderApiKey.objects.create(
        provider=provider,
        name=name[:100],
        prefix=prefix,
        digest=digest_key(raw_key),
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )
    audit_record(actor=created_by or "cli", obj=api_key, action="api_key.create", to_state="active")
    return NewApiKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def provider_key_revoke(*, prefix: str, revoked_by=None, reason: str = "") -> ProviderApiKey:
    """Revoke a key by its prefix (the part shown in lists). Revoking twice is refused."""
    try:
        api_key = ProviderApiKey.objects.select_for_update().get(prefix=prefix)
    except ProviderApiKey.DoesNotExist:
        raise NotFound(f"No API key with prefix {prefix}.") from None
    if api_key.revoked_at is not None:
        raise ValidationFailed(f"The key {prefix} was already revoked at {api_key.revoked_at:%Y-%m-%d %H:%M}.")
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    audit_record(
        actor=revoked_by or "cli",
        obj=api_key,
        action="api_key.revoke",
        from_state="active",
        to_state="revoked",
        reason=reason,
    )
    return api_key


def provider_key_authenticate(*, raw_key: str) -> ProviderApiKey | None:
    """The active key matching ``raw_key``, or None. Records when it was last used (at most
    once a minute, so that a busy provider does not write on every request)."""
    if not raw_key.startswith(f"{KEY_PREFIX}_"):
        return None
    api_key = (
        ProviderApiKey.objects.select_related("provider__organisation")
        .filter(digest=digest_key(raw_key), revoked_at__isnull=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ProviderApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key
