"""The staff groups and their permissions, kept in code so that every deployment has the same
roles. ``sync_staff_groups`` runs after every migrate and only adds what is missing."""

from __future__ import annotations

PROGRAMME_OFFICERS = "programme officers"
REVIEWERS = "reviewers"
AUDITORS = "auditors"

# app_label.codename; a permission that does not exist yet (an app of a later issue) is
# skipped and picked up by the next migrate.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    # Programme officers run programmes, the registry, providers, settlement and policy data.
    PROGRAMME_OFFICERS: [
        *[
            f"enterprises.{action}_{model}"
            for model in ("organisation", "provider", "providerapikey", "portalaccount")
            for action in ("view", "add", "change")
        ],
        "enterprises.view_industryclass",
        "enterprises.change_industryclass",
        "enterprises.view_personal_data",
        "enterprises.view_staffaffiliation",
        "enterprises.add_staffaffiliation",
        *[
            f"coupons.{action}_{model}"
            for model in ("accelerator", "program", "referenceprice")
            for action in ("view", "add", "change")
        ],
        "coupons.view_application",
        "coupons.add_application",
        "coupons.view_coupon",
        "coupons.change_coupon",
        "coupons.view_account",
        "coupons.view_ledgertransaction",
        "coupons.view_usagerecord",
        "coupons.view_usagebatch",
        "coupons.view_redemption",
        "coupons.change_redemption",
        "coupons.view_statement",
        "coupons.change_statement",
        "fraud.view_riskassessment",
        "fraud.view_riskrule",
        "fraud.change_riskrule",
        "fraud.view_modelversion",
        "core.view_auditentry",
        "core.view_importrun",
        "audit.view_workspace",
        "audit.export_data",
    ],
    # Reviewers decide applications; they read what the decision needs.
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
        "fraud.view_riskassessment",
        "core.view_auditentry",
        # They read the workspace and export lists, but not the audit trail.
        "audit.view_workspace",
        "audit.export_data",
    ],
    # Auditors read everything and export it; the only thing they change is cases.
    AUDITORS: [
        *[
            f"enterprises.view_{model}"
            for model in (
                "organisation",
                "provider",
                "industryclass",
                "portalaccount",
                "staffaffiliation",
                "providerapikey",
            )
        ],
        *[
            f"coupons.view_{model}"
            for model in (
                "accelerator",
                "program",
                "application",
                "review",
                "coupon",
                "account",
                "ledgertransaction",
                "ledgerentry",
                "usagerecord",
                "usagebatch",
                "redemption",
                "statement",
                "referenceprice",
            )
        ],
        "fraud.view_riskassessment",
        "fraud.view_case",
        "fraud.change_case",
        "fraud.view_casenote",
        "fraud.view_outcome",
        "fraud.view_modelversion",
        "fraud.view_riskrule",
        "core.view_auditentry",
        "core.export_auditentry",
        "core.view_importrun",
        "audit.view_workspace",
        "audit.export_data",
        "audit.view_exportrecord",
        "enterprises.view_personal_data",
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
