"""What the fraud module does when the coupons app says something happened."""

from django.dispatch import receiver

from coupons import signals


@receiver(signals.application_submitted, dispatch_uid="fraud.score_on_submission")
def score_on_submission(sender, application_id: int, **kwargs) -> None:
    from fraud.tasks import score_application

    score_application.delay(application_id)


@receiver(signals.usage_ingested, dispatch_uid="fraud.rescore_on_usage")
def rescore_on_usage(sender, provider_id: int, enterprise_ids, **kwargs) -> None:
    from fraud.tasks import queue_rescore_of_enterprises

    queue_rescore_of_enterprises(enterprise_ids)
