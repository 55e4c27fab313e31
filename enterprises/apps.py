from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class EnterprisesConfig(AppConfig):
    name = "enterprises"
    verbose_name = _("Organisation registry")

    def ready(self):
        from enterprises.roles import sync_staff_groups

        # Permissions exist only after migrate, so the groups are synchronised then.
        post_migrate.connect(sync_staff_groups, dispatch_uid="enterprises.sync_staff_groups")
