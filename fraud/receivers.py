"""What the fraud module does when the coupons app says something happened."""

import logging

from django.dispatch import receiver
from kombu.exceptions import OperationalError

from coupons import signals

logger = logging.getLogger(__name__)


@receiver(signals.application_submitted, dispatch_uid="fraud.score_on_submission")
def score_on_submission(sender, application_id: int, **kwargs) -> None:
    from fraud.tasks import score_application

    try:
        score_application.delay(application_id)
    except OperationalError:
        # The submission is committed; the broker is down. Say so loudly, and leave the scoring
        # to the nightly rescore (or score_risk) instead of telling the user it failed.
        logger.error("could not queue the scoring of application %s: broker unavailable", application_id, exc_info=True)


@receiver(signals.usage_ingested, dispatch_uid="fraud.rescore_on_usage")
def rescore_on_usage(sender, provider_id: int, enterprise_ids, **kwargs) -> None:
    from fraud.tasks import queue_rescore_of_enterprises

    try:
        queue_rescore_of_enterprises(enterprise_ids)
    except OperationalError:
        logger.error(
            "could not queue a rescore of %s enterprises: broker unavailable", len(enterprise_ids), exc_info=True
        )
