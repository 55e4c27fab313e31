"""Personal data (phones, e-mails, bank accounts) are shown whole only to those whose work needs
them (permission ``enterprises.view_personal_data``: programme officers and auditors) and to
the organisation itself; everyone else sees them masked, in pages, the API and exports."""

from __future__ import annotations

PERSONAL_FIELDS = ("contact_phone", "contact_email", "bank_account")


def can_see_personal_data(user, organisation_id: int | None = None) -> bool:
    if getattr(user, "has_perm", None) and user.has_perm("enterprises.view_personal_data"):
        return True
    from enterprises.authentication import ProviderPrincipal
    from enterprises.selectors import portal_account_for

    if isinstance(user, ProviderPrincipal):
        return organisation_id is not None and user.provider.organisation_id == organisation_id
    account = portal_account_for(user)
    return account is not None and organisation_id is not None and account.organisation_id == organisation_id


def mask(field: str, value: str) -> str:
    value = value or ""
    if not value:
        return ""
    if field == "contact_email":
        local, _at, domain = value.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    digits = value.replace(" ", "")
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) > 7 else "****"
