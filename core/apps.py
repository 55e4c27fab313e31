from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    """Cross-cutting pieces that the three domain apps share and that belong to none of them:
    the error family, the audit trail and the CSV import machinery."""

    name = "core"
    verbose_name = _("Platform core")
