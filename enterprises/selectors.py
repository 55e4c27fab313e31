"""Reads of the registry, scoped to who is asking."""

from __future__ import annotations

from django.db.models import QuerySet

from enterprises.authentication import ProviderPrincipal
from enterprises.models import Organisation, PortalAccount


def portal_account_for(user) -> PortalAccount | None:
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return None
    try:
        return user.portal_account
    except PortalAccount.DoesNotExist:
        return None


def organisations_for_user(user) -> QuerySet[Organisation]:
    """Staff with the view permission see the registry; a portal user sees only their own
    organisation; a provider key sees only its own; anyone else sees nothing."""
    queryset = Organisation.objects.select_related("industry")
    if isinstance(user, ProviderPrincipal):
        return queryset.filter(pk=user.provider.organisation_id)
    if getattr(user, "is_staff", False) and user.has_perm("enterprises.view_organisation"):
        return queryset
    account = portal_account_for(user)
    if account is not None:
        return queryset.filter(pk=account.organisation_id)
    return queryset.none()
