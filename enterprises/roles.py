"""The staff groups and their permissions, kept in code so that every deployment has the same
roles. ``sync_staff_groups`` runs after every migrate and only adds what is missing."""

from __future__ import annotations

PROGRAMME_OFFICERS = "programme officers"
REVIEWERS = "reviewers"
AUDITORS = "auditors"

# app_label.codename; a permission that does not exist yet (an app of a later issue) is
# skipped and picked up by the next migrate.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    PROGRAMME_OFFICERS: [
        "enterprises.view_organisation",
        "enterprises.add_organisation",
        "enterprises.change_organisation",
        "enterprises.view_provider",
        "enterprises.add_provider",
        "enterprises.change_provider",
        "enterprises.view_providerapikey",
        "enterprises.add_providerapikey",
        "enterprises.change_providerapikey",
        "enterprises.view_industryclass",
        "enterprises.change_industryclass",
        "enterprises.view_portalaccount",
        "enterprises.add_portalaccount",
        "enterprises.change_portalaccount",
        "enterprises.view_staffaffiliation",
        "enterprises.add_staffaffiliation",
        "coupons.view_accelerator",
        "coupons.add_accelerator",
        "coupons.change_accelerator",
        "coupons.view_program",
        "coupons.add_program",
        "coupons.change_program",
        "coupons.view_application",
        "coupons.view_coupon",
        "coupons.change_coupon",
        "coupons.view_account",
        "coupons.view_ledgertransaction",
        "core.view_auditentry",
    ],
    REVIEWERS: [
        "enterprises.view_organisation",
        "enterprises.view_provider",
        "enterprises.view_industryclass",
        "enterprises.view_staffaffiliation",
        "coupons.view_accelerator",
        "coupons.view_program",
        "coupons.view_application",
        "coupons.review_application",
        "coupons.view_coupon",
        "coupons.view_usagerecord",
        "coupons.view_redemption",
        "core.view_auditentry",
    ],
    AUDITORS: [
        "enterprises.view_organisation",
        "enterprises.view_provider",
        "enterprises.view_industryclass",
        "enterprises.view_portalaccount",
        "enterprises.view_staffaffiliation",
        "coupons.view_accelerator",
        "coupons.view_program",
        "coupons.view_application",
        "coupons.view_coupon",
        "coupons.view_account",
        "coupons.view_ledgertransaction",
        "core.view_auditentry",
        "core.export_auditentry",
    ],
}


def sync_staff_groups(sender=None, using="default", **kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    wanted = {perm for perms in GROUP_PERMISSIONS.values() for perm in perms}
    found = {
        f"{perm.content_type.app_label}.{perm.codename}": perm
        for perm in Permission.objects.using(using)
        .select_related("content_type")
        .filter(codename__in={name.split(".", 1)[1] for name in wanted})
    }
    for group_name, names in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        group.permissions.add(*[found[name] for name in names if name in found])
