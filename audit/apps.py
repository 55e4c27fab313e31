from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    """The auditors' read-only workspace over every other app's data: filtered lists, exports
    with a tamper-evident record, dashboards. It depends on all the domain apps and none of them
    depends on it, which is why it is an app of its own."""

    name = "audit"
    verbose_name = _("Audit workspace")
