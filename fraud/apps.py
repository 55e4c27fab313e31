from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FraudConfig(AppConfig):
    name = "fraud"
    verbose_name = _("Fraud and risk")

    def ready(self):
        from fraud import receivers  # noqa: F401 - connects the signal receivers
